"""test_api_s3_download: with storage_backend = s3 (a real s3rver started
by tests/support/s3/start), a finished recording whose local copy was
removed after upload is downloaded through the API: a 302 to a presigned
URL that s3rver serves byte for byte, with the Content-Disposition asked
for; ffprobe plays what came back."""

import json
import os
import subprocess
import time
import urllib.error
import urllib.request
import uuid

from edgerec_harness import (Edgerec, Redis, free_port, mktemp, run_tests, s3_config, start_s3rver,
                             stop_process, wait_until)

BUCKET = "edgerec-test"


class Ctx:
    pass


def setup():
    c = Ctx()
    c.redis = Redis().start()
    c.s3_dir = mktemp("s3rver")
    c.s3_port = free_port()
    c.s3 = start_s3rver(c.s3_port, c.s3_dir, BUCKET)
    c.node = Edgerec(redis=c.redis, name="s3node", config=s3_config(c.s3_port, BUCKET, {
        "default_quality": "low", "recorder.keep_local": "false"})).start()
    c.nodes = [c.node]
    return c


def teardown(c):
    if c is None:
        return
    if c.node.alive():
        assert c.node.stop() == 0
    stop_process(c.s3)


def test_download_redirects_to_s3(c):
    room = "s3dl-" + uuid.uuid4().hex[:8]
    r = c.node.start_recording(room, "alice", "webm", "low")
    assert r.status == 200, r
    rid = r.json["recording_id"]
    time.sleep(1.5)
    assert c.node.op("stop", room, rid).status == 200
    rec = c.node.wait_status(room, rid, ("completed", "failed"), timeout=60)
    assert rec["status"] == "completed", rec
    assert rec["s3_key"], rec
    local = os.path.join(rec["local_path"], rec["file_name"])
    assert not os.path.exists(local), "the local copy was kept"

    base = "/api/webrtc/rooms/%s/recording/%s" % (room, rid)
    r = c.node.request("GET", base + "/download")
    assert r.status == 302, r
    url = r.headers["location"]
    assert url.startswith("http://127.0.0.1:%d/" % c.s3_port) and "X-Amz-Signature=" in url, url
    with urllib.request.urlopen(url, timeout=20) as f:
        data = f.read()
        disposition = f.headers.get("Content-Disposition", "")
    assert len(data) == rec["file_size_bytes"], (len(data), rec["file_size_bytes"])
    assert rec["file_name"] in disposition, disposition
    path = os.path.join(c.s3_dir, "downloaded.webm")
    with open(path, "wb") as f:
        f.write(data)
    out = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "json", path],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert abs(float(json.loads(out.stdout)["format"]["duration"]) - rec["duration_seconds"]) < 0.25
    # Someone else's token gets no URL (the state itself is readable under
    # the built-in rules; the content is the owner's or an admin's).
    r = c.node.request("GET", base + "/download", token="mallory")
    assert r.status == 403 and r.json["code"] == "forbidden", r
    admin = c.node.token("root", claims={"roles": ["admin"]})
    assert c.node.request("GET", base + "/download", token=admin).status == 302


if __name__ == "__main__":
    run_tests(globals(), setup=setup, teardown=teardown)
