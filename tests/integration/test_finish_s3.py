"""test_finish_s3: finishing recordings through `edgerec serve` against a
real s3rver (tests/support/s3/start) reached through a throttling TCP proxy,
so a multipart upload is slow enough to be caught in the middle.

Cancel during processing: while processing, the state's metadata.processing names the running
step and a percentage; DELETE during the upload (after part 1 was
acknowledged, part 2 in flight) answers 200 with status cancelled; the
room's subscribers get recording_cancelled; no object and no upload (no
parts) remain in the bucket, the local files are gone, and the journal in
Redis is cleared. A cancelled recording refuses DELETE with 400; DELETE on a
completed one deletes it (without lifecycle.lua, the S3 object stays).

Restart during processing: part 1 acknowledged, s3rver stopped (the upload
retries), edgerec killed with SIGKILL; s3rver and edgerec started again ->
the job resumes after its last journaled step, sends only what S3 lacks
(fewer bytes than the file) and completes; the object is byte-identical to
the recording (its sha256 is the metadata checksum) and no upload is left."""

import hashlib

import os
import socket
import threading
import time
import uuid

from edgerec_harness import (Edgerec, Redis, free_port, mktemp, run_tests, s3_config, start_s3rver,
                             stop_process, wait_until, ws_next)

BUCKET = "edgerec-cancel"
ROOM = "bigroom"


class Throttle:
    """A TCP proxy to 'port' whose client-to-server direction is limited to
    'rate' bytes a second (None: unlimited); the rate may change at any
    time."""

    def __init__(self, port, rate=None):
        self.port = port
        self.rate = rate
        self.sent = 0  # bytes forwarded client -> server
        self.listen = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listen.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listen.bind(("127.0.0.1", 0))
        self.listen.listen(16)
        self.local_port = self.listen.getsockname()[1]
        self.stopped = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.stopped:
            try:
                c, _ = self.listen.accept()
            except OSError:
                return
            try:
                u = socket.create_connection(("127.0.0.1", self.port))
            except OSError:
                c.close()
                continue
            threading.Thread(target=self._pump, args=(c, u, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(u, c, False), daemon=True).start()

    def _pump(self, src, dst, limited):
        try:
            while True:
                rate = self.rate if limited else None
                data = src.recv(4096 if rate else 65536)
                if not data:
                    break
                dst.sendall(data)
                if limited:
                    self.sent += len(data)
                if rate:
                    time.sleep(len(data) / float(rate))
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def close(self):
        self.stopped = True
        self.listen.close()


class Ctx:
    pass


def uploads_dir(c):
    return os.path.join(c.s3_dir, BUCKET, "._S3rver_uploads")


def uploads(c):
    d = uploads_dir(c)
    return sorted(os.listdir(d)) if os.path.isdir(d) else []


def objects(c):
    """Every object file s3rver holds in the bucket."""
    found = []
    for root, dirs, files in os.walk(os.path.join(c.s3_dir, BUCKET)):
        dirs[:] = [d for d in dirs if d != "._S3rver_uploads"]
        found += [os.path.join(root, f) for f in files if f.endswith("._S3rver_object")]
    return found


def start_s3(c):
    c.s3 = start_s3rver(c.s3_port, c.s3_dir, BUCKET)


def setup():
    c = Ctx()
    c.redis = Redis().start()
    c.s3_dir = mktemp("s3rver")
    c.s3_port = free_port()
    start_s3(c)
    c.proxy = Throttle(c.s3_port, rate=2_000_000)
    c.node = Edgerec(redis=c.redis, name="cancel", config=s3_config(c.proxy.local_port, BUCKET, {
        "s3.part_size": "5M", "recorder.keep_local": "false",
        # A sender at 40 Mbit/s: a few seconds make a multipart-sized file.
        "room.%s.source" % ROOM: "test",
        "room.%s.args" % ROOM: "encoded=1,bitrate=40000000,gop=2",
    })).start()
    c.nodes = [c.node]
    return c


def teardown(c):
    if c is None:
        return
    if c.node.alive():
        assert c.node.stop() == 0
    c.proxy.close()
    stop_process(c.s3)


def record_multipart_sized(c, size=7 * 1024 * 1024):
    """Starts a recording and lets it run until its file holds 'size' bytes
    (two parts of 5 MB): about 2 s of the 40 Mbit/s sender on a quiet box,
    longer when the box is busy and the sender makes fewer frames."""
    r = c.node.start_recording(ROOM, "alice", "webm", "high")
    assert r.status == 200, r
    rid = r.json["recording_id"]

    def big_enough():
        st = c.node.op("status", ROOM, rid).json
        return st if (st.get("file_size_bytes") or 0) >= size else None
    wait_until(big_enough, timeout=90, interval=0.25, what="a file of %d bytes" % size)
    return rid


def test_cancel_during_multipart_upload(c):
    ws = c.node.ws(ROOM)
    c.proxy.rate = 2_000_000
    rid = record_multipart_sized(c)
    r = c.node.op("stop", ROOM, rid)
    assert r.status == 200, r
    local_dir = os.path.join(c.node.storage, rid)

    # Processing shows its step and percentage while the upload runs.
    seen = []

    def in_upload():
        st = c.node.op("status", ROOM, rid).json
        p = (st.get("metadata") or {}).get("processing")
        if p:
            seen.append(p)
        return st if st["status"] == "processing" and p and p.get("step") == "upload" else None
    st = wait_until(in_upload, timeout=60, interval=0.05, what="processing in its upload step")
    assert st["file_size_bytes"] > 5 * 1024 * 1024, st
    assert all(isinstance(p.get("percent"), (int, float)) and 0 <= p["percent"] <= 100 for p in seen), seen

    # Part 1 acknowledged, then the link slows down so part 2 is in flight.
    def part1_done():
        for u in uploads(c):
            if os.path.exists(os.path.join(uploads_dir(c), u, "1.md5")):
                return u
        return None
    upload_id = wait_until(part1_done, timeout=60, what="part 1 stored by s3rver")
    c.proxy.rate = 20_000
    assert c.redis.cli("EXISTS", "webrtc:recording:job:" + rid).strip() == "1"

    t0 = time.monotonic()
    r = c.node.request("DELETE", "/api/webrtc/rooms/%s/recording/%s" % (ROOM, rid))
    took = time.monotonic() - t0
    assert r.status == 200, r
    assert r.json["status"] == "cancelled", r.json
    assert "processing" not in (r.json.get("metadata") or {}), r.json
    assert took < 10, took
    ev = ws_next(ws, "recording_cancelled", timeout=10)
    assert ev["data"]["recording_id"] == rid, ev
    ws.close()

    assert upload_id not in uploads(c), uploads(c)
    assert uploads(c) == [], "parts left in the bucket: %s" % uploads(c)
    assert objects(c) == [], objects(c)
    assert not os.path.exists(local_dir), os.listdir(local_dir)
    assert c.redis.cli("EXISTS", "webrtc:recording:job:" + rid).strip() == "0"
    st = c.node.op("status", ROOM, rid).json
    assert st["status"] == "cancelled", st
    # Final: nothing more to cancel.
    r = c.node.request("DELETE", "/api/webrtc/rooms/%s/recording/%s" % (ROOM, rid))
    assert r.status == 400 and r.json["code"] == "invalid_transition", r
    # The worker is free again: a next recording completes and uploads.
    c.proxy.rate = None
    r = c.node.start_recording("small", "alice", "webm", "low")
    assert r.status == 200, r
    rid2 = r.json["recording_id"]
    time.sleep(1.0)
    assert c.node.op("stop", "small", rid2).status == 200
    rec = c.node.wait_status("small", rid2, ("completed", "failed"), timeout=60)
    assert rec["status"] == "completed" and rec["s3_key"], rec
    assert "processing" not in (rec.get("metadata") or {}), rec
    r = c.node.request("DELETE", "/api/webrtc/rooms/small/recording/%s" % rid2)
    assert r.status == 200 and r.json["metadata"]["deleted"]["s3_object"] == "kept", r
    assert c.node.op("status", "small", rid2).status == 404
    assert len(objects(c)) == 1, objects(c)


def test_restart_during_multipart_upload(c):
    c.proxy.rate = 2_000_000
    rid = record_multipart_sized(c)
    assert c.node.op("stop", ROOM, rid).status == 200

    def part1_done():
        for u in uploads(c):
            if os.path.exists(os.path.join(uploads_dir(c), u, "1.md5")):
                return u
        return None
    upload_id = wait_until(part1_done, timeout=60, what="part 1 stored by s3rver")
    c.proxy.rate = 20_000
    time.sleep(0.5)
    # S3 goes away mid-part: the upload retries, the recording stays processing.
    stop_process(c.s3)
    time.sleep(1.0)
    st = c.node.op("status", ROOM, rid).json
    assert st["status"] == "processing", st
    assert st["metadata"]["processing"]["step"] == "upload", st
    size = st["file_size_bytes"]
    assert size > 5 * 1024 * 1024, st
    c.node.kill()

    start_s3(c)
    assert upload_id in uploads(c), "s3rver lost the upload across its restart"
    c.proxy.rate = None
    c.proxy.sent = 0
    c.node.start()
    rec = c.node.wait_status(ROOM, rid, ("completed", "failed"), timeout=90)
    assert rec["status"] == "completed", rec
    assert "resuming after step" in c.node.log_text(since_start=True), c.node.log_tail(40)
    # Only what S3 lacked went again: part 2 (and the small requests).
    assert c.proxy.sent < size - 4 * 1024 * 1024, (c.proxy.sent, size)
    assert uploads(c) == [], uploads(c)
    mine = [o for o in objects(c) if rid in o]
    assert len(mine) == 1, objects(c)
    data = open(mine[0], "rb").read()
    assert len(data) == rec["file_size_bytes"] == size, (len(data), rec["file_size_bytes"], size)
    assert hashlib.sha256(data).hexdigest() == rec["metadata"]["checksum"], "the object differs from the recording"
    assert rec["s3_key"] and rid in rec["s3_key"], rec
    assert "processing" not in rec["metadata"], rec


if __name__ == "__main__":
    run_tests(globals(), setup=setup, teardown=teardown)
