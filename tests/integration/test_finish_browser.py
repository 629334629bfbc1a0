"""test_finish_browser: a browser <video> seeks in a downloaded recording.

Debian's chromium (headless, fresh profile, the server's self-signed
certificate accepted) is driven by playwright-core through
tests/support/browser/seek.mjs. It loads the download URL of a finished
webm and a finished mp4 recording with ?access_token= (a <video> cannot
send an Authorization header), seeks to the middle and waits for a frame
there. Checks: no media error, the position is the middle, readyState >= 2
(a frame decoded), a frame was presented at about that media time with the
recording's geometry, and the server answered the browser with 206 partial
content (Range), as seeking needs. Without a token the route still answers
401."""

import json
import os
import subprocess
import time
import urllib.parse

from edgerec_harness import Edgerec, browser_dir, run_tests

SRC = os.environ.get("EDGEREC_SOURCE_DIR") or os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
BROWSER_DIR = os.path.abspath(os.path.join(SRC, "tests", "support", "browser"))


class Ctx:
    pass


def setup():
    browser_dir()
    c = Ctx()
    c.node = Edgerec(name="browser", config={"default_quality": "low"}).start()
    c.nodes = [c.node]
    return c


def teardown(c):
    if c is not None and c.node.alive():
        assert c.node.stop() == 0


def metric_206(c):
    r = c.node.request("GET", "/metrics")
    total = 0
    for line in r.body.decode().splitlines():
        if line.startswith("#") or "download" not in line or '"206"' not in line:
            continue
        total += float(line.rsplit(" ", 1)[1])
    return total


def test_browser_seeks_in_download(c):
    recs = []
    for fmt in ("webm", "mp4"):
        room = "browser-" + fmt
        r = c.node.start_recording(room, "alice", fmt, "low")
        assert r.status == 200, r
        recs.append((room, r.json["recording_id"]))
    time.sleep(6)
    for room, rid in recs:
        assert c.node.op("stop", room, rid).status == 200
    urls = []
    token = c.node.token("alice")
    for room, rid in recs:
        rec = c.node.wait_status(room, rid, ("completed", "failed"), timeout=60)
        assert rec["status"] == "completed", rec
        path = "/api/webrtc/rooms/%s/recording/%s/download" % (room, rid)
        assert c.node.request("GET", path, token=None).status == 401
        urls.append((rec, c.node.url + path + "?access_token=" + urllib.parse.quote(token)))
    before = metric_206(c)

    out = subprocess.run(["node", os.path.join(BROWSER_DIR, "seek.mjs")] + [u for _, u in urls],
                         capture_output=True, text=True, timeout=120, cwd=BROWSER_DIR)
    results = [json.loads(l) for l in out.stdout.splitlines() if l.startswith("{")]
    assert out.returncode == 0 and len(results) == len(urls), (out.returncode, out.stdout, out.stderr[-2000:])
    for (rec, _), res in zip(urls, results):
        print("%s: %s" % (rec["format"], json.dumps(res)), flush=True)
        what = "%s %s" % (rec["format"], res)
        assert "error" not in res, what
        assert abs(res["duration"] - rec["duration_seconds"]) < 0.5, what
        assert res["readyState"] >= 2, what
        assert res["frame"] is True, what
        assert res["target"] - 0.5 <= res["mediaTime"] <= res["target"] + 1.5, what
        assert res["currentTime"] >= res["target"] - 0.1, what
        w, h = rec["metadata"]["width"], rec["metadata"]["height"]
        sizes = [(w, h)]
        steps = (rec["metadata"].get("degradation") or {}).get("steps") or []
        if any(s.get("step") == "resolution" for s in steps):
            # A busy box stepped the picture down for a while (the state
            # says so): the sought frame may be one of the half-size ones.
            sizes.append(((w // 2) & ~1, (h // 2) & ~1))
        assert (res["width"], res["height"]) in sizes, (what, steps)
    assert metric_206(c) > before, "the browser got no 206 from the download route"


if __name__ == "__main__":
    run_tests(globals(), setup=setup, teardown=teardown)
