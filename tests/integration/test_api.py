"""test_api: every REST endpoint of SPEC §2 against a real `edgerec serve`
(HTTPS pinned to its self-signed certificate) and a real redis-server:
the lifecycle, the state object's fields and types, every state x
operation with its documented status, ownership, listings, the concurrent
limit, Redis keys and TTLs read with redis-cli, and the files (ffprobe)."""

import json
import os
import re
import shutil
import subprocess
import time
import uuid

from edgerec_harness import Edgerec, Redis, run_tests, wait_until

LIMIT = 3
BROKEN_ROOM = "broken-source"
SILENT_ROOM = "silent-source"   # an RTP source nobody sends to: stays pending

STATE_FIELDS = {
    "recording_id": str, "room_id": str, "user_id": str, "format": str, "quality": str,
    "quality_settings": dict, "status": str, "storage_backend": str, "local_path": (str, type(None)),
    "s3_key": (str, type(None)), "file_name": str, "started_at": (str, type(None)),
    "paused_at": (str, type(None)), "stopped_at": (str, type(None)), "resumed_at": (str, type(None)),
    "processed_at": (str, type(None)), "duration_seconds": (int, float), "file_size_bytes": int,
    "metadata": dict, "error": (str, type(None)),
}
ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")
PRESETS = {"low": ("854x480", "1M", "96k", 24), "medium": ("1280x720", "2.5M", "128k", 30),
           "high": ("1920x1080", "5M", "192k", 30), "ultra": ("3840x2160", "15M", "256k", 60)}


class Ctx:
    pass


def setup():
    c = Ctx()
    c.redis = Redis().start()
    # The shipped policies, as scripts/run deploys them (a copy, so nothing
    # in the checkout is touched).
    c.policy_dir = os.path.join(c.redis.dir, "policies")
    shutil.copytree(os.path.join(os.environ.get("EDGEREC_SOURCE_DIR", os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "..", "..")), "policies"), c.policy_dir)
    # A room whose source breaks a third of a second in (a Y4M file cut in
    # the middle of a frame): its recordings end "failed".
    c.broken_y4m = os.path.join(c.redis.dir, "truncated.y4m")
    with open(c.broken_y4m, "wb") as f:
        f.write(b"YUV4MPEG2 W64 H48 F30:1 Ip C420jpeg\n")
        for i in range(10):
            f.write(b"FRAME\n" + bytes([i * 20]) * (64 * 48 * 3 // 2))
        f.write(b"FRAME\n" + b"\x10" * 100)
    c.node = Edgerec(redis=c.redis, config={"max_concurrent_recordings": LIMIT,
                                            "default_quality": "low", "policy_dir": c.policy_dir,
                                            "room.%s.source" % BROKEN_ROOM: "file",
                                            "room.%s.args" % BROKEN_ROOM: "video=" + c.broken_y4m,
                                            "room.%s.source" % SILENT_ROOM: "rtp",
                                            # its video port comes from rtp.port_min..port_max
                                            "room.%s.args" % SILENT_ROOM: "audio=0,bind=127.0.0.1"},
                     name="api")
    c.node.start()
    c.nodes = [c.node]
    return c


def teardown(c):
    if c and c.node.alive():
        rc = c.node.stop()
        assert rc == 0, "edgerec serve exited with %s on SIGTERM" % rc


def check_state_object(obj, **expect):
    assert set(obj) == set(STATE_FIELDS), "fields differ: %s" % sorted(set(obj) ^ set(STATE_FIELDS))
    for k, t in STATE_FIELDS.items():
        assert isinstance(obj[k], t) and not (t is int and isinstance(obj[k], bool)), \
            "%s is %r" % (k, obj[k])
    uuid.UUID(obj["recording_id"], version=4)
    assert str(uuid.UUID(obj["recording_id"])) == obj["recording_id"]
    qs = obj["quality_settings"]
    assert set(qs) == {"resolution", "video_bitrate", "audio_bitrate", "fps"}, qs
    assert (qs["resolution"], qs["video_bitrate"], qs["audio_bitrate"], qs["fps"]) == PRESETS[obj["quality"]], qs
    for k in ("started_at", "paused_at", "stopped_at", "resumed_at", "processed_at"):
        assert obj[k] is None or ISO.match(obj[k]), "%s = %r" % (k, obj[k])
    ext = "mp4" if obj["format"] == "mp4" else obj["format"]
    assert obj["file_name"] == "recording_%s.%s" % (obj["recording_id"], ext), obj["file_name"]
    assert obj["storage_backend"] in ("local", "s3")
    for k, v in expect.items():
        assert obj[k] == v, "%s = %r, expected %r" % (k, obj[k], v)


def start(c, room, user="alice", fmt=None, quality=None):
    r = c.node.start_recording(room, user, fmt, quality)
    assert r.status == 200, r
    return r.json


def ffprobe_duration(path):
    out = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format=duration",
                          "-of", "json", path], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    return float(json.loads(out.stdout)["format"]["duration"])


def test_healthz_metrics_openapi(c):
    r = c.node.request("GET", "/healthz", token=None)
    assert r.status == 200 and r.json["status"] == "ok", r
    assert all(v["ok"] for v in r.json["checks"].values()), r.json
    assert "recorder" in r.json["checks"] and "disk_recordings" in r.json["checks"]
    r = c.node.request("GET", "/metrics", token=None)
    assert r.status == 200 and r.headers["content-type"].startswith("text/plain"), r
    text = r.body.decode()
    for name in ("edgerec_recordings{status=\"recording\"}", "edgerec_recordings_active",
                 "edgerec_recordings_started_total", "edgerec_bytes_written_total",
                 "edgerec_video_frames_encoded_total", "edgerec_video_frames_dropped_total",
                 "edgerec_redis_up 1", "edgerec_state_deferred_writes_total", "edgerec_policy_calls_total",
                 "edgerec_http_requests_total{route=\"healthz\",code=\"200\"}",
                 "edgerec_http_request_duration_seconds_bucket{route=\"healthz\",le=\"+Inf\"}"):
        assert name in text, name
    r = c.node.request("GET", "/api/openapi.json", token=None)
    assert r.status == 200 and r.json["openapi"].startswith("3."), r
    want = {("post", "/api/webrtc/rooms/{room_id}/recording/start"),
            ("post", "/api/webrtc/rooms/{room_id}/recording/{recording_id}/stop"),
            ("post", "/api/webrtc/rooms/{room_id}/recording/{recording_id}/pause"),
            ("post", "/api/webrtc/rooms/{room_id}/recording/{recording_id}/resume"),
            ("delete", "/api/webrtc/rooms/{room_id}/recording/{recording_id}"),
            ("get", "/api/webrtc/rooms/{room_id}/recording/{recording_id}/status"),
            ("get", "/api/webrtc/rooms/{room_id}/recordings"),
            ("get", "/api/webrtc/recordings"), ("get", "/api/webrtc/ws"),
            ("get", "/healthz"), ("get", "/metrics")}
    have = {(m, p) for p, ops in r.json["paths"].items() for m in ops}
    assert want <= have, want - have
    assert set(r.json["components"]["schemas"]["Recording"]["required"]) == set(STATE_FIELDS)
    r = c.node.request("GET", "/", token=None)
    assert r.status == 200 and b"edgerec" in r.body and r.headers["content-type"].startswith("text/html")


def test_lifecycle_and_files(c):
    room = "life-" + uuid.uuid4().hex[:8]
    t0 = time.time()
    rec = start(c, room, fmt="webm", quality="low")
    check_state_object(rec, room_id=room, user_id="alice", format="webm", quality="low")
    assert rec["status"] in ("pending", "recording"), rec
    rid = rec["recording_id"]
    rec = c.node.wait_status(room, rid, "recording")
    assert rec["paused_at"] is None and rec["stopped_at"] is None
    time.sleep(1.0)
    r = c.node.op("pause", room, rid)
    assert r.status == 200 and r.json["status"] == "paused" and r.json["paused_at"], r
    check_state_object(r.json)
    time.sleep(1.0)
    r = c.node.op("resume", room, rid)
    assert r.status == 200 and r.json["status"] == "recording" and r.json["resumed_at"], r
    time.sleep(1.0)
    r = c.node.op("stop", room, rid)
    assert r.status == 200, r
    check_state_object(r.json)
    assert r.json["status"] in ("processing", "completed"), r
    assert r.json["stopped_at"]
    # About 2 s of active time; the 1 s pause is excluded.
    assert 1.5 <= r.json["duration_seconds"] <= 2.9, r.json["duration_seconds"]
    done = c.node.wait_status(room, rid, ("completed", "failed"))
    assert done["status"] == "completed", done
    check_state_object(done)
    assert done["processed_at"] and done["file_size_bytes"] > 0
    path = os.path.join(done["local_path"], done["file_name"])
    assert os.path.getsize(path) == done["file_size_bytes"], (path, done["file_size_bytes"])
    dur = ffprobe_duration(path)
    assert abs(dur - done["duration_seconds"]) < 0.25, (dur, done["duration_seconds"])
    assert time.time() - t0 < 30


def test_start_defaults_and_formats(c):
    room = "fmt-" + uuid.uuid4().hex[:8]
    rec = start(c, room)
    check_state_object(rec, format="webm", quality="low")
    c.node.op("cancel", room, rec["recording_id"])
    for fmt in ("mkv", "mp4"):
        rec = start(c, room, fmt=fmt, quality="low")
        check_state_object(rec, format=fmt)
        r = c.node.op("cancel", room, rec["recording_id"])
        assert r.status == 200 and r.json["status"] == "cancelled", r
        assert not os.path.exists(rec["local_path"]), "cancel left %s" % rec["local_path"]


# The documented status of each operation in each status (SPEC §3):
# transitions that exist answer 200, the others 400; status always 200.
# DELETE ("cancel") on a completed or failed recording deletes it (SPEC §9):
# 200 with its last state, then 404.
TABLE = {
    "pending": {"stop": 400, "pause": 400, "resume": 400, "cancel": 200, "status": 200},
    "recording": {"stop": 200, "pause": 200, "resume": 400, "cancel": 200, "status": 200},
    "paused": {"stop": 200, "pause": 400, "resume": 200, "cancel": 200, "status": 200},
    "completed": {"stop": 400, "pause": 400, "resume": 400, "cancel": 200, "status": 200},
    "cancelled": {"stop": 400, "pause": 400, "resume": 400, "cancel": 400, "status": 200},
    "failed": {"stop": 400, "pause": 400, "resume": 400, "cancel": 200, "status": 200},
}
AFTER = {"stop": ("processing", "completed"), "pause": ("paused",), "resume": ("recording",),
         "cancel": ("cancelled",)}
DELETED = ("completed", "failed")


def make_in_status(c, room, status):
    if status == "pending":
        r = start(c, SILENT_ROOM)
        assert r["status"] == "pending", r
        return SILENT_ROOM, r["recording_id"]
    if status == "failed":
        rid = start(c, BROKEN_ROOM)["recording_id"]
        rec = c.node.wait_status(BROKEN_ROOM, rid, "failed")
        assert "truncated" in rec["error"], rec
        return BROKEN_ROOM, rid
    rid = start(c, room)["recording_id"]
    c.node.wait_status(room, rid, "recording")
    if status == "paused":
        assert c.node.op("pause", room, rid).status == 200
    elif status == "completed":
        assert c.node.op("stop", room, rid).status == 200
        c.node.wait_status(room, rid, "completed")
    elif status == "cancelled":
        assert c.node.op("cancel", room, rid).status == 200
    return room, rid


def test_state_operation_table(c):
    for status, ops in TABLE.items():
        for op, want in ops.items():
            room, rid = make_in_status(c, "table-" + uuid.uuid4().hex[:8], status)
            r = c.node.op(op, room, rid)
            assert r.status == want, "%s on %s: %r (expected %d)" % (op, status, r, want)
            if want == 200:
                check_state_object(r.json, recording_id=rid)
                if op == "cancel" and status in DELETED:
                    assert r.json["status"] == status and r.json["metadata"]["deleted"]["at"], r.json
                    assert c.node.op("status", room, rid).status == 404
                    continue
                if op != "status":
                    assert r.json["status"] in AFTER[op], (op, status, r.json["status"])
            else:
                assert r.json["code"] == "invalid_transition" and r.json["detail"], r.json
            # Leave nothing live behind (the limit is small).
            now = c.node.op("status", room, rid).json["status"]
            if now in ("recording", "paused", "pending"):
                assert c.node.op("cancel", room, rid).status == 200


def test_ownership_and_rooms(c):
    room = "own-" + uuid.uuid4().hex[:8]
    rid = start(c, room, user="alice")["recording_id"]
    try:
        for op in ("stop", "pause", "resume", "cancel"):
            r = c.node.op(op, room, rid, user="mallory")
            assert r.status == 403 and r.json["code"] == "forbidden", (op, r)
        # The shipped auth policy lets only the owner (or an admin) read it.
        r = c.node.op("status", room, rid, user="mallory")
        assert r.status == 403 and r.json["code"] == "forbidden", r
        admin = c.node.token("root", claims={"roles": ["admin"]})
        assert c.node.op("status", room, rid, user=admin).status == 200
        r = c.node.op("status", "another-room", rid)
        assert r.status == 404 and r.json["code"] == "not_found", r
        r = c.node.op("stop", "another-room", rid)
        assert r.status == 404, r
        r = c.node.op("status", room, str(uuid.uuid4()))
        assert r.status == 404 and r.json["code"] == "not_found", r
        assert c.node.op("status", room, rid).json["status"] == "recording"
    finally:
        assert c.node.op("cancel", room, rid).status == 200


def test_lists(c):
    room = "list-" + uuid.uuid4().hex[:8]
    a = start(c, room, user="lister-a")["recording_id"]
    b = start(c, room, user="lister-b")["recording_id"]
    assert c.node.op("stop", room, a, user="lister-a").status == 200
    c.node.wait_status(room, a, "completed", user="lister-a")
    r = c.node.request("GET", "/api/webrtc/rooms/%s/recordings" % room)
    assert r.status == 200 and r.json["count"] == 2 == len(r.json["recordings"]), r
    assert {x["recording_id"] for x in r.json["recordings"]} == {a, b}
    for x in r.json["recordings"]:
        check_state_object(x, room_id=room)
    r = c.node.request("GET", "/api/webrtc/recordings", token="lister-a")
    assert r.status == 200 and [x["recording_id"] for x in r.json["recordings"]] == [a], r
    r = c.node.request("GET", "/api/webrtc/recordings?status=recording", token="lister-b")
    assert r.status == 200 and [x["recording_id"] for x in r.json["recordings"]] == [b], r
    r = c.node.request("GET", "/api/webrtc/recordings?status=completed", token="lister-b")
    assert r.status == 200 and r.json == {"recordings": [], "count": 0}, r
    r = c.node.request("GET", "/api/webrtc/rooms/empty-%s/recordings" % room)
    assert r.status == 200 and r.json["count"] == 0 and r.json["recordings"] == [], r
    assert c.node.op("cancel", room, b, user="lister-b").status == 200


def test_concurrent_limit(c):
    room = "limit-" + uuid.uuid4().hex[:8]
    ids = [start(c, room, user="u%d" % i)["recording_id"] for i in range(LIMIT)]
    r = c.node.start_recording(room, "u-extra")
    assert r.status == 400 and r.json["code"] == "limit_reached", r
    assert c.node.op("stop", room, ids[0], user="u0").status == 200
    more = start(c, room, user="u-extra")["recording_id"]
    for i, rid in enumerate(ids[1:], 1):
        assert c.node.op("cancel", room, rid, user="u%d" % i).status == 200
    assert c.node.op("cancel", room, more, user="u-extra").status == 200
    m = c.node.request("GET", "/metrics", token=None).body.decode()
    refused = re.search(r"^edgerec_recordings_refused_total (\d+)$", m, re.M)
    assert refused and int(refused.group(1)) >= 1, m[:2000]


def test_redis_keys_and_ttls(c):
    room = "keys-" + uuid.uuid4().hex[:8]
    rec = start(c, room, user="keyuser")
    rid = rec["recording_id"]
    c.node.wait_status(room, rid, "recording", user="keyuser")
    R = c.redis
    key = "webrtc:recording:state:" + rid
    assert R.cli("TYPE", key) == "string"
    ttl = int(R.cli("TTL", key))
    assert 7 * 86400 - 60 <= ttl <= 7 * 86400, ttl
    stored = json.loads(R.raw("GET", key))
    check_state_object(stored, recording_id=rid, room_id=room, user_id="keyuser")
    for setkey in ("webrtc:recording:room:" + room, "webrtc:recording:user:keyuser"):
        assert R.cli("TYPE", setkey) == "set", setkey
        assert R.raw("SISMEMBER", setkey, rid) == "1", setkey
        t = int(R.cli("TTL", setkey))
        assert 86400 - 60 <= t <= 86400, (setkey, t)
    assert R.raw("SISMEMBER", "webrtc:recording:active", rid) == "1"
    assert int(R.cli("TTL", "webrtc:recording:active")) == -1
    assert c.node.op("stop", room, rid, user="keyuser").status == 200
    done = c.node.wait_status(room, rid, "completed", user="keyuser")
    assert R.raw("SISMEMBER", "webrtc:recording:active", rid) == "0"
    stored = json.loads(R.raw("GET", key))
    assert stored == done, (stored, done)


def test_download_and_thumbnail(c):
    room = "dl-" + uuid.uuid4().hex[:8]
    rid = start(c, room, fmt="webm", quality="low")["recording_id"]
    base = "/api/webrtc/rooms/%s/recording/%s" % (room, rid)
    r = c.node.request("GET", base + "/download")
    assert r.status == 409 and r.json["code"] == "not_ready", r
    time.sleep(2.5)
    assert c.node.op("stop", room, rid).status == 200
    rec = c.node.wait_status(room, rid, "completed")
    with open(os.path.join(rec["local_path"], rec["file_name"]), "rb") as f:
        data = f.read()
    size = len(data)
    assert size == rec["file_size_bytes"] and size > 1000

    r = c.node.request("GET", base + "/download")
    assert r.status == 200 and r.body == data, (r.status, len(r.body), size)
    assert r.headers["content-type"] == "video/webm"
    assert r.headers["accept-ranges"] == "bytes"
    assert r.headers["content-disposition"] == 'attachment; filename="%s"' % rec["file_name"]
    etag = r.headers["etag"]
    assert etag.startswith('"') and not etag.startswith("W/"), etag

    r = c.node.request("GET", base + "/download", headers={"Range": "bytes=0-99"})
    assert r.status == 206 and r.body == data[:100], r
    assert r.headers["content-range"] == "bytes 0-99/%d" % size
    r = c.node.request("GET", base + "/download", headers={"Range": "bytes=-50"})
    assert r.status == 206 and r.body == data[-50:], r
    r = c.node.request("GET", base + "/download", headers={"Range": "bytes=%d-" % (size - 10)})
    assert r.status == 206 and r.body == data[-10:], r
    r = c.node.request("GET", base + "/download", headers={"Range": "bytes=%d-" % size})
    assert r.status == 416 and r.headers["content-range"] == "bytes */%d" % size, r
    r = c.node.request("GET", base + "/download", headers={"Range": "bytes=0-1,5-6"})
    assert r.status == 200 and r.body == data, r
    r = c.node.request("GET", base + "/download", headers={"Range": "bytes=0-9", "If-Range": '"stale"'})
    assert r.status == 200 and len(r.body) == size, r
    r = c.node.request("GET", base + "/download", headers={"If-None-Match": etag})
    assert r.status == 304 and r.body == b"" and r.headers["etag"] == etag, r
    assert "content-length" not in r.headers, r.headers
    r = c.node.request("HEAD", base + "/download")
    assert r.status == 200 and r.body == b"" and int(r.headers["content-length"]) == size, r
    # The bytes a client gets play (ffprobe reads the downloaded copy).
    path = os.path.join(c.redis.dir, "downloaded.webm")
    with open(path, "wb") as f:
        f.write(c.node.request("GET", base + "/download").body)
    assert abs(ffprobe_duration(path) - rec["duration_seconds"]) < 0.25

    r = c.node.request("GET", base + "/thumbnail")
    assert r.status == 200 and r.headers["content-type"] == "image/jpeg", r
    assert r.body[:3] == b"\xff\xd8\xff" and r.body[-2:] == b"\xff\xd9", r.body[:8]
    # A picture, not the test source's white flash: the frame at 1 s and the
    # keyframe at 2 s are both flashes (the marker falls on whole seconds),
    # and a flat frame is passed over for the next one that is not.
    jpg = os.path.join(c.redis.dir, "thumbnail.jpg")
    with open(jpg, "wb") as f:
        f.write(r.body)
    stats = subprocess.run(["ffprobe", "-v", "error", "-f", "lavfi", "-i", "movie=%s,signalstats" % jpg,
                            "-show_entries", "frame_tags=lavfi.signalstats.YMIN,lavfi.signalstats.YMAX",
                            "-of", "default=nw=1:nk=1"], capture_output=True, text=True, timeout=30).stdout.split()
    assert len(stats) == 2 and int(stats[1]) - int(stats[0]) > 100, stats
    # Who may not read the recording may not download it either.
    r = c.node.request("GET", base + "/download", token="mallory")
    assert r.status == 403, r
    r = c.node.request("GET", "/api/webrtc/rooms/other/recording/%s/download" % rid)
    assert r.status == 404, r


def test_policy_status(c):
    r = c.node.request("GET", "/api/system/policies", token=None)
    assert r.status == 401, r
    r = c.node.request("GET", "/api/system/policies")
    assert r.status == 403 and r.json["code"] == "forbidden", r
    admin = c.node.token("root", claims={"roles": ["viewer", "admin"]})
    r = c.node.request("GET", "/api/system/policies", token=admin)
    assert r.status == 200 and r.json["dir"] == c.policy_dir, r
    assert isinstance(r.json["policies"], list) and r.json["count"] == len(r.json["policies"]), r
    h = c.node.request("GET", "/healthz", token=None).json
    assert h["checks"]["policies"]["ok"] is True, h


def test_request_ids_and_keepalive(c):
    r1 = c.node.request("GET", "/healthz", token=None)
    r2 = c.node.request("GET", "/healthz", token=None, headers={"X-Request-Id": "trace-abc_1"})
    assert r1.headers["x-request-id"] and r1.headers["x-request-id"] != r2.headers["x-request-id"]
    assert r2.headers["x-request-id"] == "trace-abc_1"
    r3 = c.node.request("GET", "/healthz", token=None, headers={"X-Request-Id": "a/b{c}"})
    assert r3.status == 200 and r3.headers["x-request-id"] != "a/b{c}", r3
    assert c.node.http_url, "plain HTTP listener missing"
    import urllib.request
    with urllib.request.urlopen(c.node.http_url + "/healthz", timeout=10) as f:
        assert f.status == 200 and json.load(f)["status"] == "ok"


if __name__ == "__main__":
    run_tests(globals(), setup=setup, teardown=teardown)
