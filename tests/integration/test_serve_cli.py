"""test_serve_cli: `edgerec serve` as a person meets it: configuration
errors are refused up front with a clear message and exit status 2 (bad
listen addresses, unknown keys with file:line, a port in use), the
environment overrides the file, the printed dev token works, the JWT secret
and self-signed certificate are created once and kept, SIGINT stops it
cleanly."""

import os
import signal
import socket
import ssl
import subprocess
import time

from edgerec_harness import Edgerec, Redis, mktemp, run_tests, wait_until


class Ctx:
    pass


def setup():
    c = Ctx()
    c.redis = Redis().start()
    c.nodes = []
    c.bin = Edgerec().bin
    return c


def teardown(c):
    for n in c.nodes if c else ():
        if n.alive():
            n.stop()


def serve(c, conf_text, env=None, timeout=20):
    d = mktemp("cli")
    path = os.path.join(d, "edgerec.conf")
    with open(path, "w") as f:
        f.write(conf_text.replace("@DIR@", d))
    e = dict(os.environ)
    e.update(env or {})
    return subprocess.run([c.bin, "serve", "--config", path], capture_output=True, text=True,
                          timeout=timeout, env=e), path


def test_config_errors(c):
    base = "state_dir = @DIR@/state\nredis_url = %s\n" % c.redis.url
    cases = [("listen_https = 1.2.3:99\n", "not an IPv4 address"),
             ("listen_https = 127.0.0.1:99999\n", "not a port"),
             ("listen_http = 0.0.0.0:8080\nlisten_https =\n", "loopback only"),
             ("listen_https =\nlisten_http =\n", "neither listen_https nor listen_http"),
             ("http.threads = 2\n", "http.threads"),
             ("no_such_option = 1\n", "unknown option"),
             ("http.max_body = lots\n", "http.max_body")]
    for extra, want in cases:
        out, path = serve(c, base + extra)
        assert out.returncode == 2, (extra, out.returncode, out.stderr)
        assert want in out.stderr, (extra, out.stderr)
    out, path = serve(c, base + "no_such_option = 1\n")
    assert "%s:3" % path in out.stderr, out.stderr


def test_port_in_use(c):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        out, _ = serve(c, "state_dir = @DIR@/state\nredis_url = %s\nlisten_https = 127.0.0.1:%d\n"
                       % (c.redis.url, port))
        assert out.returncode != 0 and "cannot start the server" in out.stderr, out.stderr


def test_env_overrides_and_dev_token(c):
    n = Edgerec(redis=c.redis, name="env")
    c.nodes.append(n)
    n.extra["listen_https"] = "127.0.0.1:1"   # overridden below
    os.environ["EDGEREC_LISTEN_HTTPS"] = "127.0.0.1:0"
    try:
        n.start()
    finally:
        del os.environ["EDGEREC_LISTEN_HTTPS"]
    assert not n.url.endswith(":1"), n.url
    assert n.dev_token, n.lines
    r = n.request("GET", "/api/webrtc/recordings", token=n.dev_token)
    assert r.status == 200 and r.json["count"] == 0, r
    n.stop()


def test_redis_password_not_printed(c):
    # The startup lines go to a terminal, a journal or a CI log: the Redis
    # URL is shown with its password masked, as `--print-config` shows it.
    r = Redis(appendonly=False).start()
    r.cli("CONFIG", "SET", "requirepass", "pw-not-for-logs-7")
    n = Edgerec(redis=r, name="redispw")
    c.nodes.append(n)
    n.extra["redis_url"] = "redis://:pw-not-for-logs-7@127.0.0.1:%d/0" % r.port
    try:
        n.start()
        shown = [l for l in n.lines if "edgerec serve: node" in l]
        assert shown and "redis redis://:***@127.0.0.1:%d/0" % r.port in shown[0], n.lines
        assert not any("pw-not-for-logs-7" in l for l in n.lines), n.lines
        assert n.request("GET", "/api/webrtc/recordings", token=n.dev_token).status == 200
    finally:
        n.stop()
        r.stop()


def test_secret_and_certificate_kept(c):
    n = Edgerec(redis=c.redis, secret="", name="generated")
    c.nodes.append(n)
    n.start()
    secret_path = os.path.join(n.state_dir, "jwt_secret")
    assert os.stat(secret_path).st_mode & 0o777 == 0o600
    assert os.stat(os.path.join(n.state_dir, "tls", "key.pem")).st_mode & 0o777 == 0o600
    with open(secret_path) as f:
        secret = f.read().strip()
    with open(n.cert_path) as f:
        cert = f.read()
    token = n.dev_token
    assert n.request("GET", "/api/webrtc/recordings", token=token).status == 200
    n.secret = secret
    assert n.request("GET", "/api/webrtc/recordings", token=n.token("carol")).status == 200
    n.stop()
    n.start()
    with open(n.cert_path) as f:
        assert f.read() == cert, "certificate changed across restarts"
    assert n.request("GET", "/api/webrtc/recordings", token=token).status == 200
    n.stop()


def test_configured_certificate(c):
    d = mktemp("cert")
    key, cert = os.path.join(d, "key.pem"), os.path.join(d, "cert.pem")
    out = subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                          "-nodes", "-keyout", key, "-out", cert, "-days", "2", "-subj", "/CN=edgerec-test",
                          "-addext", "subjectAltName=IP:127.0.0.1"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    n = Edgerec(redis=c.redis, name="owncert", config={"tls_cert": cert, "tls_key": key})
    c.nodes.append(n)
    n.start(wait_healthy=False)
    ctx = ssl.create_default_context(cafile=cert)
    u = n.url[len("https://"):].split(":")
    with socket.create_connection((u[0], int(u[1])), timeout=5) as s:
        with ctx.wrap_socket(s, server_hostname=u[0]) as t:
            served = t.getpeercert(binary_form=True)
    with open(cert) as f:
        assert served == ssl.PEM_cert_to_DER_cert(f.read()), "the server presents another certificate"
    n.stop()
    # A certificate file that holds none is refused at start.
    bad = os.path.join(d, "bad.pem")
    with open(bad, "w") as f:
        f.write("not a certificate\n")
    out, _ = serve(c, "state_dir = @DIR@/state\nredis_url = %s\nlisten_https = 127.0.0.1:0\ntls_cert = %s\n"
                   "tls_key = %s\n" % (c.redis.url, bad, key))
    assert out.returncode != 0 and "no PEM certificate" in out.stderr, out.stderr


def test_sigint_clean_exit(c):
    n = Edgerec(redis=c.redis, name="sigint")
    c.nodes.append(n)
    n.start()
    t0 = time.monotonic()
    n.proc.send_signal(signal.SIGINT)
    rc = n.proc.wait(timeout=20)
    assert rc == 0, (rc, n.log_tail())
    assert time.monotonic() - t0 < 10
    assert "stopped" in n.log_tail(5)


if __name__ == "__main__":
    run_tests(globals(), setup=setup, teardown=teardown)
