"""test_console_browser: the operator console in headless Chromium.

Debian's chromium, driven by playwright-core through
tests/support/browser/console.mjs, signs in to a node with the shipped
policies (the generated password), starts a recording from the page, sees
its events arrive over the page's WebSocket, pauses, resumes and stops it
with the row's buttons, waits (no reload) until it is completed with a
thumbnail, plays it in the page until the <video> is past 1 s, downloads
it, and deletes it. Checks here, from the outside: every step happened,
the events came in order, the download is byte-identical to the file on
disk, the player was served partial content (206), the deleted recording
is 404, axe-core found no serious or critical violation on any page at
1280 px and 390 px, nothing is wider than 390 px on a phone, and no script
error happened. Screenshots (desktop and phone) and the figures (time to
interactive, transferred bytes) are kept in <build>/test-output/console/."""

import hashlib
import json
import os
import shutil
import subprocess
import uuid

from edgerec_harness import Ctx, Edgerec, Redis, browser_dir, run_tests, stop_nodes

SRC = os.environ.get("EDGEREC_SOURCE_DIR") or os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
BROWSER_DIR = os.path.abspath(os.path.join(SRC, "tests", "support", "browser"))
OUT_DIR = os.path.join(os.environ.get("EDGEREC_BUILD_DIR") or os.path.join(SRC, "build"), "test-output", "console")


def setup():
    browser_dir()
    c = Ctx()
    c.redis = Redis().start()
    c.policy_dir = os.path.join(c.redis.dir, "policies")
    shutil.copytree(os.path.join(SRC, "policies"), c.policy_dir)
    c.node = Edgerec(redis=c.redis, name="console-browser",
                     config={"default_quality": "low", "policy_dir": c.policy_dir}).start()
    c.nodes = [c.node]
    return c


def teardown(c):
    stop_nodes(c)


def partial_content_served(c):
    total = 0
    for line in c.node.request("GET", "/metrics", token=None).body.decode().splitlines():
        if not line.startswith("#") and 'route="download"' in line and '"206"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_console_end_to_end(c):
    password = open(os.path.join(c.node.state_dir, "console_password")).read().strip()
    room = "console-" + uuid.uuid4().hex[:6]
    shutil.rmtree(OUT_DIR, ignore_errors=True)
    before = partial_content_served(c)
    out = subprocess.run(["node", os.path.join(BROWSER_DIR, "console.mjs"), c.node.url, "operator", password,
                          room, OUT_DIR], capture_output=True, text=True, timeout=400, cwd=BROWSER_DIR)
    lines = [l for l in out.stdout.splitlines() if l.startswith("{")]
    assert lines, (out.returncode, out.stdout[-2000:], out.stderr[-2000:])
    res = json.loads(lines[-1])
    assert out.returncode == 0 and "error" not in res, res.get("error") or out.stderr[-2000:]
    steps = [s["step"] for s in res["steps"]]
    assert steps == ["signed_in", "started", "pause", "resume", "stop", "completed", "thumbnail", "played",
                     "downloaded", "deleted"], steps
    rid = res["recording_id"]
    # The page saw the room's events, in order, without a reload.
    ev = res["events"]
    want = ["recording_paused", "recording_resumed", "recording_stopped", "recording_completed",
            "recording_deleted"]
    pos = [ev.index(t) for t in want]
    assert pos == sorted(pos), ev
    played = next(s for s in res["steps"] if s["step"] == "played")
    assert played["currentTime"] > 1 and played["error"] is None, played
    assert partial_content_served(c) > before, "the player got no 206 from the download route"
    # The download is the recording, byte for byte (it is gone from disk
    # now: compare with the size and checksum its state gave the page).
    dl = next(s for s in res["steps"] if s["step"] == "downloaded")
    assert dl["name"] == "recording_%s.webm" % rid, dl
    data = open(dl["file"], "rb").read()
    assert len(data) == dl["bytes"] == dl["file_size_bytes"] > 10000, dl
    assert hashlib.sha256(data).hexdigest() == dl["checksum"], dl
    probe = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0",
                            dl["file"]], capture_output=True, text=True)
    assert probe.returncode == 0 and float(probe.stdout.strip()) > 2.0, probe
    logged = [l for l in c.node.log_text().splitlines() if rid in l and "deleted (" in l]
    assert logged, "no delete log line"
    assert c.node.op("status", room, rid, user=c.node.token("root", claims={"roles": ["admin"]})).status == 404
    assert not os.path.exists(os.path.join(c.node.storage, rid))
    # Accessibility and layout.
    for page, violations in res["axe"].items():
        if not page.endswith("_minor"):
            assert violations == [], (page, violations)
    for page, width in res["phone"].items():
        assert width <= 390, (page, width)
    assert res["system"]["health"] in ("ok", "degraded"), res["system"]
    assert {"auth", "quota", "lifecycle", "sources"} <= set(res["system"]["policies"]), res["system"]
    assert res["page_errors"] == [], res["page_errors"]
    for shot in ("signin-desktop", "recordings-desktop", "rooms-desktop", "system-desktop", "recordings-phone",
                 "rooms-phone", "system-phone"):
        assert os.path.getsize(os.path.join(OUT_DIR, shot + ".png")) > 5000, shot
    # The figures, for a person to read (and kept beside the screenshots).
    figures = {"cold": {k: v for k, v in res["cold"].items() if k != "resources"},
               "signed_in": {k: v for k, v in res["signed_in"].items() if k != "resources"},
               "cold_resources": res["cold"]["resources"], "axe_minor": {k: v for k, v in res["axe"].items()
                                                                        if k.endswith("_minor")}}
    with open(os.path.join(OUT_DIR, "figures.json"), "w") as f:
        json.dump(figures, f, indent=1)
    print("console figures: " + json.dumps({"cold": figures["cold"], "signed_in": figures["signed_in"]}),
          flush=True)
    assert res["cold"]["transferred_bytes"] > 0 and res["cold"]["ready_ms"] is not None, res["cold"]


if __name__ == "__main__":
    run_tests(globals(), setup=setup, teardown=teardown)
