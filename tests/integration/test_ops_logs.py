"""test_ops_logs: the server's log as an operator reads it.

- Outside systemd every line starts with an ISO-8601 UTC date and a level.
- Under systemd (JOURNAL_STREAM names stderr's device:inode, as systemd
  sets it) every line starts with journald's "<N>" syslog priority instead
  (warn <4>, info <6>, debug <7>), so `journalctl -p err` filters by it.
- Every request writes one access line at info with its request id, user,
  method, path, status, body bytes and duration; downloads included (the
  bytes are the file's size).
- civetweb's own messages (the "SSL read failed" of a peer's close_notify)
  come through the logger at debug, never at info or warn."""

import os
import re
import socket
import ssl
import time
import urllib.parse
import uuid

from edgerec_harness import Ctx, Edgerec, Redis, run_tests

ISO_LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (error|warn |info |debug|trace) \[[^\]]+\] ")
JOURNAL_LINE = re.compile(r"^<([0-7])>(error|warn |info |debug|trace) \[[^\]]+\] ")
PRIORITY = {"error": "3", "warn ": "4", "info ": "6", "debug": "7", "trace": "7"}


def setup():
    c = Ctx()
    c.redis = Redis().start()
    c.nodes = []
    return c


def teardown(c):
    for n in c.nodes:
        if n.alive():
            assert n.stop() == 0, n.log_tail()


def node_with_env(c, name, env, make_env=None):
    """Starts a node with 'env' added to the environment; 'make_env(node)'
    may add variables that depend on the node (its log file)."""
    n = Edgerec(redis=c.redis, name=name)
    c.nodes.append(n)
    env = dict(env)
    if make_env:
        env.update(make_env(n))
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        n.start()
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return n


def access_lines(n, rid_header):
    return [l for l in n.log_text(since_start=True).splitlines() if "req=%s " % rid_header in l]


def test_dates_and_access_log_with_download(c):
    n = node_with_env(c, "dated", {"EDGEREC_LOG": "info"})
    room, rid, rec = n.record_for(1.2)
    path = "/api/webrtc/rooms/%s/recording/%s/download" % (room, rid)
    r = n.request("GET", path, headers={"X-Request-Id": "dl-check-1"})
    assert r.status == 200 and len(r.body) == rec["file_size_bytes"], r
    r = n.request("GET", path, headers={"X-Request-Id": "dl-check-2", "Range": "bytes=0-99"})
    assert r.status == 206 and len(r.body) == 100, r
    r = n.request("GET", "/api/webrtc/rooms/%s/recording/%s/status" % (room, uuid.uuid4()), token="mallory",
                  headers={"X-Request-Id": "denied-1"})
    assert r.status == 404, r
    wait = time.monotonic() + 5
    while time.monotonic() < wait and not access_lines(n, "denied-1"):
        time.sleep(0.05)
    full = access_lines(n, "dl-check-1")
    assert len(full) == 1, full
    line = full[0]
    assert ISO_LINE.match(line) and " info  [http] " in line, line
    assert "user=alice GET %s -> 200 %d B (" % (path, rec["file_size_bytes"]) in line, line
    assert re.search(r"\(\d+\.\d\d ms\)", line), line
    part = access_lines(n, "dl-check-2")
    assert len(part) == 1 and "-> 206 100 B" in part[0], part
    denied = access_lines(n, "denied-1")
    assert len(denied) == 1 and "user=mallory" in denied[0] and " info  [http] " in denied[0], denied
    # The start and stop of the recording are there too, one line each.
    starts = [l for l in n.log_text(since_start=True).splitlines()
              if "POST /api/webrtc/rooms/%s/recording/start -> 200" % room in l]
    assert len(starts) == 1, starts
    for l in n.log_text(since_start=True).splitlines():
        assert ISO_LINE.match(l), "undated line: %r" % l


def test_journald_priorities(c):
    # The harness appends stderr to the node's log file: name that file as
    # the journal stream, as systemd names the socket it connects.
    def journal_stream(n):
        open(n.log_path, "ab").close()
        st = os.stat(n.log_path)
        return {"JOURNAL_STREAM": "%d:%d" % (st.st_dev, st.st_ino)}
    n = node_with_env(c, "journal", {"EDGEREC_LOG": "debug", "EDGEREC_NO_SUCH_OPTION": "1"}, journal_stream)
    assert n.request("GET", "/api/webrtc/recordings", headers={"X-Request-Id": "jr-1"}).status == 200
    wait = time.monotonic() + 5
    while time.monotonic() < wait and not access_lines(n, "jr-1"):
        time.sleep(0.05)
    lines = n.log_text(since_start=True).splitlines()
    assert lines
    seen = set()
    for l in lines:
        m = JOURNAL_LINE.match(l)
        assert m, "no priority prefix: %r" % l
        assert m.group(1) == PRIORITY[m.group(2)], l
        seen.add(m.group(1))
    assert {"4", "6", "7"} <= seen, seen
    warn = [l for l in lines if "EDGEREC_NO_SUCH_OPTION" in l]
    assert len(warn) == 1 and warn[0].startswith("<4>"), warn
    acc = access_lines(n, "jr-1")
    assert len(acc) == 1 and acc[0].startswith("<6>"), acc


def tls_close_notify_requests(n, count):
    u = urllib.parse.urlsplit(n.url)
    ctx = ssl.create_default_context(cafile=n.cert_path)
    for i in range(count):
        with socket.create_connection((u.hostname, u.port), timeout=10) as raw:
            t = ctx.wrap_socket(raw, server_hostname=u.hostname)
            t.sendall(b"GET /healthz HTTP/1.1\r\nHost: e\r\n\r\n")
            data = b""
            while b"\r\n\r\n" not in data:
                data += t.recv(4096)
            head, body = data.split(b"\r\n\r\n", 1)
            length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))
            while len(body) < length:
                body += t.recv(4096)
            t.unwrap()  # close_notify, then close: an ordinary close


def test_civetweb_messages_at_debug(c):
    n = node_with_env(c, "civet", {"EDGEREC_LOG": "debug"})
    tls_close_notify_requests(n, 5)
    time.sleep(0.5)
    civet = [l for l in n.log_text(since_start=True).splitlines() if "civetweb:" in l]
    assert civet, "civetweb said nothing at debug (the test would prove nothing)"
    for l in civet:
        assert " debug [http] civetweb: " in l, l
    # At info the same closes leave no civetweb line at all.
    m = node_with_env(c, "civet-info", {"EDGEREC_LOG": "info"})
    tls_close_notify_requests(m, 5)
    time.sleep(0.5)
    assert not [l for l in m.log_text(since_start=True).splitlines() if "civetweb" in l or "SSL" in l]


run_tests(globals(), setup=setup, teardown=teardown)
