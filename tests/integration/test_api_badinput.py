"""test_api_badinput: bad input gets a clear 4xx with {"detail", "code"} and
the server keeps serving: malformed and oversized ids, unknown format,
quality and status, bad JSON, every JWT defect, huge headers and bodies,
wrong methods, unknown routes, garbage on the socket, TLS below 1.2. A
recording started first must come through untouched."""

import json
import os
import socket
import ssl
import time
import urllib.parse
import uuid

from edgerec_harness import Edgerec, Redis, copy_policies, mint_token, b64url, run_tests, TEST_SECRET

ROOM = "bad-" + uuid.uuid4().hex[:8]
NOCAM_ROOM = "nocam-" + uuid.uuid4().hex[:8]


class Ctx:
    pass


def setup():
    c = Ctx()
    c.redis = Redis().start()
    c.node = Edgerec(redis=c.redis, config={"default_quality": "low"}, name="badinput").start()
    c.nodes = [c.node]
    r = c.node.start_recording(ROOM, "keeper")
    assert r.status == 200, r
    c.keeper = r.json["recording_id"]
    return c


def teardown(c):
    if c and c.node.alive():
        assert c.node.stop() == 0


def expect(r, status, code=None):
    assert r.status == status, "expected %d, got %r" % (status, r)
    assert r.headers.get("content-type", "").startswith("application/json"), r.headers
    assert isinstance(r.json, dict) and isinstance(r.json.get("detail"), str) and r.json["detail"], r
    if code:
        assert r.json.get("code") == code, "expected code %s, got %r" % (code, r.json)


def test_malformed_ids(c):
    rid = str(uuid.uuid4())
    for room in ("bad$room", "a" * 129, "a" * 5000, "room%20x", "r%2Fx", "%00", "caf%C3%A9",
                 ".", "..", "%2E", "%2e%2E", ".%2E"):
        expect(c.node.request("GET", "/api/webrtc/rooms/%s/recordings" % room), 400, "invalid_room_id")
        expect(c.node.request("POST", "/api/webrtc/rooms/%s/recording/start" % room), 400, "invalid_room_id")
        expect(c.node.request("GET", "/api/webrtc/rooms/%s/recording/%s/status" % (room, rid)), 400,
               "invalid_room_id")
    for rec in ("not-a-uuid", "1234", rid + "0", rid[:-1], "x" * 300, rid.replace("-", "")):
        for method, suffix in (("GET", "/status"), ("POST", "/stop"), ("POST", "/pause"),
                               ("POST", "/resume"), ("DELETE", "")):
            expect(c.node.request(method, "/api/webrtc/rooms/%s/recording/%s%s" % (ROOM, rec, suffix)),
                   400, "invalid_recording_id")


def test_unknown_parameters(c):
    base = "/api/webrtc/rooms/%s/recording/start" % ROOM
    expect(c.node.request("POST", base + "?recording_format=avi"), 400, "invalid_format")
    expect(c.node.request("POST", base + "?recording_format=" + "w" * 500), 400, "invalid_format")
    expect(c.node.request("POST", base + "?quality=extreme"), 400, "invalid_quality")
    expect(c.node.request("POST", base + "?quality=low%00x"), 400, "invalid_quality")
    expect(c.node.request("POST", base + "?recording_format=webm%00"), 400, "invalid_format")
    expect(c.node.request("GET", "/api/webrtc/recordings?status=completed%00"), 400, "invalid_status")
    expect(c.node.request("POST", base + "?quality=" + "q" * 500), 400, "invalid_quality")
    expect(c.node.request("GET", "/api/webrtc/recordings?status=sleeping"), 400, "invalid_status")
    expect(c.node.request("POST", base, body="{not json"), 400, "invalid_json")
    expect(c.node.request("POST", base, body="[1,2]"), 400, "invalid_json")
    expect(c.node.request("POST", base, body={"quality": 7}), 400, "invalid_quality")
    expect(c.node.request("POST", base, body={"recording_format": "avi"}), 400, "invalid_format")
    # A valid body fills what the query leaves out.
    r = c.node.request("POST", base, body={"recording_format": "mkv", "quality": "low"})
    assert r.status == 200 and r.json["format"] == "mkv" and r.json["quality"] == "low", r
    assert c.node.op("cancel", ROOM, r.json["recording_id"]).status == 200


def jwt_defects():
    now = int(time.time())
    good = mint_token(TEST_SECRET, "alice")
    h, p, s = good.split(".")
    es_header = b64url(json.dumps({"alg": "ES256", "typ": "JWT"}))
    return [
        ("no header", None, "missing_token"),
        ("basic scheme", "Basic YWxpY2U6cHc=", "invalid_token"),
        ("empty bearer", "Bearer ", "missing_token"),
        ("garbage", "Bearer garbage", "malformed_token"),
        ("two parts", "Bearer %s.%s" % (h, p), "malformed_token"),
        ("four parts", "Bearer %s.x" % good, "malformed_token"),
        ("padding", "Bearer %s.%s.%s=" % (h, p, s), "malformed_token"),
        ("header not json", "Bearer %s.%s.%s" % (b64url("nope"), p, s), "malformed_token"),
        ("alg none", "Bearer " + mint_token(TEST_SECRET, "alice", alg="none"), "invalid_algorithm"),
        ("alg None", "Bearer " + mint_token(TEST_SECRET, "alice", alg="None"), "invalid_algorithm"),
        ("alg HS512", "Bearer " + mint_token(TEST_SECRET, "alice", alg="HS512"), "invalid_algorithm"),
        ("alg missing", "Bearer " + mint_token(TEST_SECRET, "alice", header={"alg": None}), None),
        ("ES256 without key", "Bearer %s.%s.%s" % (es_header, p, s), "invalid_algorithm"),
        ("bad signature", "Bearer " + mint_token(TEST_SECRET, "alice", sign_with="other-secret"),
         "invalid_signature"),
        ("tampered payload", "Bearer %s.%s.%s" % (h, b64url(json.dumps({"sub": "root", "exp": now + 99})), s),
         "invalid_signature"),
        ("expired", "Bearer " + mint_token(TEST_SECRET, "alice", ttl=-3600), "token_expired"),
        ("not yet valid", "Bearer " + mint_token(TEST_SECRET, "alice", claims={"nbf": now + 3600}),
         "token_not_yet_valid"),
        ("no sub", "Bearer " + mint_token(TEST_SECRET, "alice", drop=("sub",)), "invalid_claims"),
        # Without exp a token lives http.jwt_max_lifetime (24 h) from its iat.
        ("no exp, no iat", "Bearer " + mint_token(TEST_SECRET, "alice", ttl=None, drop=("iat",)),
         "invalid_claims"),
        ("no exp, iat 25 h ago", "Bearer " + mint_token(TEST_SECRET, "alice", ttl=None, now=now - 25 * 3600),
         "token_expired"),
        ("numeric sub", "Bearer " + mint_token(TEST_SECRET, "alice", claims={"sub": 42}), "invalid_claims"),
        ("exp string", "Bearer " + mint_token(TEST_SECRET, "alice", claims={"exp": "tomorrow"}),
         "invalid_claims"),
        ("empty sub", "Bearer " + mint_token(TEST_SECRET, ""), "invalid_claims"),
        ("sub with newline", "Bearer " + mint_token(TEST_SECRET, "ali\nce"), "invalid_claims"),
        ("sub with NUL", "Bearer " + mint_token(TEST_SECRET, "ali\u0000ce"), "invalid_claims"),
        ("sub too long", "Bearer " + mint_token(TEST_SECRET, "a" * 129), "invalid_claims"),
        ("huge token", "Bearer " + "a" * 9000 + "." + "b" * 10 + "." + "c", "malformed_token"),
    ]


def test_jwt_defects(c):
    paths = [("GET", "/api/webrtc/recordings"), ("POST", "/api/webrtc/rooms/%s/recording/start" % ROOM),
             ("GET", "/api/webrtc/rooms/%s/recording/%s/status" % (ROOM, c.keeper))]
    for name, header, code in jwt_defects():
        for method, path in paths:
            hdrs = {"Authorization": header} if header is not None else {}
            r = c.node.request(method, path, token=None, headers=hdrs)
            assert r.status == 401, "%s: %r" % (name, r)
            expect(r, 401, code)
            assert r.headers.get("www-authenticate", "").startswith("Bearer"), (name, r.headers)
    # Within the leeway an expired token still passes; a valid one always.
    r = c.node.request("GET", "/api/webrtc/recordings", token=mint_token(TEST_SECRET, "alice", ttl=-5))
    assert r.status == 200, r
    # A token without exp issued within the maximum lifetime passes.
    r = c.node.request("GET", "/api/webrtc/recordings",
                       token=mint_token(TEST_SECRET, "alice", ttl=None, now=int(time.time()) - 23 * 3600))
    assert r.status == 200, r
    r = c.node.request("GET", "/api/webrtc/recordings",
                       headers={"Authorization": "bearer " + mint_token(TEST_SECRET, "alice")}, token=None)
    assert r.status == 200, r
    # The token in the query string is for WebSocket upgrades only.
    r = c.node.request("GET", "/api/webrtc/recordings?access_token=" + mint_token(TEST_SECRET, "alice"),
                       token=None)
    expect(r, 401, "missing_token")


def test_wrong_methods_and_routes(c):
    rid = c.keeper
    cases = [("GET", "/api/webrtc/rooms/%s/recording/start" % ROOM, "POST"),
             ("PUT", "/api/webrtc/rooms/%s/recording/%s/stop" % (ROOM, rid), "POST"),
             ("GET", "/api/webrtc/rooms/%s/recording/%s/pause" % (ROOM, rid), "POST"),
             ("POST", "/api/webrtc/rooms/%s/recording/%s/status" % (ROOM, rid), "GET"),
             ("PATCH", "/api/webrtc/rooms/%s/recording/%s" % (ROOM, rid), "DELETE"),
             ("DELETE", "/api/webrtc/recordings", "GET"),
             ("POST", "/healthz", "GET"),
             ("DELETE", "/api/webrtc/rooms/%s/recording/start" % ROOM, "POST")]
    for method, path, allow in cases:
        r = c.node.request(method, path)
        expect(r, 405, "method_not_allowed")
        assert r.headers.get("allow") == allow, (method, path, r.headers)
    for path in ("/api", "/api/webrtc/rooms/x", "/api/webrtc/recordings/", "/api/webrtc/rooms//recordings",
                 "/../../etc/passwd", "/api/webrtc/rooms/x/recording/%s/stop/again" % rid):
        expect(c.node.request("GET", path), 404, "not_found")
    r = c.node.request("GET", "/api/webrtc/ws?room_id=" + ROOM)
    expect(r, 426, "upgrade_required")
    r = c.node.request("HEAD", "/healthz", token=None)
    assert r.status == 200 and r.body == b"" and int(r.headers["content-length"]) > 0, r


def test_huge_headers_and_bodies(c):
    r = c.node.request("GET", "/api/webrtc/recordings", headers={"X-Big": "x" * 20000}, fresh=True)
    assert 400 <= r.status < 500 and r.status != 401, r
    many = {"X-H%d" % i: "v" for i in range(120)}
    r = c.node.request("GET", "/api/webrtc/recordings", headers=many, fresh=True)
    assert 400 <= r.status < 500, r
    r = c.node.request("POST", "/api/webrtc/rooms/%s/recording/start" % ROOM,
                       body="{" + " " * (200 * 1024) + "}", headers={"Content-Type": "application/json"},
                       fresh=True)
    expect(r, 413, "body_too_large")
    long_query = "/api/webrtc/recordings?status=" + "x" * 30000
    r = c.node.request("GET", long_query, fresh=True)
    assert 400 <= r.status < 500, r


def raw_tls(c, payload, read=True):
    u = urllib.parse.urlsplit(c.node.url)
    ctx = c.node.ssl_context()
    with socket.create_connection((u.hostname, u.port), timeout=10) as s:
        with ctx.wrap_socket(s, server_hostname=u.hostname) as t:
            t.sendall(payload)
            if not read:
                return b""
            data = b""
            try:
                while True:
                    chunk = t.recv(65536)
                    if not chunk:
                        break
                    data += chunk
            except (ssl.SSLError, ConnectionResetError, socket.timeout):
                pass
            return data


def test_garbage_on_the_wire(c):
    for payload in (b"HELLO\r\n\r\n", b"GET\r\n\r\n", b"GET / HTTP/9.9\r\n\r\n",
                    b"\x00\x01\x02\x03" * 100 + b"\r\n\r\n", b"GET /healthz HTTP/1.1\r\nHost x\r\n\r\n",
                    b"POST /api/webrtc/recordings HTTP/1.1\r\nContent-Length: -5\r\n\r\n"):
        data = raw_tls(c, payload)
        if data:
            status = int(data.split(b" ", 2)[1])
            assert 400 <= status < 500 or status == 505, data[:200]
    # Plain text on the TLS port, and a TLS handshake abandoned half way.
    u = urllib.parse.urlsplit(c.node.url)
    with socket.create_connection((u.hostname, u.port), timeout=5) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\n\r\n")
        try:
            s.recv(100)
        except (ConnectionResetError, socket.timeout):
            pass
    with socket.create_connection((u.hostname, u.port), timeout=5) as s:
        s.sendall(b"\x16\x03\x01\x00\xff\x01")
    assert c.node.healthz_status() == 200


def test_tls_below_1_2_refused(c):
    u = urllib.parse.urlsplit(c.node.url)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    ctx.minimum_version = ssl.TLSVersion.TLSv1
    ctx.maximum_version = ssl.TLSVersion.TLSv1_1
    refused = False
    with socket.create_connection((u.hostname, u.port), timeout=5) as s:
        try:
            with ctx.wrap_socket(s, server_hostname=u.hostname):
                pass
        except (ssl.SSLError, ConnectionResetError):
            refused = True
    assert refused, "TLS 1.1 handshake succeeded"
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    with socket.create_connection((u.hostname, u.port), timeout=5) as s:
        with ctx.wrap_socket(s, server_hostname=u.hostname) as t:
            assert t.version() == "TLSv1.2"


P256_N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


def es256_token(private_key, sub, ttl=3600, high_s=False):
    """An ES256 token signed with python3-cryptography; S is normalized to
    the low one of (r, s) and (r, n - s), or to the high one with high_s."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
    now = int(time.time())
    signing_input = b64url(json.dumps({"alg": "ES256", "typ": "JWT"})) + "." + \
        b64url(json.dumps({"sub": sub, "iat": now, "exp": now + ttl}))
    der = private_key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256()))
    r, s = decode_dss_signature(der)
    if (s > P256_N // 2) != high_s:
        s = P256_N - s
    return signing_input + "." + b64url(r.to_bytes(32, "big") + s.to_bytes(32, "big"))


def test_es256_public_key(c):
    """A node configured with an ES256 public key (and the HS256 secret)
    accepts tokens signed by the matching private key (signed here with
    python3-cryptography) and refuses other keys."""
    import os
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    key = ec.generate_private_key(ec.SECP256R1())
    other = ec.generate_private_key(ec.SECP256R1())
    pem = key.public_key().public_bytes(serialization.Encoding.PEM,
                                        serialization.PublicFormat.SubjectPublicKeyInfo)
    n = Edgerec(redis=c.redis, name="es256")
    os.makedirs(n.dir, exist_ok=True)
    pub = os.path.join(n.dir, "jwt_es256.pem")
    with open(pub, "wb") as f:
        f.write(pem)
    n.extra["jwt_public_key"] = pub
    n.start()
    c.nodes.append(n)
    try:
        r = n.request("GET", "/api/webrtc/recordings", token=es256_token(key, "eve"))
        assert r.status == 200, r
        r = n.request("GET", "/api/webrtc/recordings", token=n.token("hs-user"))
        assert r.status == 200, r
        expect(n.request("GET", "/api/webrtc/recordings", token=es256_token(other, "eve")), 401,
               "invalid_signature")
        expect(n.request("GET", "/api/webrtc/recordings", token=es256_token(key, "eve", ttl=-3600)), 401,
               "token_expired")
        # The high-S twin of a good signature is refused.
        expect(n.request("GET", "/api/webrtc/recordings", token=es256_token(key, "eve", high_s=True)), 401,
               "invalid_signature")
    finally:
        assert n.stop() == 0


def test_missing_camera_refused_without_trace(c):
    """A room wired to a camera that is not there: 503 device_unavailable,
    no record, and the lifecycle policy never hears of a start."""
    policies = copy_policies(os.path.join(c.redis.dir, "policies-nocam"))
    n = Edgerec(redis=c.redis, name="nocam", config={
        "default_quality": "low", "policy_dir": policies,
        "room.%s.source" % NOCAM_ROOM: "v4l2",
        "room.%s.args" % NOCAM_ROOM: "device=/dev/v4l/by-id/no-such-camera"}).start()
    try:
        lifecycle = '{policy="lifecycle"}'
        r = n.start_recording(ROOM + "-ok", "keeper")
        assert r.status == 200, r
        ok_id = r.json["recording_id"]
        started = n.metric("edgerec_policy_calls_total", lifecycle)
        assert started > 0, "a start that records calls the lifecycle policy"
        for _ in range(3):
            expect(n.start_recording(NOCAM_ROOM, "keeper"), 503, "device_unavailable")
        r = n.request("GET", "/api/webrtc/rooms/%s/recordings" % NOCAM_ROOM, token="keeper")
        assert r.status == 200 and r.json["recordings"] == [], r
        assert n.metric("edgerec_policy_calls_total", lifecycle) == started
        assert n.op("cancel", ROOM + "-ok", ok_id, user="keeper").status == 200
    finally:
        assert n.stop() == 0


def test_still_serving_nothing_lost(c):
    assert c.node.alive()
    r = c.node.request("GET", "/healthz", token=None, fresh=True)
    assert r.status == 200 and r.json["status"] == "ok", r
    r = c.node.op("status", ROOM, c.keeper, user="keeper")
    assert r.status == 200 and r.json["status"] == "recording", r
    r = c.node.op("stop", ROOM, c.keeper, user="keeper")
    assert r.status == 200 and r.json["duration_seconds"] > 0, r
    done = c.node.wait_status(ROOM, c.keeper, ("completed", "failed"), user="keeper")
    assert done["status"] == "completed", done
    m = c.node.request("GET", "/metrics", token=None).body.decode()
    assert 'edgerec_http_requests_total{route="list_user",code="401"}' in m
    assert 'edgerec_http_requests_total{route="method_not_allowed",code="405"}' in m
    assert "edgerec_http_auth_failures_total" in m
    assert "SIGSEGV" not in c.node.log_text() and "AddressSanitizer" not in c.node.log_text()


if __name__ == "__main__":
    run_tests(globals(), setup=setup, teardown=teardown)
