"""test_recorder_crash: the recording manager through a real `edgerec serve`
and redis-server when things go wrong.

- kill -9 of edgerec while one recording runs and another is paused, then a
  restart of the same node: no phantom live recording stays (active set
  empty, statuses final), each is completed with metadata.recovered = true,
  and the repaired file plays for its duration_seconds (ffprobe, 50 ms).
- max_recording_duration auto-stop seen over WebSocket (reason max_duration).
- Redis restarted mid-recording: the recording goes on, pause/resume during
  the outage answer 200, Redis holds the right state once it is back, and
  the finished file is as long as the reply says. (Last: events published
  while the subscriber reconnects are lost, as Redis pub/sub keeps nothing.)
"""

import json
import os
import subprocess
import time

from edgerec_harness import Edgerec, Redis, run_tests, wait_until, ws_next


def ffprobe_duration(path):
    out = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0", path],
                         capture_output=True, text=True, timeout=30)
    return float(out.stdout.strip())


def file_of(rec):
    return os.path.join(rec["local_path"], rec["file_name"])


class Ctx:
    pass


def setup():
    c = Ctx()
    c.redis = Redis().start()
    c.node = Edgerec(redis=c.redis, name="crash",
                     config={"default_quality": "low", "max_recording_duration": "3s"})
    c.node.start()
    c.nodes = [c.node]
    return c


def teardown(c):
    if c and c.node.alive():
        c.node.stop()
    if c:
        c.redis.stop()


def test_kill9_then_restart_recovers(c):
    n = c.node
    a = n.start_recording("crash-room", fmt="webm")
    assert a.status == 200 and a.json["status"] == "recording", a
    b = n.start_recording("crash-room", fmt="mkv")
    assert b.status == 200, b
    time.sleep(0.8)
    assert n.op("pause", "crash-room", b.json["recording_id"]).status == 200
    time.sleep(0.7)
    n.kill()

    ids = [a.json["recording_id"], b.json["recording_id"]]
    assert c.redis.cli("SCARD", "webrtc:recording:active") == "2"
    for rid in ids:
        st = json.loads(c.redis.cli("GET", "webrtc:recording:state:" + rid))
        assert st["status"] in ("recording", "paused"), st

    n.start()
    # Right after start-up nothing is live any more.
    assert c.redis.cli("SCARD", "webrtc:recording:active") == "0"
    for rid in ids:
        rec = n.wait_status("crash-room", rid, ("completed", "failed"), timeout=30)
        assert rec["status"] == "completed", rec
        assert rec["metadata"].get("recovered") is True, rec
        assert rec["processed_at"] and rec["file_size_bytes"] > 0, rec
        probe = ffprobe_duration(file_of(rec))
        assert abs(probe - rec["duration_seconds"]) <= 0.05, (probe, rec["duration_seconds"])
        assert 0.5 < rec["duration_seconds"] < 2.5, rec
    listed = n.request("GET", "/api/webrtc/recordings?status=recording").json
    assert listed["count"] == 0, listed


def test_max_duration_event(c):
    n = c.node
    ws = n.ws("max-room")
    try:
        r = n.start_recording("max-room")
        assert r.status == 200, r
        rid = r.json["recording_id"]
        ws_next(ws, "recording_started")
        ev = ws_next(ws, "recording_stopped", timeout=10)
        assert ev["data"]["recording_id"] == rid and ev["data"]["reason"] == "max_duration", ev
        assert 2.95 <= ev["data"]["duration"] <= 3.5, ev
        done = ws_next(ws, "recording_completed", timeout=20)
        assert done["data"]["recording_id"] == rid and done["data"]["status"] == "completed", done
    finally:
        ws.close()


def test_redis_restart_mid_recording(c):
    n = c.node
    r = n.start_recording("outage-room")
    assert r.status == 200, r
    rid = r.json["recording_id"]
    time.sleep(0.5)
    c.redis.stop()
    t0 = time.monotonic()
    p = n.op("pause", "outage-room", rid)
    assert p.status == 200 and p.json["status"] == "paused", p
    assert time.monotonic() - t0 < 2.0, "a request waited on the Redis outage"
    time.sleep(0.3)
    assert n.op("resume", "outage-room", rid).status == 200
    time.sleep(0.5)
    c.redis.start()

    def stored():
        text = c.redis.cli("GET", "webrtc:recording:state:" + rid)
        st = json.loads(text) if text else None
        return st if st and st["status"] == "recording" and st["resumed_at"] else None
    wait_until(stored, timeout=15, what="the deferred writes in Redis")
    wait_until(lambda: n.healthz_status() == 200, timeout=15, what="healthz back to 200")
    s = n.op("stop", "outage-room", rid)
    assert s.status == 200, s
    rec = n.wait_status("outage-room", rid, ("completed", "failed"))
    assert rec["status"] == "completed", rec
    assert abs(ffprobe_duration(file_of(rec)) - s.json["duration_seconds"]) <= 0.05
    assert json.loads(c.redis.cli("GET", "webrtc:recording:state:" + rid))["status"] == "completed"
    assert c.redis.cli("SISMEMBER", "webrtc:recording:active", rid) == "0"


run_tests(globals(), setup, teardown)
