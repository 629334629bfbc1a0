"""test_policy_hostile: policies that fail, from the outside, against a real
`edgerec serve` and a real redis-server.

- Quota fails closed: with policy.param.user_concurrent = 2, a user with
  3000 past records starts 8 recordings at once while quota.lua burns its
  time budget (and then while it raises): exactly 2 are admitted, and the
  fallback shows in /api/system/policies (last_error), /healthz
  ("degraded" with the reason) and /metrics (per policy). The day's minutes
  are still enforced by the fallback from the per-user usage index. The
  shipped quota.lua answers for that user from the per-user indexes: timed
  beside the older way (listing every record of the user).
- Wrong result types are errors: an auth.lua whose authorize returns a
  number denies non-admins (fail closed) and shows in last_error, /healthz
  and /metrics; admins keep the built-in rule.
- RTP ports stay inside rtp.port_min..port_max: a room whose arguments fix
  a port outside is refused (409 with the detail), rtp-<n> rooms named
  outside the range get allocated ports, and packets from a second sender
  address are dropped and counted.
"""

import http.client
import json
import os
import shutil
import socket
import statistics
import threading
import time
import urllib.parse
import uuid

from edgerec_harness import Ctx, Edgerec, Redis, mktemp, run_tests, wait_until, write_file
from rtp_testlib import free_ports

SRC = os.environ.get("EDGEREC_SOURCE_DIR", ".")
USER = "mallory"
PAST = 3000

SLOW_ADMIT = """
function M.admit(facts)
  local t = os.clock()
  while os.clock() - t < 5 do end
  return { decision = "allow" }
end
return M
"""

RAISING_ADMIT = """
function M.admit(facts)
  error("quota database unreachable")
end
return M
"""

# How quota.lua counted before the per-user indexes: every record of the user.
LISTING_ADMIT = """
local util = lib("util")
function M.admit(facts)
  local live = util.count(edge.user_recordings(facts.user_id), util.is_live)
  if live >= 2 then
    return { decision = "refuse", status = 400, reason = "concurrent limit reached" }
  end
  return { decision = "allow", user_limit = 2 }
end
return M
"""

NUMBER_AUTH = """
return { authorize = function(action, caller, rec, room) return 42 end }
"""


def seed_past_records(redis, user, n):
    """n finished records of 'user' from 30 days ago, written straight into
    Redis in the layout of the state store (SPEC §4)."""
    started = time.strftime("%Y-%m-%dT10:00:00.000Z", time.gmtime(time.time() - 30 * 86400))
    cmds = []
    for i in range(n):
        rid = str(uuid.uuid4())
        rec = {
            "recording_id": rid, "room_id": "past-%d" % (i % 50), "user_id": user,
            "status": "completed", "format": "webm", "quality": "low",
            "quality_settings": {"resolution": "640x360", "video_bitrate": "1M",
                                 "audio_bitrate": "96k", "fps": 30},
            "storage_backend": "local", "local_path": "/nonexistent/%s" % rid,
            "file_name": "recording_%s.webm" % rid, "s3_key": None,
            "started_at": started, "paused_at": None, "resumed_at": None,
            "stopped_at": started, "completed_at": started, "duration_seconds": 60,
            "file_size_bytes": 1000, "error": None, "metadata": {"note": "x" * 200},
        }
        cmds.append(("SET", "webrtc:recording:state:" + rid, json.dumps(rec), "EX", 604800))
        cmds.append(("SADD", "webrtc:recording:user:" + user, rid))
    redis.pipeline(cmds)


def setup():
    c = Ctx()
    c.redis = Redis()
    c.redis.start()
    c.dir = mktemp("policies")
    shutil.copytree(os.path.join(SRC, "policies"), c.dir, dirs_exist_ok=True)
    c.quota = os.path.join(c.dir, "quota.lua")
    c.auth = os.path.join(c.dir, "auth.lua")
    c.quota_text = open(c.quota).read()
    c.auth_text = open(c.auth).read()
    c.pmin = free_ports(1, step=16)[0]
    c.node = Edgerec(redis=c.redis, name="hostile", config={
        "policy_dir": c.dir,
        "policy.param.user_concurrent": "2",
        "policy.param.user_minutes_per_day": "600",
        "policy.max_call_time": "100ms",
        "max_concurrent_recordings": "50",
        "rtp.port_min": c.pmin,
        "rtp.port_max": c.pmin + 15,
        "room.evil.source": "rtp",
        "room.evil.args": "video_port=5004,audio_port=5006",
        "recorder.first_frame_timeout": "60s",
    })
    c.nodes = [c.node]
    c.node.start()
    c.admin = c.node.token("root", claims={"roles": ["admin"]})
    seed_past_records(c.redis, USER, PAST)
    assert int(c.redis.cli("SCARD", "webrtc:recording:user:" + USER)) == PAST
    return c


def teardown(c):
    if c is None:
        return
    cancel_live(c)
    c.node.stop()
    c.redis.stop()


def policies(c):
    r = c.node.request("GET", "/api/system/policies", token=c.admin)
    assert r.status == 200, r
    return {p["name"]: p for p in r.json["policies"]}


def swap_policy(c, path, text, name):
    """Writes 'text' to the policy file and waits until it is in force."""
    import hashlib
    want = hashlib.sha256(text.encode()).hexdigest()
    write_file(path, text)
    wait_until(lambda: policies(c)[name]["sha256"] == want, timeout=10, interval=0.05,
               what="the new %s.lua in force" % name)


def start_many(c, user, room, n):
    """n starts at once, each on its own connection; their statuses and bodies."""
    token = c.node.token(user)
    u = urllib.parse.urlsplit(c.node.url)
    barrier = threading.Barrier(n)
    out = [None] * n

    def one(i):
        conn = http.client.HTTPSConnection(u.hostname, u.port, context=c.node.ssl_context(), timeout=60)
        try:
            conn.connect()
            barrier.wait()
            conn.request("POST", "/api/webrtc/rooms/%s-%d/recording/start?quality=low" % (room, i),
                         headers={"Authorization": "Bearer " + token})
            r = conn.getresponse()
            out[i] = (r.status, json.loads(r.read() or b"{}"))
        finally:
            conn.close()

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out


def cancel_live(c):
    for user in (USER, "alice", "bob"):
        r = c.node.request("GET", "/api/webrtc/recordings", token=c.node.token(user))
        if r.status != 200:
            continue
        items = r.json if isinstance(r.json, list) else r.json.get("recordings", [])
        for rec in items:
            if rec["status"] in ("pending", "recording", "paused"):
                c.node.op("cancel", rec["room_id"], rec["recording_id"], user=user)


def live_count(c, user):
    return int(c.redis.cli("SCARD", "webrtc:recording:live:user:" + user) or 0)


def check_quota_fallback(c, room, error_part):
    before = c.node.metric("edgerec_policy_fallbacks_total", '{policy="quota"}')
    results = start_many(c, USER, room, 8)
    codes = sorted(s for s, _ in results)
    admitted = [b for s, b in results if s == 200]
    print("%s: 8 concurrent starts -> %s" % (room, codes))
    assert len(admitted) == 2, results
    for s, b in results:
        assert s in (200, 400), (s, b)
        if s == 400:
            assert b["code"] == "limit_reached" and "live recordings" in b["detail"], b
    assert live_count(c, USER) == 2
    for b in admitted:  # the recording says who admitted it
        assert "built-in default" in b["metadata"]["admission"]["decided_by"], b["metadata"]
    p = policies(c)["quota"]
    assert error_part in (p["last_error"] or ""), p
    assert p["last_error_at"] and p["degraded"] is True, p
    h = c.node.request("GET", "/healthz", token=None)
    assert h.status == 200 and h.json["status"] == "degraded", h
    assert any("quota" in r and error_part in r for r in h.json["reasons"]), h.json
    after = c.node.metric("edgerec_policy_fallbacks_total", '{policy="quota"}')
    assert after - before >= 8, (before, after)
    assert c.node.metric("edgerec_policy_degraded", '{policy="quota"}') == 1
    cancel_live(c)
    wait_until(lambda: live_count(c, USER) == 0, timeout=10, what="the live set emptied")


def test_quota_that_runs_out_of_budget_still_enforces_the_user_limit(c):
    head = c.quota_text[:c.quota_text.index("function M.admit")]
    swap_policy(c, c.quota, head + SLOW_ADMIT, "quota")
    check_quota_fallback(c, "slow", "time limit exceeded")


def test_quota_that_raises_still_enforces_the_user_limit(c):
    head = c.quota_text[:c.quota_text.index("function M.admit")]
    swap_policy(c, c.quota, head + RAISING_ADMIT, "quota")
    check_quota_fallback(c, "raise", "quota database unreachable")


def test_quota_fallback_keeps_the_daily_minutes(c):
    # Still the raising quota.lua: the fallback reads the day's usage index.
    today = time.strftime("%Y-%m-%d", time.gmtime())
    c.redis.cli("HSET", "webrtc:recording:usage:bob:" + today, "*", 600 * 60)
    r = c.node.start_recording("minutes", user="bob", quality="low")
    assert r.status == 403 and "600 minutes" in r.json["detail"], r
    # 590 minutes used: granted, with the duration cut to what is left.
    c.redis.cli("HSET", "webrtc:recording:usage:bob:" + today, "*", 590 * 60)
    r = c.node.start_recording("minutes", user="bob", quality="low")
    assert r.status == 200, r
    assert r.json["metadata"]["admission"]["max_duration_seconds"] == 600, r.json["metadata"]
    cancel_live(c)


def admit_cost(c, user, n=6):
    """Median wall time of a start (then cancel) for 'user', and quota's
    fallbacks meanwhile."""
    f0 = c.node.metric("edgerec_policy_fallbacks_total", '{policy="quota"}')
    times = []
    for i in range(n):
        t0 = time.monotonic()
        r = c.node.start_recording("cost-%d" % i, user=user, quality="low")
        times.append(time.monotonic() - t0)
        assert r.status == 200, r
        c.node.op("cancel", "cost-%d" % i, r.json["recording_id"], user=user)
    return statistics.median(times), c.node.metric("edgerec_policy_fallbacks_total", '{policy="quota"}') - f0


def test_per_user_checks_stay_fast_for_users_with_many_records(c):
    head = c.quota_text[:c.quota_text.index("function M.admit")]
    swap_policy(c, c.quota, head + LISTING_ADMIT, "quota")
    old_t, old_fb = admit_cost(c, USER)
    swap_policy(c, c.quota, c.quota_text, "quota")
    new_t, new_fb = admit_cost(c, USER)
    p = policies(c)["quota"]
    print("start for a user with %d past records: listing quota.lua %.0f ms median (%d fallbacks), "
          "indexed quota.lua %.0f ms median (%d fallbacks), x%.1f" %
          (PAST, old_t * 1000, old_fb, new_t * 1000, new_fb, old_t / max(new_t, 1e-6)))
    # The indexed quota.lua answers within its 100 ms budget (one fallback
    # allowed for a thread descheduled past its wall-clock deadline on a
    # loaded machine).
    assert new_fb <= 1, (new_fb, p)
    assert p["last_error"] is None, p
    # Back under the shipped quota.lua: 2 of 8 as well, with no fallback.
    results = start_many(c, USER, "indexed", 8)
    assert sum(1 for s, _ in results if s == 200) == 2, results
    assert all(b.get("code") == "limit_reached" for s, b in results if s != 200), results
    cancel_live(c)


def test_auth_result_of_the_wrong_type_fails_closed_and_shows(c):
    before = c.node.metric("edgerec_policy_fallbacks_total", '{policy="auth"}')
    swap_policy(c, c.auth, NUMBER_AUTH, "auth")
    r = c.node.request("GET", "/api/webrtc/recordings", token="alice")
    assert r.status == 403 and "auth.lua" in r.json["detail"], r
    r = c.node.start_recording("wrongtype", user="alice")
    assert r.status == 403, r
    # Admins keep the built-in rule and see why.
    p = policies(c)["auth"]
    assert "returned a number" in (p["last_error"] or ""), p
    assert p["degraded"] is True and p["in_force"] is True, p
    h = c.node.request("GET", "/healthz", token=None)
    assert h.status == 200 and h.json["status"] == "degraded", h
    assert any("auth" in x and "returned a number" in x for x in h.json["reasons"]), h.json
    assert c.node.metric("edgerec_policy_fallbacks_total", '{policy="auth"}') - before >= 3
    # A good version clears the error at once.
    swap_policy(c, c.auth, c.auth_text, "auth")
    assert policies(c)["auth"]["last_error"] is None
    r = c.node.request("GET", "/api/webrtc/recordings", token="alice")
    assert r.status == 200, r


def test_rtp_ports_stay_in_the_configured_range(c):
    # A room whose arguments fix ports outside the range is refused.
    r = c.node.start_recording("evil", user="alice")
    assert r.status == 409, r
    assert "outside" in r.json["detail"] and "5004" in r.json["detail"], r
    # rtp-<n> outside the range: ports allocated from the range instead.
    r = c.node.start_recording("rtp-5004", user="alice")
    assert r.status == 200, r
    rtp = r.json["metadata"]["rtp"]
    assert c.pmin <= rtp["video_port"] <= c.pmin + 15, rtp
    assert c.pmin <= rtp["audio_port"] <= c.pmin + 15, rtp
    assert rtp["allocated"] is True and rtp["sender_filter"] == "first_sender", rtp
    # Inside the range, the name fixes them.
    fixed = c.pmin + 12  # video 12, audio 14, its RTCP 15: the last pairs
    r2 = c.node.start_recording("rtp-%d" % fixed, user="bob")
    assert r2.status == 200, r2
    assert r2.json["metadata"]["rtp"]["video_port"] == fixed, r2.json["metadata"]
    # The same fixed ports twice: 409, not a second listener.
    r3 = c.node.start_recording("rtp-%d" % fixed, user="alice")
    assert r3.status == 409, r3

    # The sender filter: the first address latches, a second one is dropped.
    before = c.node.metric("edgerec_rtp_foreign_packets_dropped_total")
    first = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    first.bind(("127.0.0.1", 0))
    other = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    other.bind(("127.0.0.2", 0))
    junk = b"\x80\x60" + b"\x00" * 30
    for _ in range(5):
        first.sendto(junk, ("127.0.0.1", rtp["video_port"]))
    time.sleep(0.3)
    for _ in range(20):
        other.sendto(junk, ("127.0.0.1", rtp["video_port"]))
    wait_until(lambda: c.node.metric("edgerec_rtp_foreign_packets_dropped_total") - before >= 20,
               timeout=5, what="packets of the second sender dropped and counted")
    first.close()
    other.close()
    cancel_live(c)


if __name__ == "__main__":
    run_tests(globals(), setup=setup, teardown=teardown)
