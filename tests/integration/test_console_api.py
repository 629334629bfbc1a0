"""test_console_api: what the console needs from the API, from the outside.

Sign-in: at first start a password is generated into state_dir/console_password
(mode 0600) and serve names the file; signing in with it gives a session
cookie (HttpOnly, Secure, SameSite=Strict) and a CSRF token. The cookie acts
as the operator with the admin role; a request that changes something needs
the X-CSRF-Token header (403 without it, 403 from a foreign Origin too); a
bearer JWT keeps working as before, whatever cookie comes with it. A wrong
password is 401 and logged; after console.login_max_failures failures the
address gets 429 with Retry-After, even with the right password, until the
lockout passes. A hash line printed by `edgerec passwd` configures the
password instead (no file is generated then).

Listing and deleting: an admin (role claim, or the console session) lists
every user's recordings at GET /api/webrtc/recordings, anyone else their own.
DELETE on a completed recording deletes it: 200 with its last state, the
room's subscribers get recording_deleted, its files are gone and its status
is 404; another user gets 403 and the recording stays. A live recording's
DELETE is still a cancel."""

import os
import stat
import subprocess
import time
import uuid

from edgerec_harness import Ctx, Edgerec, Redis, run_tests, stop_nodes, ws_next

LOCKOUT_S = 4


def setup():
    c = Ctx()
    c.redis = Redis().start()
    c.node = Edgerec(redis=c.redis, name="console", config={
        "default_quality": "low", "console.login_max_failures": "3",
        "console.login_lockout": "%ds" % LOCKOUT_S}).start()
    c.nodes = [c.node]
    return c


def teardown(c):
    stop_nodes(c)


def login(node, user, password, headers=None):
    h = {"Content-Type": "application/json"}
    h.update(headers or {})
    return node.request("POST", "/api/system/login", token=None, headers=h,
                        body='{"user": "%s", "password": "%s"}' % (user, password))


def cookie_of(r):
    raw = r.headers["set-cookie"]
    return raw.split(";", 1)[0], raw


def password_file(c):
    return os.path.join(c.node.state_dir, "console_password")


def test_generated_password_file(c):
    path = password_file(c)
    st = os.stat(path)
    assert stat.S_IMODE(st.st_mode) == 0o600, oct(st.st_mode)
    line = [l for l in c.node.lines if "console sign-in as" in l]
    assert line and path in line[0] and "'operator'" in line[0], c.node.lines
    assert path in c.node.log_text(), "the log does not say where the password is"
    c.password = open(path).read().strip()
    assert len(c.password) >= 16


def test_sign_in_gives_a_strict_cookie(c):
    r = login(c.node, "operator", c.password)
    assert r.status == 200, r
    c.cookie, raw = cookie_of(r)
    for attr in ("HttpOnly", "Secure", "SameSite=Strict", "Path=/"):
        assert attr in raw, raw
    c.csrf = r.json["csrf_token"]
    assert r.json["user"] == "operator" and len(c.csrf) >= 32, r.json
    s = c.node.request("GET", "/api/system/session", token=None, headers={"Cookie": c.cookie})
    assert s.status == 200 and s.json["csrf_token"] == c.csrf, s
    assert c.node.request("GET", "/api/system/session", token=None).status == 401


def test_cookie_acts_as_admin_and_needs_csrf(c):
    h = {"Cookie": c.cookie}
    # Reads need no CSRF token; the session is an admin.
    assert c.node.request("GET", "/api/system/policies", token=None, headers=h).status in (200, 404)
    r = c.node.request("GET", "/api/webrtc/recordings", token=None, headers=h)
    assert r.status == 200, r
    path = "/api/webrtc/rooms/csrf-room/recording/start"
    r = c.node.request("POST", path, token=None, headers=h)
    assert r.status == 403 and r.json["code"] == "csrf_required", r
    r = c.node.request("POST", path, token=None, headers=dict(h, **{"X-CSRF-Token": "x" * 43}))
    assert r.status == 403 and r.json["code"] == "csrf_required", r
    r = c.node.request("POST", path, token=None,
                       headers=dict(h, **{"X-CSRF-Token": c.csrf, "Origin": "https://elsewhere.example"}))
    assert r.status == 403 and r.json["code"] == "origin_mismatch", r
    r = c.node.request("POST", path, token=None, headers=dict(h, **{"X-CSRF-Token": c.csrf}))
    assert r.status == 200 and r.json["user_id"] == "operator", r
    rid = r.json["recording_id"]
    r = c.node.request("DELETE", "/api/webrtc/rooms/csrf-room/recording/" + rid, token=None, headers=h)
    assert r.status == 403, r
    r = c.node.request("DELETE", "/api/webrtc/rooms/csrf-room/recording/" + rid, token=None,
                       headers=dict(h, **{"X-CSRF-Token": c.csrf}))
    assert r.status == 200 and r.json["status"] == "cancelled", r
    # A stale or forged cookie is 401, not a fall-back to anything else.
    r = c.node.request("GET", "/api/webrtc/recordings", token=None, headers={"Cookie": "edgerec_session=" + "A" * 43})
    assert r.status == 401 and r.json["code"] == "session_expired", r


def test_bearer_tokens_unchanged(c):
    # Bearer wins over any cookie; no CSRF token is asked of it.
    h = {"Cookie": "edgerec_session=" + "B" * 43}
    r = c.node.request("POST", "/api/webrtc/rooms/bearer-room/recording/start", token="alice", headers=h)
    assert r.status == 200 and r.json["user_id"] == "alice", r
    assert c.node.op("cancel", "bearer-room", r.json["recording_id"]).status == 200
    r = c.node.request("GET", "/api/webrtc/recordings", token=None)
    assert r.status == 401 and r.json["code"] == "missing_token", r


def test_admin_lists_everyone(c):
    rids = {}
    for user in ("list-alice", "list-bob"):
        r = c.node.start_recording("list-room", user)
        assert r.status == 200, r
        rids[user] = r.json["recording_id"]
    try:
        own = c.node.request("GET", "/api/webrtc/recordings", token="list-alice").json
        assert {x["recording_id"] for x in own["recordings"]} == {rids["list-alice"]}, own
        admin = c.node.token("root", claims={"roles": ["admin"]})
        every = c.node.request("GET", "/api/webrtc/recordings", token=admin).json
        ids = {x["recording_id"] for x in every["recordings"]}
        assert set(rids.values()) <= ids and every["count"] == len(every["recordings"]), every
        live = c.node.request("GET", "/api/webrtc/recordings?status=recording", token=admin).json
        assert all(x["status"] == "recording" for x in live["recordings"]), live
        session = c.node.request("GET", "/api/webrtc/recordings", token=None, headers={"Cookie": c.cookie}).json
        assert set(rids.values()) <= {x["recording_id"] for x in session["recordings"]}
    finally:
        for user, rid in rids.items():
            assert c.node.op("cancel", "list-room", rid, user=user).status == 200


def test_delete_completed_recording(c):
    room = "del-" + uuid.uuid4().hex[:6]
    ws = c.node.ws(room, user="alice")
    rid = c.node.record_clip(room)["recording_id"]
    folder = os.path.join(c.node.storage, rid)
    assert os.path.isdir(folder) and os.listdir(folder), folder
    # Not the owner, not an admin: refused, nothing goes.
    r = c.node.op("cancel", room, rid, user="mallory")
    assert r.status == 403, r
    assert os.path.isdir(folder)
    r = c.node.op("cancel", room, rid, user="alice")
    assert r.status == 200, r
    assert r.json["recording_id"] == rid and r.json["status"] == "completed", r.json
    d = r.json["metadata"]["deleted"]
    assert d["local_files"] is True and d["s3_object"] == "none" and d["at"], d
    ev = ws_next(ws, "recording_deleted", timeout=10)
    assert ev["data"]["recording_id"] == rid and ev["room_id"] == room, ev
    ws.close()
    assert not os.path.exists(folder), os.listdir(folder)
    assert c.node.op("status", room, rid).status == 404
    assert c.node.op("cancel", room, rid).status == 404
    listed = c.node.request("GET", "/api/webrtc/rooms/%s/recordings" % room).json
    assert rid not in {x["recording_id"] for x in listed["recordings"]}, listed
    assert c.redis.cli("EXISTS", "webrtc:recording:state:" + rid).strip() == "0"
    assert c.redis.cli("SISMEMBER", "webrtc:recording:user:alice", rid).strip() == "0"


def test_wrong_password_then_lockout(c):
    r = login(c.node, "operator", "not-the-password")
    assert r.status == 401 and r.json["code"] == "invalid_credentials", r
    assert login(c.node, "someone", c.password).status == 401
    assert login(c.node, "operator", "still-wrong").status == 401
    # Three failures: the address waits, even with the right password.
    r = login(c.node, "operator", c.password)
    assert r.status == 429 and r.json["code"] == "too_many_attempts", r
    assert 1 <= int(r.headers["retry-after"]) <= LOCKOUT_S + 1, r.headers
    assert "console sign-in failed from 127.0.0.1" in c.node.log_text()
    # Sessions already open keep working meanwhile.
    assert c.node.request("GET", "/api/system/session", token=None, headers={"Cookie": c.cookie}).status == 200
    time.sleep(LOCKOUT_S + 0.5)
    r = login(c.node, "operator", c.password)
    assert r.status == 200, r


def test_logout(c):
    h = {"Cookie": c.cookie}
    r = c.node.request("POST", "/api/system/logout", token=None, headers=h)
    assert r.status == 403 and r.json["code"] == "csrf_required", r
    r = c.node.request("POST", "/api/system/logout", token=None, headers=dict(h, **{"X-CSRF-Token": c.csrf}))
    assert r.status == 200 and "Max-Age=0" in r.headers["set-cookie"], r
    assert c.node.request("GET", "/api/system/session", token=None, headers=h).status == 401
    assert c.node.request("GET", "/api/webrtc/recordings", token=None, headers=h).status == 401


def test_console_files(c):
    r = c.node.request("GET", "/", token=None)
    assert r.status == 200 and r.headers["content-type"].startswith("text/html"), r
    assert b'src="/console/app.js"' in r.body, r.body[:300]
    csp = r.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp and "unsafe" not in csp, csp
    assert r.headers["x-content-type-options"] == "nosniff", r.headers
    etag = r.headers["etag"]
    r = c.node.request("GET", "/", token=None, headers={"If-None-Match": etag})
    assert r.status == 304 and r.body == b"", r
    r = c.node.request("GET", "/console/app.js", token=None)
    assert r.status == 200 and "javascript" in r.headers["content-type"] and r.headers["etag"] != etag, r
    for bad in ("/console/nothing.js", "/console/..%2findex.html", "/console/index.html/x"):
        r = c.node.request("GET", bad, token=None)
        assert r.status == 404, (bad, r)


def test_configured_hash(c):
    out = subprocess.run([c.node.bin, "passwd", "--iterations", "1000"], input="correct horse battery\n",
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    line = out.stdout.strip()
    assert line.startswith('console.password_hash = "pbkdf2-sha256$1000$'), line
    value = line.split('"')[1]
    short = subprocess.run([c.node.bin, "passwd"], input="short\n", capture_output=True, text=True, timeout=30)
    assert short.returncode != 0 and "8" in short.stderr, short
    other = Edgerec(redis=c.redis, name="hashed", config={"console.user": "boss",
                                                           "console.password_hash": value}).start()
    c.nodes.append(other)
    assert not os.path.exists(os.path.join(other.state_dir, "console_password"))
    assert not any("console sign-in as" in l for l in other.lines), other.lines
    assert login(other, "boss", "correct horse batter").status == 401
    r = login(other, "boss", "correct horse battery")
    assert r.status == 200 and r.json["user"] == "boss", r
    # A malformed hash refuses to start.
    bad = subprocess.run([c.node.bin, "serve", "--set", "console.password_hash=md5$abc", "--set",
                          "state_dir=" + other.state_dir, "--set", "listen_https=127.0.0.1:0"],
                         capture_output=True, text=True, timeout=30)
    assert bad.returncode != 0 and "console.password_hash" in bad.stderr, bad.stderr
    other.stop()


if __name__ == "__main__":
    run_tests(globals(), setup=setup, teardown=teardown)
