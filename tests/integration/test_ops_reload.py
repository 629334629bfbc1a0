"""test_ops_reload: SIGHUP reloads the configuration and the policies and
never ends the server; SIGTERM stays the clean stop.

- A live recording survives several SIGHUPs intact: its file's duration
  (ffprobe) matches the time it was recording (wall clock between the start
  and stop replies), and every frame of it is in the file or counted in its
  metadata (frames a busy box skips are counted, none go missing).
- Live options take effect: max_concurrent_recordings lowered to 1 makes
  the next start fail with limit_reached; log_level debug shows debug lines.
- Options that need a restart (http.threads) are named as such in the log.
- A configuration that does not pass (storage_backend = s4) is refused with
  the reason; the running one stays and the server keeps serving.
- A policy edited on disk is in force right after the SIGHUP.
- A TLS certificate renewed in place is served to new connections after
  the SIGHUP while a connection opened before keeps working; a broken file
  leaves the running certificate in place."""

import http.client
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import time
import uuid

from edgerec_harness import Ctx, Edgerec, Redis, run_tests, wait_until, write_file


def setup():
    c = Ctx()
    c.redis = Redis().start()
    c.policy_dir = os.path.join(c.redis.dir, "policies")
    os.makedirs(c.policy_dir)
    c.node = Edgerec(redis=c.redis, name="reload", config={"policy_dir": c.policy_dir, "log_level": "info"})
    # The level comes from log_level: EDGEREC_LOG (which would win) is
    # left empty.
    saved = os.environ.get("EDGEREC_LOG")
    os.environ["EDGEREC_LOG"] = ""
    try:
        c.node.start()
    finally:
        if saved is None:
            os.environ.pop("EDGEREC_LOG")
        else:
            os.environ["EDGEREC_LOG"] = saved
    c.nodes = [c.node]
    c.conf = os.path.join(c.node.dir, "edgerec.conf")
    return c


def teardown(c):
    for n in (c.nodes if c else []):
        if n.alive():
            assert n.stop() == 0, n.log_tail()


def rewrite_config(c, **extra):
    """The node's config file with 'extra' options added (names with '.'
    passed as dict keys)."""
    c.node.extra.update(extra)
    write_file(c.conf, c.node.config_text())


def sighup_and_wait(c, count=1):
    """Sends SIGHUP and waits for the reload's summary line (or refusal)."""
    before = c.node.log_text(since_start=True).count("SIGHUP: reloading")
    done_before = count_done(c)
    c.node.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: count_done(c) > done_before, timeout=10, what="the reload to finish")
    assert c.node.alive(), c.node.log_tail()
    assert c.node.log_text(since_start=True).count("SIGHUP: reloading") == before + 1


def count_done(c):
    return c.node.log_text(since_start=True).count("[serve] reload: done")


def ffprobe_duration(path):
    out = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "json", path],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    return float(json.loads(out.stdout)["format"]["duration"])


def test_recording_survives_sighups(c):
    room = "hup-" + uuid.uuid4().hex[:6]
    t0 = time.monotonic()
    r = c.node.start_recording(room, "alice", "webm", "low")
    t1 = time.monotonic()
    assert r.status == 200, r
    rid = r.json["recording_id"]
    for i in range(5):
        time.sleep(0.8)
        rewrite_config(c, max_recording_duration=str(3600 + i))
        sighup_and_wait(c)
    time.sleep(0.5)
    s0 = time.monotonic()
    assert c.node.op("stop", room, rid).status == 200
    s1 = time.monotonic()
    rec = c.node.wait_status(room, rid, "completed", timeout=60)
    # The recording ran from (t0..t1) to (s0..s1).
    longest, shortest = s1 - t0, s0 - t1
    dur = ffprobe_duration(os.path.join(rec["local_path"], rec["file_name"]))
    assert shortest - 0.6 <= dur <= longest + 0.3, (dur, shortest, longest)
    media = rec["metadata"].get("media", {})
    assert not rec["metadata"].get("recovered"), rec["metadata"]
    # Every frame of the clip is in the file or counted as left out (a box
    # short of CPU skips frames and says so; a reload must lose none).
    accounted = sum(media.get(k, 0) for k in ("video_frames_encoded", "video_frames_dropped",
                                              "video_frames_skipped"))
    assert accounted >= int(24 * (dur - 0.5)), media
    log = c.node.log_text(since_start=True)
    assert log.count("reload: max_recording_duration: ") == 5, log[-3000:]
    print("  recording %.2f s, wall %.2f..%.2f s, 5 SIGHUPs, frames %s dropped %s" % (
        dur, shortest, longest, media.get("video_frames_encoded"), media.get("video_frames_dropped")))


def test_live_limit_and_restart_named(c):
    rewrite_config(c, max_concurrent_recordings="1", **{"http.threads": "40", "log_level": "debug"})
    sighup_and_wait(c)
    log = c.node.log_text(since_start=True)
    assert "reload: max_concurrent_recordings: 10 -> 1 (applied)" in log, log[-3000:]
    assert "reload: http.threads: 48 -> 40 (needs a restart)" in log, log[-3000:]
    assert "reload: log_level: info -> debug (applied)" in log, log[-3000:]
    room = "lim-" + uuid.uuid4().hex[:6]
    a = c.node.start_recording(room, "u1", "webm", "low")
    assert a.status == 200, a
    b = c.node.start_recording(room, "u2", "webm", "low")
    assert b.status == 400 and b.json["code"] == "limit_reached", b
    assert c.node.op("cancel", room, a.json["recording_id"], user="u1").status == 200
    # debug lines appear now (the probe's access line is at debug).
    assert c.node.request("GET", "/healthz", token=None, headers={"X-Request-Id": "dbg-probe"}).status == 200
    wait_until(lambda: "req=dbg-probe " in c.node.log_text(since_start=True), timeout=5, what="debug line")
    rewrite_config(c, max_concurrent_recordings="10", **{"http.threads": "48", "log_level": "info"})
    sighup_and_wait(c)


def test_bad_config_refused(c):
    rewrite_config(c, storage_backend="s4")
    sighup_and_wait(c)
    log = c.node.log_text(since_start=True)
    assert "reload refused, the running configuration stays" in log and "'s4' is not one of local, s3" in log, \
        log[-2000:]
    room = "after-" + uuid.uuid4().hex[:6]
    r = c.node.start_recording(room, "alice", "webm", "low")
    assert r.status == 200 and r.json["storage_backend"] == "local", r
    assert c.node.op("cancel", room, r.json["recording_id"]).status == 200
    c.node.extra.pop("storage_backend")
    rewrite_config(c)
    sighup_and_wait(c)


def test_policy_reloaded(c):
    room = "pol-" + uuid.uuid4().hex[:6]
    write_file(os.path.join(c.policy_dir, "auth.lua"),
               "return { authorize = function(action, caller)\n"
               "  if caller.user_id == 'blocked' then return false, 'blocked here' end\n"
               "  return true\nend }\n")
    sighup_and_wait(c)
    r = c.node.start_recording(room, "blocked", "webm", "low")
    assert r.status == 403, r
    r = c.node.start_recording(room, "alice", "webm", "low")
    assert r.status == 200, r
    assert c.node.op("cancel", room, r.json["recording_id"]).status == 200


def make_cert(d, name):
    key, cert = os.path.join(d, name + "-key.pem"), os.path.join(d, name + "-cert.pem")
    out = subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                          "-nodes", "-keyout", key, "-out", cert, "-days", "2", "-subj", "/CN=" + name,
                          "-addext", "subjectAltName=IP:127.0.0.1"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    return key, cert


def served_cert(node, cafile):
    """The certificate a new TLS connection to 'node' gets (DER), and the
    status of one request on it."""
    u = node.url[len("https://"):].split(":")
    ctx = ssl.create_default_context(cafile=cafile)
    with socket.create_connection((u[0], int(u[1])), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname=u[0]) as t:
            t.sendall(b"GET /healthz HTTP/1.1\r\nHost: e\r\nConnection: close\r\n\r\n")
            status = t.recv(64).split(b" ")[1]
            return t.getpeercert(binary_form=True), int(status)


def test_tls_certificate_replaced(c):
    d = os.path.join(c.node.dir, "certs")
    os.makedirs(d, exist_ok=True)
    key_a, cert_a = make_cert(d, "first")
    key_b, cert_b = make_cert(d, "second")
    key, cert = os.path.join(d, "live-key.pem"), os.path.join(d, "live-cert.pem")
    shutil.copy(key_a, key)
    shutil.copy(cert_a, cert)
    n = Edgerec(redis=c.redis, name="tls", config={"tls_cert": cert, "tls_key": key})
    c.nodes.append(n)
    n.start(wait_healthy=False)
    der_a = ssl.PEM_cert_to_DER_cert(open(cert_a).read())
    der_b = ssl.PEM_cert_to_DER_cert(open(cert_b).read())
    assert served_cert(n, cert_a) == (der_a, 200)
    # An open keep-alive connection made with the first certificate.
    u = n.url[len("https://"):].split(":")
    keep = http.client.HTTPSConnection(u[0], int(u[1]), context=ssl.create_default_context(cafile=cert_a),
                                       timeout=10)
    keep.request("GET", "/healthz")
    assert keep.getresponse().read() and True
    # A renewal replaces the files in place; SIGHUP puts the new one in force.
    shutil.copy(key_b, key + ".tmp")
    os.rename(key + ".tmp", key)
    shutil.copy(cert_b, cert + ".tmp")
    os.rename(cert + ".tmp", cert)
    done = n.log_text(since_start=True).count("reload: done")
    n.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: n.log_text(since_start=True).count("reload: done") > done, timeout=10, what="reload")
    assert "TLS certificate read again" in n.log_text(since_start=True), n.log_tail()
    assert served_cert(n, cert_b) == (der_b, 200)
    keep.request("GET", "/healthz")
    r = keep.getresponse()
    assert r.status == 200 and r.read(), "the connection opened before the reload broke"
    keep.close()
    # A broken file leaves the running certificate in place.
    with open(cert, "w") as f:
        f.write("not a certificate\n")
    done = n.log_text(since_start=True).count("reload: done")
    n.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: n.log_text(since_start=True).count("reload: done") > done, timeout=10, what="reload")
    assert "TLS certificate not replaced, the running one stays" in n.log_text(since_start=True)
    assert served_cert(n, cert_b) == (der_b, 200)
    assert n.stop() == 0, n.log_tail()


def test_sigterm_still_stops(c):
    assert c.node.stop() == 0, c.node.log_tail()
    assert "shutting down" in c.node.log_text(since_start=True)


run_tests(globals(), setup=setup, teardown=teardown)
