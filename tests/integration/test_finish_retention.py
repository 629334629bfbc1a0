"""test_finish_retention: retention.max_bytes and retention.max_age delete
the local files of finished recordings, oldest first, and only those that
are completed and in S3.

Two nodes share one recordings directory and one Redis: a local-backend node
records E (completed, no s3_key: its file is the only copy); an S3 node
with recorder.keep_local = true records A, B, C (completed, uploaded, local
copy kept). The S3 node restarts with retention.max_bytes just above
size(C) + size(E): A and B (the oldest) lose their local file, C and E stay,
A's record says local_copy false and its download becomes a 302 to S3. It
restarts again with retention.max_age = 1s: C goes, E (not safely
elsewhere) still stays, however old."""

import os
import time
import uuid

from edgerec_harness import (Edgerec, Redis, free_port, mktemp, run_tests, s3_config, start_s3rver,
                             stop_process, wait_until)

BUCKET = "edgerec-retention"


class Ctx:
    pass


def setup():
    c = Ctx()
    c.redis = Redis().start()
    c.s3_dir = mktemp("s3rver")
    c.s3_port = free_port()
    c.s3 = start_s3rver(c.s3_port, c.s3_dir, BUCKET)
    c.storage = mktemp("retention-recordings")
    c.local = Edgerec(redis=c.redis, name="localnode", storage=c.storage,
                      config={"default_quality": "low", "storage_backend": "local"})
    c.node = Edgerec(redis=c.redis, name="s3node", storage=c.storage, config=s3_config(c.s3_port, BUCKET, {
        "default_quality": "low", "recorder.keep_local": "true", "retention.interval": "200ms"}))
    c.nodes = [c.local, c.node]
    return c


def teardown(c):
    if c is None:
        return
    for n in (c.local, c.node):
        if n.alive():
            n.stop()
    stop_process(c.s3)


def record(node, room, seconds=1.2):
    r = node.start_recording(room, "alice", "webm", "low")
    assert r.status == 200, r
    rid = r.json["recording_id"]
    time.sleep(seconds)
    assert node.op("stop", room, rid).status == 200
    rec = node.wait_status(room, rid, ("completed", "failed"), timeout=60)
    assert rec["status"] == "completed", rec
    return rec


def local_file(c, rec):
    return os.path.join(c.storage, rec["recording_id"], rec["file_name"])


def test_retention_deletes_only_what_is_safe(c):
    c.local.start()
    e = record(c.local, "ret-e")
    assert not e.get("s3_key"), e
    c.local.stop()

    c.node.start()
    a = record(c.node, "ret-a")
    b = record(c.node, "ret-b")
    cc = record(c.node, "ret-c")
    for rec in (a, b, cc):
        assert rec["s3_key"] and rec["metadata"]["local_copy"] is True, rec
    for rec in (a, b, cc, e):
        assert os.path.exists(local_file(c, rec)), rec
    size = {rec["recording_id"]: os.path.getsize(local_file(c, rec)) for rec in (a, b, cc, e)}
    c.node.stop()

    # Above max_bytes: the oldest safe files go until the total fits.
    c.node.extra["retention.max_bytes"] = str(size[cc["recording_id"]] + size[e["recording_id"]] + 1000)
    c.node.start()
    wait_until(lambda: not os.path.exists(local_file(c, a)) and not os.path.exists(local_file(c, b)),
               timeout=15, what="A and B removed by retention")
    time.sleep(1.0)  # a few more passes: nothing else may go
    assert os.path.exists(local_file(c, cc)), "C was removed though the total fits"
    assert os.path.exists(local_file(c, e)), "E, the only copy, was removed"
    st = c.node.op("status", "ret-a", a["recording_id"]).json
    assert st["status"] == "completed" and st["metadata"]["local_copy"] is False, st
    assert st["metadata"].get("local_removed_at"), st
    r = c.node.request("GET", "/api/webrtc/rooms/ret-a/recording/%s/download" % a["recording_id"])
    assert r.status == 302 and "X-Amz-Signature=" in r.headers["location"], r
    r = c.node.request("GET", "/api/webrtc/rooms/ret-c/recording/%s/download" % cc["recording_id"])
    assert r.status == 200 and len(r.body) == size[cc["recording_id"]], r
    # The thumbnail is kept.
    r = c.node.request("GET", "/api/webrtc/rooms/ret-a/recording/%s/thumbnail" % a["recording_id"])
    assert r.status == 200, r
    c.node.stop()

    # Older than max_age: every safe file goes, the only copy stays.
    del c.node.extra["retention.max_bytes"]
    c.node.extra["retention.max_age"] = "1s"
    c.node.start()
    wait_until(lambda: not os.path.exists(local_file(c, cc)), timeout=15, what="C removed by age")
    time.sleep(1.0)
    assert os.path.exists(local_file(c, e)), "E, the only copy, was removed by age"
    st = c.node.op("status", "ret-e", e["recording_id"]).json
    assert st["status"] == "completed" and not st.get("s3_key"), st
    c.node.stop()


if __name__ == "__main__":
    run_tests(globals(), setup=setup, teardown=teardown)
