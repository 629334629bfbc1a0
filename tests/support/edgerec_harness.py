"""edgerec_harness: start real servers for integration tests and talk to them.

Everything a test needs to drive edgerec from the outside, with nothing of
edgerec's own code on the client side:

  Redis()                   a real redis-server on 127.0.0.1, a free port and
                            a temp dir; .cli(...) runs redis-cli against it;
                            .restart() keeps port and data directory.
  Edgerec(redis=..., ...)   `edgerec serve` with a temp config and state_dir;
                            .start() waits for /healthz; .request() speaks
                            HTTPS pinned to the server's own certificate;
                            .ws() opens a WebSocket subscription; .kill()
                            and .restart() for crash tests.
  mint_token(secret, sub)   an HS256 JWT made with Python's hmac, so tokens
                            never depend on the code under test; the other
                            arguments build every defect a test may want.
  ws_next(ws, type)         the next event frame of a type from .ws().
  start_node(name, config)  the usual setup(): Redis() and one started
                            Edgerec() in a Ctx (.redis, .node, .nodes);
  stop_nodes(ctx)           the usual teardown(): each node exits 0.
  write_file(path, text)    replaces a file at once (a policy hot-reload).
  start_process(argv, log)  any other helper server, stopped by cleanup().
  cleanup()                 stops every process started here (also run at
                            exit, and on SIGTERM from ctest's timeout).

Environment (set by tests/CMakeLists.txt): EDGEREC_BIN, the executable;
EDGEREC_SOURCE_DIR; EDGEREC_BUILD_DIR. Set EDGEREC_HARNESS_KEEP=1 to keep
temp dirs and print their place, EDGEREC_HARNESS_VERBOSE=1 to echo the
server's log on stop.

Typical use:

    from edgerec_harness import Redis, Edgerec, mint_token, run_tests
    def test_start_stop(ctx):
        r = ctx.node.request("POST", "/api/webrtc/rooms/lobby/recording/start")
        assert r.status == 200, r
    run_tests(globals(), setup=...)   # or plain main()
"""

import atexit
import base64
import hashlib
import hmac
import http.client
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.parse

__all__ = ["Redis", "Edgerec", "Response", "mint_token", "b64url", "free_port", "mktemp",
           "cleanup", "run_tests", "wait_until", "TEST_SECRET"]

TEST_SECRET = "edgerec-test-secret-0123456789abcdef0123456789"

_procs = []          # every Popen started here, for cleanup()
_tmpdirs = []        # every temp dir made here
_lock = threading.Lock()


def _keep():
    return os.environ.get("EDGEREC_HARNESS_KEEP") == "1"


def _verbose():
    return os.environ.get("EDGEREC_HARNESS_VERBOSE") == "1"


def mktemp(prefix):
    d = tempfile.mkdtemp(prefix="edgerec-" + prefix + "-")
    _tmpdirs.append(d)
    return d


def free_port():
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(pred, timeout=10.0, interval=0.05, what="condition"):
    """Polls pred() until it returns a true value (returned) or raises
    AssertionError after 'timeout' seconds."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = pred()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError("timed out after %.1fs waiting for %s (last: %r)" % (timeout, what, last))


def b64url(data):
    if isinstance(data, str):
        data = data.encode()
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def mint_token(secret=TEST_SECRET, sub="alice", ttl=3600, alg="HS256", header=None,
               claims=None, drop=(), sign_with=None, signature=None, now=None):
    """Builds a JWT with Python's hmac. 'alg' goes in the header (HS256
    signs with SHA-256; "none" leaves the signature empty; any other name is
    signed with HMAC-SHA-512 so a test can offer a wrong algorithm).
    'header'/'claims' add or override fields; 'drop' removes claims
    ("sub", "exp"); 'sign_with' signs with another secret; 'signature'
    replaces the signature part verbatim."""
    now = int(time.time()) if now is None else now
    hdr = {"alg": alg, "typ": "JWT"}
    hdr.update(header or {})
    body = {"sub": sub, "iat": now}
    if ttl is not None:
        body["exp"] = now + ttl
    body.update(claims or {})
    for k in drop:
        body.pop(k, None)
    signing_input = b64url(json.dumps(hdr, separators=(",", ":"))) + "." + \
        b64url(json.dumps(body, separators=(",", ":")))
    key = (sign_with if sign_with is not None else secret).encode()
    if signature is not None:
        sig = signature
    elif alg == "none":
        sig = ""
    elif alg == "HS256":
        sig = b64url(hmac.new(key, signing_input.encode(), hashlib.sha256).digest())
    else:
        sig = b64url(hmac.new(key, signing_input.encode(), hashlib.sha512).digest())
    return signing_input + "." + sig


def _start(argv, log_path, **kw):
    log = open(log_path, "ab")
    p = subprocess.Popen(argv, stdout=kw.pop("stdout", log), stderr=log, stdin=subprocess.DEVNULL,
                         start_new_session=True, **kw)
    p._edgerec_log = log
    with _lock:
        _procs.append(p)
    return p


def _stop(p, sig=signal.SIGTERM, timeout=15.0):
    if p is None:
        return None
    if p.poll() is None:
        try:
            p.send_signal(sig)
            p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    try:
        p._edgerec_log.close()
    except Exception:
        pass
    with _lock:
        if p in _procs:
            _procs.remove(p)
    return p.returncode


def cleanup():
    """Stops every process started by this harness and removes temp dirs."""
    with _lock:
        procs = list(_procs)
    for p in procs:
        _stop(p, signal.SIGTERM, timeout=5)
    if _keep():
        for d in _tmpdirs:
            print("harness: kept", d, file=sys.stderr)
    else:
        for d in _tmpdirs:
            shutil.rmtree(d, ignore_errors=True)
    _tmpdirs.clear()


atexit.register(cleanup)


def _on_term(signum, frame):
    cleanup()
    sys.exit(128 + signum)


signal.signal(signal.SIGTERM, _on_term)


class Redis:
    """A real redis-server for one test run (127.0.0.1, free port, temp dir,
    persistence on so restart() keeps the data)."""

    def __init__(self, appendonly=True):
        self.dir = mktemp("redis")
        self.port = free_port()
        self.appendonly = appendonly
        self.proc = None
        self.url = "redis://127.0.0.1:%d" % self.port

    def start(self):
        argv = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                "--dir", self.dir, "--save", "", "--appendonly",
                "yes" if self.appendonly else "no", "--daemonize", "no",
                "--protected-mode", "no", "--logfile", ""]
        self.proc = _start(argv, os.path.join(self.dir, "redis.log"))
        wait_until(lambda: self.ping(), timeout=10, what="redis-server on %d" % self.port)
        return self

    def ping(self):
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def cli(self, *args):
        """Runs redis-cli --raw with 'args' (values printed as they are:
        "604800", "string", the JSON text); returns stdout without the final
        newline."""
        out = subprocess.run(["redis-cli", "-p", str(self.port), "--raw"] + [str(a) for a in args],
                             capture_output=True, text=True, timeout=10)
        return out.stdout.rstrip("\n")

    raw = cli

    def pipeline(self, commands):
        """Sends 'commands' (tuples of str/bytes arguments) in one write over
        one connection and reads one reply each (a RESP status, error or
        integer; bulk replies are not read back). Faster than cli() for
        thousands of SET/SADD/PUBLISH. Returns the reply lines; raises on an
        error reply."""
        out = []
        for cmd in commands:
            parts = [a if isinstance(a, bytes) else str(a).encode() for a in cmd]
            out.append(b"*%d\r\n" % len(parts) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in parts))
        replies = []
        with socket.create_connection(("127.0.0.1", self.port), timeout=30) as s:
            s.sendall(b"".join(out))
            f = s.makefile("rb")
            for _ in commands:
                line = f.readline()
                assert line[:1] in (b"+", b":"), "redis: %r" % line
                replies.append(line.rstrip(b"\r\n").decode())
        return replies

    def stop(self):
        _stop(self.proc)
        self.proc = None

    def restart(self, down_seconds=0.0):
        self.stop()
        if down_seconds:
            time.sleep(down_seconds)
        return self.start()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


class Response:
    """One HTTP reply: status, headers (lower-case names; the last of a
    repeated one), .header_list (every header as sent, in order), body
    bytes, and .json (parsed, or None)."""

    def __init__(self, status, headers, body, header_list=None):
        self.status = status
        self.headers = headers
        self.header_list = header_list or list(headers.items())
        self.body = body
        try:
            self.json = json.loads(body) if body else None
        except ValueError:
            self.json = None

    def __repr__(self):
        text = self.body[:400].decode("utf-8", "replace")
        return "<%d %s>" % (self.status, text)


class Edgerec:
    """One `edgerec serve` process with its own temp config and state dir.

    redis: a Redis() (its URL is configured) or None for the embedded one.
    config: extra `key = value` options. storage: where recordings go
    (default: a temp dir; share it between nodes if they must see files)."""

    def __init__(self, redis=None, config=None, secret=TEST_SECRET, storage=None,
                 state_dir=None, plain_http=True, name="node"):
        self.bin = os.environ.get("EDGEREC_BIN") or os.path.join(
            os.environ.get("EDGEREC_BUILD_DIR", "build"), "core", "edgerec")
        self.redis = redis
        self.secret = secret
        self.name = name
        self.dir = mktemp(name)
        self.state_dir = state_dir or os.path.join(self.dir, "state")
        self.storage = storage or os.path.join(self.dir, "recordings")
        self.plain_http = plain_http
        self.extra = dict(config or {})
        self.proc = None
        self.url = None
        self.http_url = None
        self.dev_token = None
        self.lines = []
        self.log_path = os.path.join(self.dir, "edgerec.log")
        self._ssl = None
        self._conn = None
        self._https_port = None
        self._http_port = None

    # -- process ----------------------------------------------------------

    def config_text(self):
        # Ports are fixed at the first start so a restart keeps them.
        if self._https_port is None:
            self._https_port = free_port()
            self._http_port = free_port()
        opts = {
            "state_dir": self.state_dir,
            "local_storage_path": self.storage,
            "listen_https": "127.0.0.1:%d" % self._https_port,
            "listen_http": "127.0.0.1:%d" % self._http_port if self.plain_http else "",
            "jwt_secret": self.secret,
            "redis_url": self.redis.url if self.redis else "",
        }
        opts.update(self.extra)
        return "".join('%s = "%s"\n' % (k, str(v).replace("\\", "\\\\").replace('"', '\\"'))
                       for k, v in opts.items())

    def start(self, timeout=20.0, wait_healthy=True):
        cfg = os.path.join(self.dir, "edgerec.conf")
        with open(cfg, "w") as f:
            f.write(self.config_text())
        env = dict(os.environ)
        env.setdefault("EDGEREC_LOG", "info")
        self.lines = []
        try:
            self._log_start = os.path.getsize(self.log_path)
        except OSError:
            self._log_start = 0
        self.proc = _start([self.bin, "serve", "--config", cfg], self.log_path,
                           stdout=subprocess.PIPE, env=env)
        threading.Thread(target=self._read_stdout, args=(self.proc,), daemon=True).start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError("edgerec exited with %s during start:\n%s" %
                                     (self.proc.returncode, self.log_tail()))
            if any("ready" in l for l in self.lines):
                break
            time.sleep(0.05)
        else:
            raise AssertionError("edgerec did not print 'ready' in %.0fs:\n%s" % (timeout, self.log_tail()))
        for l in self.lines:
            if "listening on https://" in l:
                self.url = l.split("listening on ", 1)[1].strip()
            elif "listening on http://" in l:
                self.http_url = l.split("listening on ", 1)[1].strip()
            elif "token for user" in l:
                self.dev_token = l.rsplit(" ", 1)[1].strip()
        self._ssl = None
        self._conn = None
        if wait_healthy:
            wait_until(lambda: self.healthz_status() == 200, timeout=timeout,
                       what="/healthz 200 from %s" % self.name)
            # Room events published before the node's Redis subscription is
            # in place never reach it (pub/sub keeps no backlog): wait (a
            # few seconds at most; the line is the state module's, logged at
            # info) for the state module to say it subscribed.
            if env.get("EDGEREC_LOG", "info") in ("info", "debug", "trace"):
                deadline = time.monotonic() + min(timeout, 5.0)
                while "subscribed to room events" not in self.log_text(since_start=True) \
                        and time.monotonic() < deadline:
                    time.sleep(0.05)
        return self

    def _read_stdout(self, proc):
        for raw in proc.stdout:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            self.lines.append(line)

    def log_tail(self, n=60):
        try:
            with open(self.log_path, "rb") as f:
                lines = f.read().decode("utf-8", "replace").splitlines()
            return "\n".join(lines[-n:])
        except OSError:
            return "(no log)"

    def log_text(self, since_start=False):
        """The server's log (stderr); with since_start, only what the
        current process wrote (the file is kept across restarts)."""
        try:
            with open(self.log_path, "rb") as f:
                if since_start:
                    f.seek(getattr(self, "_log_start", 0))
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout=30.0):
        """SIGTERM and wait; returns the exit status."""
        if _verbose():
            print(self.log_tail(200), file=sys.stderr)
        self.close()
        rc = _stop(self.proc, signal.SIGTERM, timeout=timeout)
        self.proc = None
        return rc

    def kill(self):
        """SIGKILL: the crash case."""
        self.close()
        rc = _stop(self.proc, signal.SIGKILL, timeout=5)
        self.proc = None
        return rc

    def restart(self, **kw):
        if self.alive():
            self.stop()
        return self.start(**kw)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        if exc[0] is not None:
            print("--- %s log tail ---\n%s" % (self.name, self.log_tail()), file=sys.stderr)
        self.stop()

    # -- HTTP -------------------------------------------------------------

    @property
    def cert_path(self):
        return os.path.join(self.state_dir, "tls", "cert.pem")

    def ssl_context(self):
        """TLS pinned to the server's self-signed certificate (its SAN holds
        127.0.0.1, so host name checking stays on)."""
        if self._ssl is None:
            self._ssl = ssl.create_default_context(cafile=self.cert_path)
        return self._ssl

    def token(self, sub="alice", **kw):
        return mint_token(self.secret, sub=sub, **kw)

    def _connection(self, fresh=False):
        u = urllib.parse.urlsplit(self.url)
        if fresh or self._conn is None:
            if self._conn is not None:
                self._conn.close()
            self._conn = http.client.HTTPSConnection(u.hostname, u.port, context=self.ssl_context(),
                                                     timeout=30)
        return self._conn

    def client(self):
        """Another client of this server with its own HTTPS connection (one
        per thread when requests must really run at the same time)."""
        other = object.__new__(Edgerec)
        other.__dict__.update(self.__dict__)
        other._conn = None
        return other

    def close(self):
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def request(self, method, path, token="alice", headers=None, body=None, fresh=False):
        """Sends one request over a kept-alive HTTPS connection. 'token' is a
        user name (a token is minted for it), a ready token when it contains
        dots, or None for no Authorization header. Returns a Response."""
        hdrs = dict(headers or {})
        if token is not None and "Authorization" not in hdrs:
            tok = token if "." in token else self.token(token)
            hdrs["Authorization"] = "Bearer " + tok
        if isinstance(body, (dict, list)):
            body = json.dumps(body)
            hdrs.setdefault("Content-Type", "application/json")
        for attempt in range(2):
            conn = self._connection(fresh=fresh or attempt > 0)
            try:
                conn.request(method, path, body=body, headers=hdrs)
                r = conn.getresponse()
                data = r.read()
                resp = Response(r.status, {k.lower(): v for k, v in r.getheaders()}, data, r.getheaders())
                if resp.headers.get("connection", "").lower() == "close":
                    self.close()
                return resp
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError,
                    http.client.CannotSendRequest):
                self.close()
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def healthz_status(self):
        try:
            return self.request("GET", "/healthz", token=None, fresh=True).status
        except OSError:
            return None

    # -- the API, spelled out -----------------------------------------------

    def metric(self, name, labels=""):
        """The value of one sample of /metrics ('labels' as written there,
        e.g. '{policy="quota"}'); AssertionError when it is missing."""
        r = self.request("GET", "/metrics", token=None)
        assert r.status == 200, r
        want = name + labels + " "
        for line in r.body.decode().splitlines():
            if line.startswith(want):
                return float(line.split()[-1])
        raise AssertionError("%s%s not in /metrics" % (name, labels))

    def start_recording(self, room, user="alice", fmt=None, quality=None):
        q = {}
        if fmt:
            q["recording_format"] = fmt
        if quality:
            q["quality"] = quality
        path = "/api/webrtc/rooms/%s/recording/start" % room
        if q:
            path += "?" + urllib.parse.urlencode(q)
        return self.request("POST", path, token=user)

    def op(self, op, room, rid, user="alice"):
        """op: stop | pause | resume | cancel | status."""
        base = "/api/webrtc/rooms/%s/recording/%s" % (room, rid)
        if op == "cancel":
            return self.request("DELETE", base, token=user)
        if op == "status":
            return self.request("GET", base + "/status", token=user)
        return self.request("POST", base + "/" + op, token=user)

    def wait_status(self, room, rid, statuses, user="alice", timeout=20.0):
        """Polls status until it is one of 'statuses'; returns the object."""
        if isinstance(statuses, str):
            statuses = (statuses,)

        def check():
            r = self.op("status", room, rid, user)
            return r.json if r.status == 200 and r.json.get("status") in statuses else None
        return wait_until(check, timeout=timeout, interval=0.1,
                          what="recording %s in %s" % (rid, "/".join(statuses)))

    def record_for(self, seconds, room=None, user="alice", fmt="webm", quality="low", wait="completed",
                   timeout=60.0):
        """Starts a recording in 'room' (a new name when None), stops it
        after 'seconds' and waits until its status is 'wait'. Returns
        (room, recording id, the final state object)."""
        import uuid
        room = room or "clip-" + uuid.uuid4().hex[:8]
        r = self.start_recording(room, user, fmt, quality)
        assert r.status == 200, r
        rid = r.json["recording_id"]
        time.sleep(seconds)
        r = self.op("stop", room, rid, user)
        assert r.status == 200, r
        return room, rid, self.wait_status(room, rid, wait, user, timeout=timeout)

    def record_clip(self, room, user="alice", seconds=1.5, timeout=60.0):
        """record_for with the node's default format and quality, for a
        recording that must complete; returns its final state."""
        _, _, rec = self.record_for(seconds, room=room, user=user, fmt=None, quality=None,
                                    wait=("completed", "failed"), timeout=timeout)
        assert rec["status"] == "completed", rec
        return rec

    # -- WebSocket ----------------------------------------------------------

    def ws(self, room, user="alice", via="query", token=None, timeout=10.0, rcvbuf=None):
        """Opens a subscription to 'room' and waits for the 'subscribed'
        frame. via: "query" (access_token) or "header" (Authorization);
        with rcvbuf, the socket's receive buffer is set that small before
        connecting. Returns the websocket (python3-websocket) object."""
        import websocket  # Debian python3-websocket
        tok = token or self.token(user)
        u = urllib.parse.urlsplit(self.url)
        url = "wss://%s:%d/api/webrtc/ws?room_id=%s" % (u.hostname, u.port, urllib.parse.quote(room))
        headers = []
        if via == "query":
            url += "&access_token=" + urllib.parse.quote(tok)
        else:
            headers.append("Authorization: Bearer " + tok)
        opts = [(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)] if rcvbuf else []
        ws = websocket.create_connection(url, header=headers, timeout=timeout, sockopt=opts,
                                         sslopt={"ca_certs": self.cert_path})
        first = json.loads(ws.recv())
        assert first.get("type") == "subscribed" and first.get("room_id") == room, first
        return ws


def ws_next(ws, want_type=None, timeout=10.0):
    """Reads frames until one of type 'want_type' (any when None); returns
    it parsed. Raises AssertionError on timeout."""
    import websocket
    deadline = time.monotonic() + timeout
    seen = []
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError("no %s frame within %.1fs (saw %s)" % (want_type, timeout, seen))
        ws.settimeout(left)
        try:
            ev = json.loads(ws.recv())
        except websocket.WebSocketTimeoutException:
            continue
        seen.append(ev.get("type"))
        if want_type is None or ev.get("type") == want_type:
            return ev


__all__.append("ws_next")


def start_process(argv, log_path, **kw):
    """Starts a helper process (its own session, output to 'log_path') that
    cleanup() stops; returns the Popen."""
    return _start(argv, log_path, **kw)


def stop_process(p, timeout=15.0):
    """SIGTERM, then SIGKILL after 'timeout'; returns the exit status."""
    return _stop(p, signal.SIGTERM, timeout=timeout)


def start_s3rver(port, data_dir, bucket):
    """Starts the test S3 server (tests/support/s3/start) on 127.0.0.1:'port'
    with its objects under 'data_dir' and 'bucket' created, output appended to
    data_dir/s3rver.log, and waits for its next "ready" line (a restart on the
    same directory waits for its own). Returns the Popen, which cleanup()
    stops; fails the test when the server exits instead."""
    src = os.environ.get("EDGEREC_SOURCE_DIR") or os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
    log = os.path.join(data_dir, "s3rver.log")
    before = open(log, "rb").read().count(b"ready") if os.path.exists(log) else 0
    p = start_process(["sh", os.path.join(src, "tests", "support", "s3", "start"), str(port), data_dir, bucket], log)
    wait_until(lambda: open(log, "rb").read().count(b"ready") > before or p.poll() is not None,
               timeout=60, what="s3rver")
    assert p.poll() is None, open(log).read()
    return p


def s3_config(port, bucket, extra=None):
    """The node settings that point storage at the test S3 server on
    127.0.0.1:'port' ('bucket', path-style, its fixed credentials), merged
    with 'extra' (which wins on a clash)."""
    config = {"storage_backend": "s3", "s3_bucket": bucket,
              "s3.endpoint": "http://127.0.0.1:%d" % port, "s3.path_style": "true",
              "s3.region": "us-east-1", "s3.access_key": "S3RVER", "s3.secret_key": "S3RVER"}
    config.update(extra or {})
    return config


__all__ += ["start_process", "stop_process", "start_s3rver", "s3_config"]


def npm_dir(name):
    """The folder tests/support/'name' of a Node.js driver, with every npm
    dependency its package.json names installed from its lock file (npm ci,
    once)."""
    src = os.environ.get("EDGEREC_SOURCE_DIR") or os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
    d = os.path.abspath(os.path.join(src, "tests", "support", name))
    with open(os.path.join(d, "package.json")) as f:
        deps = json.load(f).get("dependencies", {})
    if not all(os.path.isdir(os.path.join(d, "node_modules", dep)) for dep in deps):
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=d, check=True, timeout=300)
    return d


def browser_dir():
    """The folder of the browser drivers (tests/support/browser, npm_dir);
    fails when Debian's chromium is missing."""
    assert os.path.exists("/usr/bin/chromium"), "Debian's chromium is not installed (scripts/bootstrap)"
    return npm_dir("browser")


__all__ += ["npm_dir", "browser_dir"]


def https_post(node, path, user):
    """One POST as 'user' on a connection of its own, sent once (no retry):
    for threads racing starts, where the harness's shared, retrying
    connection would not do. Returns (status, body bytes)."""
    u = urllib.parse.urlsplit(node.url)
    conn = http.client.HTTPSConnection(u.hostname, u.port, context=node.ssl_context(), timeout=60)
    try:
        conn.request("POST", path, headers={"Authorization": "Bearer " + node.token(user)})
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


__all__.append("https_post")


def write_file(path, text):
    """Replaces 'path' with 'text' at once (written beside it, then renamed
    over it, as a deploy does), so a watcher never reads half a file."""
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.rename(tmp, path)


class Ctx:
    """What setup() hands every test; tests add what they share."""


def start_node(name="node", config=None, redis=True, **kw):
    """The usual setup(): a real redis-server (redis=False: the node's
    embedded one) and one `edgerec serve` on it named 'name' with 'config'
    (other Edgerec() arguments in 'kw'), started. Returns a Ctx with .redis,
    .node and .nodes, the nodes whose log tail run_tests prints when a test
    fails (a test appends the nodes it starts later)."""
    c = Ctx()
    c.redis = Redis().start() if redis else None
    c.node = Edgerec(redis=c.redis, config=config, name=name, **kw).start()
    c.nodes = [c.node]
    return c


def stop_nodes(c):
    """The usual teardown(): every node of c.nodes still running stops on
    SIGTERM with exit status 0 (else the assertion shows its log tail)."""
    for node in (getattr(c, "nodes", None) or []) if c else []:
        if node.alive():
            assert node.stop() == 0, node.log_tail()


def source_dir():
    """The checkout (EDGEREC_SOURCE_DIR, else two levels above this file)."""
    return os.environ.get("EDGEREC_SOURCE_DIR") or os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                                 "..", "..")


def copy_policies(dest):
    """Copies the shipped policies (policies/: the four files and lib/) to
    'dest', a new folder, as scripts/run deploys them; returns 'dest'. A
    test edits the copy, never the checkout."""
    shutil.copytree(os.path.join(source_dir(), "policies"), dest)
    return dest


__all__ += ["Ctx", "start_node", "stop_nodes", "write_file", "source_dir", "copy_policies"]


def run_tests(namespace, setup=None, teardown=None):
    """Runs every function named test_* in 'namespace' in definition order
    with a shared context (what setup() returns), prints one line per test
    and exits non-zero when any failed (EDGEREC_TEST_ONLY=substring runs a
    subset)."""
    tests = [(n, f) for n, f in namespace.items() if n.startswith("test_") and callable(f)]
    only = os.environ.get("EDGEREC_TEST_ONLY")
    if only:
        tests = [(n, f) for n, f in tests if only in n]
    failed = []
    passed = 0
    ctx = None
    try:
        ctx = setup() if setup else None
        for name, fn in tests:
            t0 = time.monotonic()
            try:
                fn(ctx)
                passed += 1
                print("ok   %-50s %.2fs" % (name, time.monotonic() - t0), flush=True)
            except Exception:
                failed.append(name)
                print("FAIL %-50s %.2fs" % (name, time.monotonic() - t0), flush=True)
                traceback.print_exc()
                for node in getattr(ctx, "nodes", []) or []:
                    print("--- %s log tail ---\n%s" % (node.name, node.log_tail(40)), file=sys.stderr)
    except Exception:
        traceback.print_exc()
        failed.append("setup")
    finally:
        if teardown:
            try:
                teardown(ctx)
            except Exception:
                traceback.print_exc()
                failed.append("teardown")
        cleanup()
    print("%d passed, %d failed" % (passed, len(failed)), flush=True)
    sys.exit(1 if failed or not tests else 0)
