"""test_hostile_net: idle, slow and ambiguous clients against a real
`edgerec serve`, from outside.

- Plain TCP sockets that never send a ClientHello: the server spends no CPU
  on them (CPU time from /proc/<pid>/stat), /healthz stays fast, and they
  are closed at the handshake deadline.
- TLS sessions that idle after the handshake or dribble their header one
  byte per second: same, and they are closed at the header deadline.
- More connections from one address than http.max_conns_per_addr: the
  extra ones are closed at accept; other addresses are served; the address
  is served again once its connections close.
- HTTP/1.1 framing (RFC 9112) on the raw TLS socket: pipelining after a
  Content-Length: 0 request is answered in order; "Content-Length: 0, 5",
  repeated Content-Length, Transfer-Encoding with Content-Length,
  whitespace before a colon and obs-fold are a 400 followed by close.
- TLS: only ECDHE with AES-GCM or ChaCha20-Poly1305, TLS 1.2 at least.
- A recording made while idle sockets are open keeps all its frames.

Attackers connect from other loopback addresses (127.0.0.2 ...) than the
probes (127.0.0.1), as they would from other hosts; each attacking address
stays within the per-address cap unless a test is about the cap.

Bounds, for a 2-core box shared with other builds and tests: /healthz p99
(a fresh TLS connection each probe) under 500 ms, or under 4 times the p99
measured just before the attack when the box is so loaded that this is more
(at a load average of 26 on 2 cores a quiet server's p99 reached 600 ms),
and never above 2 s. Starved workers show as probes waiting for a deadline
(3 s here, 30 s before the fix), so the bound still tells them apart. The
server's CPU time during an attack stays below 25 % of one core above its
own idle figure (a spinning handshake used 100 % per socket)."""

import json
import os
import socket
import ssl
import subprocess
import threading
import time
import uuid

from edgerec_harness import run_tests, start_node, stop_nodes, wait_until
from proc_stat import cpu_seconds

HANDSHAKE_S = 3.0
HEADER_S = 3.0
PER_ADDR = 16
P99_BOUND_S = 0.5
P99_LOAD_FACTOR = 4.0
P99_CEILING_S = 2.0
CPU_SHARE_BOUND = 0.25


def setup():
    c = start_node("hostile", {
        "default_quality": "low",
        "http.handshake_timeout": "%dms" % int(HANDSHAKE_S * 1000),
        "http.header_timeout": "%dms" % int(HEADER_S * 1000),
        "http.max_conns_per_addr": str(PER_ADDR),
    })
    c.port = c.node._https_port
    return c


# -- helpers ---------------------------------------------------------------

def raw_socket(c, src, timeout=5.0):
    """A TCP connection to the HTTPS port from loopback address 'src'."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.bind((src, 0))
    s.connect(("127.0.0.1", c.port))
    return s


def tls_client_context(c, **kw):
    ctx = ssl.create_default_context(cafile=c.node.cert_path)
    ctx.check_hostname = False
    for k, v in kw.items():
        setattr(ctx, k, v)
    return ctx


def tls_socket(c, src="127.0.0.1", timeout=5.0, ctx=None):
    s = raw_socket(c, src, timeout)
    try:
        return (ctx or tls_client_context(c)).wrap_socket(s, server_hostname="127.0.0.1")
    except Exception:
        s.close()
        raise


def probe_healthz(c, src="127.0.0.1", timeout=10.0):
    """One GET /healthz on a fresh TLS connection; returns (seconds, status)."""
    t0 = time.monotonic()
    with tls_socket(c, src, timeout) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: edgerec\r\nConnection: close\r\n\r\n")
        data = read_until_close(s)
    status = int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/1.1 ") else 0
    return time.monotonic() - t0, status


def read_until_close(s, limit=1 << 20):
    out = b""
    while len(out) < limit:
        try:
            chunk = s.recv(65536)
        except (ConnectionResetError, ssl.SSLError, OSError):
            break
        if not chunk:
            break
        out += chunk
    return out


def p99(values):
    v = sorted(values)
    return v[min(len(v) - 1, int(round(0.99 * (len(v) - 1))))]


def measure(c, seconds, probes_per_s=8):
    """Probes /healthz for 'seconds' while measuring the server's CPU time.
    Returns (latencies, statuses, cpu share of one core)."""
    pid = c.node.proc.pid
    cpu0, t0 = cpu_seconds([pid]), time.monotonic()
    lat, statuses = [], []
    while time.monotonic() - t0 < seconds:
        try:
            dt, st = probe_healthz(c)
        except OSError:
            dt, st = 10.0, 0
        lat.append(dt)
        statuses.append(st)
        time.sleep(max(0.0, 1.0 / probes_per_s - dt))
    share = (cpu_seconds([pid]) - cpu0) / (time.monotonic() - t0)
    return lat, statuses, share


def quiet_p99(c):
    """/healthz p99 without an attack, now (the box's load changes)."""
    lat, _, _ = measure(c, 1.5)
    return p99(lat)


def check_responsive(c, what, seconds, baseline, quiet):
    """Probes /healthz under attack; 'baseline' is the server's idle CPU
    share, 'quiet' the p99 measured just before the attack."""
    lat, statuses, share = measure(c, seconds)
    bound = min(P99_CEILING_S, max(P99_BOUND_S, P99_LOAD_FACTOR * quiet))
    assert all(s == 200 for s in statuses), "%s: /healthz statuses %r" % (what, statuses)
    assert p99(lat) < bound, "%s: /healthz p99 %.0f ms over %.0f ms (%d probes; %.0f ms before)" % (
        what, p99(lat) * 1000, bound * 1000, len(lat), quiet * 1000)
    assert share - baseline < CPU_SHARE_BOUND, "%s: server CPU %.0f %% of a core (idle: %.0f %%)" % (
        what, share * 100, baseline * 100)
    print("  %s: /healthz p99 %.0f ms (%.0f ms before), server CPU %.1f %% of a core (idle %.1f %%)" % (
        what, p99(lat) * 1000, quiet * 1000, share * 100, baseline * 100))
    return p99(lat), share


def closed_by_peer(s, within):
    """True if the server closes 's' within 'within' seconds (EOF or reset)."""
    s.settimeout(within)
    try:
        while True:
            data = s.recv(4096)
            if not data:
                return True
    except (ConnectionResetError, ssl.SSLError, ssl.SSLEOFError):
        return True
    except socket.timeout:
        return False
    except OSError:
        return True


def close_all(socks):
    for s in socks:
        try:
            s.close()
        except OSError:
            pass


def baseline_cpu(c):
    if not hasattr(c, "baseline"):
        _, _, c.baseline = measure(c, 2.0)
    return c.baseline


# -- 1. no ClientHello -------------------------------------------------------

def test_silent_tcp_costs_no_cpu_and_is_dropped_at_the_deadline(c):
    base, quiet = baseline_cpu(c), quiet_p99(c)
    socks = []
    try:
        # Three addresses at the cap: 48 sockets, as many as worker threads.
        for src in ("127.0.0.2", "127.0.0.3", "127.0.0.4"):
            socks += [raw_socket(c, src) for _ in range(PER_ADDR)]
        t_open = time.monotonic()
        check_responsive(c, "48 silent sockets", min(2.5, HANDSHAKE_S - 0.3), base, quiet)
        # All closed by the handshake deadline (plus the poll slice).
        left = HANDSHAKE_S + 3.0 - (time.monotonic() - t_open)
        still_open = [s for s in socks if not closed_by_peer(s, max(0.1, left))]
        assert not still_open, "%d silent sockets still open after %.0f s" % (
            len(still_open), time.monotonic() - t_open)
    finally:
        close_all(socks)


def test_silent_tcp_from_many_addresses(c):
    # 400 sockets from 200 addresses: far more than worker threads, queue
    # and per-address slots together; they wait without a thread.
    base, quiet = baseline_cpu(c), quiet_p99(c)
    socks = []
    try:
        for i in range(200):
            src = "127.0.%d.%d" % (20 + i // 250, 1 + i % 250)
            socks += [raw_socket(c, src) for _ in range(2)]
        check_responsive(c, "400 silent sockets from 200 addresses", 1.5, base, quiet)
    finally:
        close_all(socks)


def test_partial_clienthello_is_dropped_at_the_deadline(c):
    # The first 5 bytes of a TLS record header, then nothing.
    base, quiet = baseline_cpu(c), quiet_p99(c)
    socks = [raw_socket(c, "127.0.0.5") for _ in range(8)]
    try:
        for s in socks:
            s.sendall(b"\x16\x03\x01\x02\x00")
        t0 = time.monotonic()
        check_responsive(c, "8 partial ClientHellos", 1.5, base, quiet)
        assert all(closed_by_peer(s, max(0.1, HANDSHAKE_S + 3.0 - (time.monotonic() - t0))) for s in socks)
    finally:
        close_all(socks)


# -- 2. slow clients after the handshake --------------------------------------

def test_idle_and_dribbling_tls_sessions(c):
    base, quiet = baseline_cpu(c), quiet_p99(c)
    idle = [tls_socket(c, "127.0.0.6") for _ in range(PER_ADDR)]
    dribblers = [tls_socket(c, "127.0.0.7") for _ in range(PER_ADDR)]
    t_open = time.monotonic()
    stop = threading.Event()
    request = b"GET /healthz HTTP/1.1\r\nHost: edgerec\r\nX-Pad: " + b"a" * 64 + b"\r\n\r\n"

    def dribble():
        i = 0
        while not stop.is_set() and i < len(request):
            for s in dribblers:
                try:
                    s.send(request[i:i + 1])
                except OSError:
                    pass
            i += 1
            stop.wait(1.0)

    t = threading.Thread(target=dribble, daemon=True)
    t.start()
    try:
        check_responsive(c, "16 idle + 16 dribbling TLS sessions", min(2.5, HEADER_S - 0.3), base, quiet)
        # The header deadline closes both kinds, however slowly bytes come.
        left = lambda: max(0.1, HEADER_S + 3.0 - (time.monotonic() - t_open))
        still = [s for s in idle + dribblers if not closed_by_peer(s, left())]
        assert not still, "%d slow sessions still open after %.1f s" % (len(still), time.monotonic() - t_open)
    finally:
        stop.set()
        t.join()
        close_all(idle + dribblers)


# -- per-address cap -----------------------------------------------------------

def test_per_address_cap(c):
    held = [raw_socket(c, "127.0.0.8") for _ in range(PER_ADDR)]
    try:
        # Let the master thread account for them in order.
        time.sleep(0.3)
        extra = [raw_socket(c, "127.0.0.8") for _ in range(4)]
        # Closed at accept, long before any deadline.
        assert all(closed_by_peer(s, 1.5) for s in extra), "connections beyond the cap were kept"
        close_all(extra)
        # The capped ones are still open (no deadline passed yet) ...
        for s in held[:3]:
            assert not closed_by_peer(s, 0.05), "a connection within the cap was closed"
        # ... and another address is served meanwhile.
        dt, st = probe_healthz(c, "127.0.0.9")
        assert st == 200 and dt < P99_CEILING_S, (dt, st)
        metrics = c.node.request("GET", "/metrics", token=None).body.decode()
        refused = [l for l in metrics.splitlines() if l.startswith("edgerec_http_connections_refused_total ")]
        assert refused and int(refused[0].split()[1]) >= 4, refused
    finally:
        close_all(held)
    # 127.0.0.1 (http.conn_limit_exempt's default: a local reverse proxy)
    # is not counted.
    local = [raw_socket(c, "127.0.0.1") for _ in range(PER_ADDR + 4)]
    try:
        time.sleep(0.3)
        assert not any(closed_by_peer(s, 0.05) for s in local), "the exempt address was capped"
    finally:
        close_all(local)
    # Once they are closed (the server sees it within a poll), the address
    # is served again.
    def served():
        try:
            return probe_healthz(c, "127.0.0.8")[1] == 200
        except OSError:
            return False
    wait_until(served, timeout=5, interval=0.2, what="127.0.0.8 served again after closing its connections")


# -- 9. framing --------------------------------------------------------------

def exchange(c, raw, wait_close=True):
    """Sends 'raw' on a fresh TLS connection and reads what comes back until
    the server closes it (or 3 s of silence). Returns (responses, closed):
    a list of (status, headers dict, body) and whether the server closed."""
    s = tls_socket(c, "127.0.0.10", timeout=3.0)
    s.sendall(raw)
    data, closed = b"", False
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                closed = True
                break
            data += chunk
    except (ConnectionResetError, ssl.SSLError):
        closed = True
    except socket.timeout:
        pass
    s.close()
    responses = []
    while data.startswith(b"HTTP/1."):
        head, _, rest = data.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split(b" ", 2)[1])
        hdrs = {}
        for l in lines[1:]:
            k, _, v = l.partition(b":")
            hdrs[k.strip().lower().decode()] = v.strip().decode()
        n = int(hdrs.get("content-length", "0"))
        responses.append((status, hdrs, rest[:n]))
        data = rest[n:]
    assert not data, "unparsed bytes after the responses: %r" % data[:200]
    return responses, closed


def test_pipelined_after_content_length_zero(c):
    # RFC 9112 9.3.2: a client may pipeline; after a body of length 0 the
    # next bytes are the next request. Two responses, in order, are right:
    # what matters is that the server's reading of the length is exact.
    raw = (b"POST /healthz HTTP/1.1\r\nHost: e\r\nX-Request-Id: first\r\nContent-Length: 0\r\n\r\n"
           b"GET /healthz HTTP/1.1\r\nHost: e\r\nX-Request-Id: second\r\nConnection: close\r\n\r\n")
    responses, closed = exchange(c, raw)
    assert [r[1].get("x-request-id") for r in responses] == ["first", "second"], responses
    assert responses[0][0] == 405 and responses[1][0] == 200, [r[0] for r in responses]
    assert closed


def expect_400_and_close(c, raw, what):
    responses, closed = exchange(c, raw)
    assert len(responses) == 1, "%s: %d responses %r" % (what, len(responses), responses)
    status, hdrs, body = responses[0]
    assert status == 400, "%s: status %d %r" % (what, status, body)
    assert json.loads(body)["detail"], body
    assert closed, "%s: connection left open" % what


def test_content_length_list_is_400(c):
    expect_400_and_close(c, b"POST /healthz HTTP/1.1\r\nHost: e\r\nContent-Length: 0, 5\r\n\r\nhello"
                            b"GET /healthz HTTP/1.1\r\nHost: e\r\n\r\n", "Content-Length: 0, 5")
    expect_400_and_close(c, b"POST /healthz HTTP/1.1\r\nHost: e\r\nContent-Length: +5\r\n\r\nhello",
                         "Content-Length: +5")
    expect_400_and_close(c, b"POST /healthz HTTP/1.1\r\nHost: e\r\nContent-Length: 0\r\n"
                            b"Content-Length: 5\r\n\r\nhello", "two Content-Length")


def test_content_length_with_transfer_encoding_is_400_and_close(c):
    expect_400_and_close(c, b"POST /healthz HTTP/1.1\r\nHost: e\r\nContent-Length: 5\r\n"
                            b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
                            b"GET /healthz HTTP/1.1\r\nHost: e\r\n\r\n", "Content-Length + Transfer-Encoding")


def test_whitespace_before_colon_is_400(c):
    tok = c.node.token("alice")
    expect_400_and_close(c, ("GET /api/webrtc/rooms/x/recordings HTTP/1.1\r\nHost: e\r\n"
                             "Authorization : Bearer %s\r\n\r\n" % tok).encode(), "Authorization :")
    expect_400_and_close(c, b"GET /healthz HTTP/1.1\r\nHost: e\r\nX-A: 1\r\n folded\r\n\r\n", "obs-fold")


def test_plain_requests_still_keep_alive(c):
    raw = (b"GET /healthz HTTP/1.1\r\nHost: e\r\nContent-Length: 0\r\n\r\n"
           b"GET /healthz HTTP/1.1\r\nHost: e\r\nContent-Length:  0 \r\nConnection: close\r\n\r\n")
    responses, closed = exchange(c, raw)
    assert [r[0] for r in responses] == [200, 200], responses


# -- 10. TLS suites ------------------------------------------------------------

def handshake(c, ciphers=None, version=None):
    ctx = tls_client_context(c)
    if ciphers:
        ctx.set_ciphers(ciphers)
    if version:
        ctx.minimum_version = ctx.maximum_version = version
    try:
        with tls_socket(c, "127.0.0.11", ctx=ctx) as s:
            return s.version(), s.cipher()[0]
    except (ssl.SSLError, ConnectionResetError) as e:
        return None, str(e)


def test_tls_suites_forward_secret_aead_only(c):
    for good in ("ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-ECDSA-AES256-GCM-SHA384",
                 "ECDHE-ECDSA-CHACHA20-POLY1305"):
        v, cipher = handshake(c, good, ssl.TLSVersion.TLSv1_2)
        assert v == "TLSv1.2" and cipher == good, (good, v, cipher)
    for bad in ("ECDHE-ECDSA-AES128-SHA", "ECDHE-ECDSA-AES256-SHA", "ECDHE-ECDSA-AES128-SHA256",
                "ECDHE-ECDSA-AES128-CCM8", "ECDHE-ECDSA-AES128-CCM", "AES128-GCM-SHA256",
                "ECDHE-ECDSA-CAMELLIA128-SHA256"):
        try:
            v, cipher = handshake(c, bad, ssl.TLSVersion.TLSv1_2)
        except ssl.SSLError:
            continue  # this OpenSSL build cannot even offer it
        assert v is None, "%s was accepted (%s %s)" % (bad, v, cipher)
    # Whatever the client offers, TLS 1.2 with an AEAD suite (no TLS 1.3 in mbedTLS 2.28).
    v, cipher = handshake(c)
    assert v == "TLSv1.2" and ("GCM" in cipher or "CHACHA20" in cipher), (v, cipher)
    v, _ = handshake(c, "DEFAULT:@SECLEVEL=0", ssl.TLSVersion.TLSv1_1)
    assert v is None


# -- a recording beside idle sockets -----------------------------------------

def test_recording_keeps_its_frames_beside_idle_sockets(c):
    dropped0 = c.node.metric("edgerec_video_frames_dropped_total")
    room = "hostile-" + uuid.uuid4().hex[:8]
    r = c.node.start_recording(room, "alice", quality="low")
    assert r.status == 200, r
    rid = r.json["recording_id"]
    socks = []
    try:
        for src in ("127.0.0.12", "127.0.0.13"):
            socks += [raw_socket(c, src) for _ in range(4)]
        # Renewed as the handshake deadline drops them.
        t0 = time.monotonic()
        while time.monotonic() - t0 < 6.0:
            for i, s in enumerate(socks):
                s.setblocking(False)
                try:
                    gone = s.recv(1) == b""
                except BlockingIOError:
                    gone = False
                except OSError:
                    gone = True
                if gone:
                    s.close()
                    socks[i] = raw_socket(c, "127.0.0.12" if i < 4 else "127.0.0.13")
            time.sleep(0.25)
    finally:
        close_all(socks)
    r = c.node.op("stop", room, rid)
    assert r.status == 200, r
    done = c.node.wait_status(room, rid, ("completed", "failed"), timeout=60)
    assert done["status"] == "completed", done
    path = os.path.join(done["local_path"], done["file_name"])
    out = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-count_packets",
                          "-show_entries", "stream=nb_read_packets,r_frame_rate", "-of", "json", path],
                         capture_output=True, text=True, timeout=60)
    st = json.loads(out.stdout)["streams"][0]
    num, den = (int(x) for x in st["r_frame_rate"].split("/"))
    expected = done["duration_seconds"] * num / den
    frames = int(st["nb_read_packets"])
    assert frames >= expected - 2, "%d frames for %.2f s at %s" % (frames, done["duration_seconds"], st["r_frame_rate"])
    assert c.node.metric("edgerec_video_frames_dropped_total") == dropped0, "frames were dropped"


if __name__ == "__main__":
    run_tests(globals(), setup=setup, teardown=stop_nodes)
