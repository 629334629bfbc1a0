"""test_serve_recovery: `edgerec serve` across failures, through the API:
kill -9 mid-recording then restart (the recording is reconciled and its
file plays), a Redis restart mid-recording (the recording goes on and the
state is right afterwards), SIGTERM mid-recording (clean exit, finalized
file), and the embedded redis-server (started, used, stopped on exit)."""

import json
import os
import subprocess
import time
import uuid

from edgerec_harness import Edgerec, Redis, run_tests, wait_until


class Ctx:
    pass


def setup():
    c = Ctx()
    c.redis = Redis().start()
    c.nodes = []
    return c


def node(c, **kw):
    cfg = {"default_quality": "low"}
    cfg.update(kw.pop("config", {}))
    n = Edgerec(config=cfg, **kw)
    c.nodes.append(n)
    return n


def teardown(c):
    for n in c.nodes if c else ():
        if n.alive():
            n.stop()


def probe(path):
    out = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format=duration:stream=codec_name",
                          "-of", "json", path], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, "ffprobe %s: %s" % (path, out.stderr)
    info = json.loads(out.stdout)
    return float(info["format"]["duration"]), [s["codec_name"] for s in info["streams"]]


def decode_all(path):
    out = subprocess.run(["ffmpeg", "-v", "error", "-i", path, "-f", "null", "-"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and not out.stderr.strip(), "ffmpeg decode %s: %s" % (path, out.stderr[-500:])


def test_kill9_then_restart_reconciles(c):
    n = node(c, redis=c.redis, name="crash")
    n.start()
    room = "crash-" + uuid.uuid4().hex[:8]
    r = n.start_recording(room, "alice")
    assert r.status == 200, r
    rid = r.json["recording_id"]
    n.wait_status(room, rid, "recording")
    time.sleep(2.0)
    n.kill()
    assert c.redis.cli("SISMEMBER", "webrtc:recording:active", rid) == "1"
    n.start()
    rec = n.wait_status(room, rid, ("completed", "failed"), timeout=30)
    assert rec["status"] == "completed", rec
    assert rec["metadata"].get("recovered") is True, rec
    assert rec["duration_seconds"] >= 1.0, rec
    assert c.redis.cli("SISMEMBER", "webrtc:recording:active", rid) == "0"
    live = n.request("GET", "/api/webrtc/recordings?status=recording").json
    assert rid not in [x["recording_id"] for x in live["recordings"]], live
    path = os.path.join(rec["local_path"], rec["file_name"])
    dur, codecs = probe(path)
    assert dur >= 1.0 and abs(dur - rec["duration_seconds"]) < 0.5, (dur, rec["duration_seconds"])
    assert "vp8" in codecs, codecs
    decode_all(path)
    n.stop()


def test_redis_restart_mid_recording(c):
    n = node(c, redis=c.redis, name="redis-blip")
    n.start()
    room = "blip-" + uuid.uuid4().hex[:8]
    rid = n.start_recording(room, "alice").json["recording_id"]
    n.wait_status(room, rid, "recording")
    t0 = time.monotonic()
    c.redis.stop()
    time.sleep(2.0)
    # While Redis is away the appliance answers, and says it is degraded
    # (200: its live recordings go on, their state writes wait in the
    # retry buffer).
    h = n.request("GET", "/healthz", token=None, fresh=True)
    assert h.status == 200 and h.json["status"] == "degraded", h
    m = n.request("GET", "/metrics", token=None).body.decode()
    assert "edgerec_redis_up 0" in m, m
    # Requests get a quick answer: the live recording from memory, what
    # needs Redis a 503 (an appliance fault, never a 500 or a hang).
    t1 = time.monotonic()
    r = n.op("status", room, rid)
    assert r.status == 200 and r.json["status"] == "recording", r
    for r in (n.request("GET", "/api/webrtc/recordings"), n.start_recording("other-" + room, "bob")):
        assert r.status == 503 and r.json["code"] == "state_unavailable", r
    assert time.monotonic() - t1 < 3.0
    c.redis.start()
    wait_until(lambda: n.request("GET", "/healthz", token=None, fresh=True).json["status"] == "ok", timeout=20,
               what="healthy after Redis restart")
    r = n.op("status", room, rid)
    assert r.status == 200 and r.json["status"] == "recording", r
    time.sleep(0.5)
    r = n.op("stop", room, rid)
    assert r.status == 200, r
    elapsed = time.monotonic() - t0
    rec = n.wait_status(room, rid, ("completed", "failed"), timeout=30)
    assert rec["status"] == "completed", rec
    # The recording went on through the outage.
    assert rec["duration_seconds"] >= elapsed - 1.0, (rec["duration_seconds"], elapsed)
    stored = json.loads(c.redis.cli("GET", "webrtc:recording:state:" + rid))
    assert stored["status"] == "completed" and stored["duration_seconds"] == rec["duration_seconds"], stored
    assert c.redis.cli("SISMEMBER", "webrtc:recording:active", rid) == "0"
    dur, _ = probe(os.path.join(rec["local_path"], rec["file_name"]))
    assert abs(dur - rec["duration_seconds"]) < 0.5, (dur, rec["duration_seconds"])
    n.stop()


def test_sigterm_mid_recording(c):
    n = node(c, redis=c.redis, name="term")
    n.start()
    room = "term-" + uuid.uuid4().hex[:8]
    rid = n.start_recording(room, "alice").json["recording_id"]
    n.wait_status(room, rid, "recording")
    time.sleep(1.0)
    t0 = time.monotonic()
    assert n.stop() == 0
    assert time.monotonic() - t0 < 15
    rec = json.loads(c.redis.cli("GET", "webrtc:recording:state:" + rid))
    assert rec["status"] in ("processing", "completed"), rec
    n.start()
    rec = n.wait_status(room, rid, "completed", timeout=30)
    dur, _ = probe(os.path.join(rec["local_path"], rec["file_name"]))
    assert dur >= 0.8, dur
    n.stop()


def test_embedded_redis(c):
    n = node(c, redis=None, name="embedded")
    n.start()
    sock = os.path.join(n.state_dir, "redis.sock")
    assert os.path.exists(sock), os.listdir(n.state_dir)
    room = "emb-" + uuid.uuid4().hex[:8]
    rid = n.start_recording(room, "alice").json["recording_id"]
    assert n.op("stop", room, rid).status == 200
    n.wait_status(room, rid, "completed")
    pids = subprocess.run(["pgrep", "-f", "redis-server.*%s" % n.state_dir], capture_output=True, text=True)
    assert pids.stdout.strip(), "no embedded redis-server running"
    assert n.stop() == 0
    wait_until(lambda: not subprocess.run(["pgrep", "-f", "redis-server.*%s" % n.state_dir],
                                          capture_output=True, text=True).stdout.strip(),
               timeout=10, what="embedded redis-server to stop")
    # State survives a restart (persistence on).
    n.start()
    r = n.op("status", room, rid)
    assert r.status == 200 and r.json["status"] == "completed", r
    n.stop()


if __name__ == "__main__":
    run_tests(globals(), setup=setup, teardown=teardown)
