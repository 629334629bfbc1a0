"""test_media_degrade: a 720p30 recording made through the REST API while
busy-loop processes saturate every core degrades evenly and says so: at
least 80 % of its wall time is covered by frames no further apart than four
frame periods (a quarter of the preset's rate, from ffprobe's packet
timestamps), ffmpeg decodes the whole file (across the size steps), the
record's metadata.degradation lists the steps, a recording_degraded event
reaches the room's WebSocket, and /metrics counts the steps."""

import json
import multiprocessing
import os
import subprocess
import sys
import time
import uuid

from edgerec_harness import run_tests, start_node, stop_nodes, ws_next

sys.path.insert(0, os.path.join(os.environ.get("EDGEREC_SOURCE_DIR", "."), "tests/fixtures/media"))
from mediacheck import packets  # noqa: E402

FPS = 30           # the medium preset
SECONDS = 12       # recorded wall time
HOGS_PER_CORE = 4   # busy loops: the server gets about a ninth of the box


def hog():
    # Each hog in a session of its own: with the kernel's autogroup
    # scheduling the CPU is shared fairly between sessions, so hogs in the
    # test's session would leave the server (a session of its own) half
    # the box whatever their number.
    os.setsid()
    while True:
        pass


def setup():
    return start_node(config={"default_quality": "medium"})


def video_times(path):
    return sorted(t for t, _, _ in packets(path, "v"))


def covered_seconds(times, span, max_gap):
    """Seconds of [0, span] within max_gap of the frame before (a frame
    covers the time up to the next one when they are close enough)."""
    edges = [0.0] + [t for t in times if 0 <= t <= span] + [span]
    return sum(b - a for a, b in zip(edges, edges[1:]) if b - a <= max_gap)


def test_degrades_evenly_under_cpu_hogs(c):
    room = "hog-" + uuid.uuid4().hex[:8]
    ws = c.node.ws(room)
    hogs = [multiprocessing.Process(target=hog, daemon=True)
            for _ in range(HOGS_PER_CORE * (os.cpu_count() or 2))]
    for h in hogs:
        h.start()
    try:
        time.sleep(0.5)
        r = c.node.start_recording(room, fmt="webm")
        assert r.status == 200, r
        t0 = time.monotonic()
        rid = r.json["recording_id"]
        time.sleep(SECONDS)
        r = c.node.op("stop", room, rid)
        wall = time.monotonic() - t0
        assert r.status == 200, r
    finally:
        for h in hogs:
            h.kill()
        for h in hogs:
            h.join()

    # Events: recording_degraded (with the step) came before the stop.
    types, degraded = [], []
    while "recording_stopped" not in types:
        ev = ws_next(ws, timeout=30)
        types.append(ev["type"])
        if ev["type"] == "recording_degraded":
            degraded.append(ev)
    ws.close()
    if not degraded:
        st = c.node.wait_status(room, rid, ("completed", "failed"), timeout=60)
        raise AssertionError("no recording_degraded event (saw %s); metadata %s" % (
            types, json.dumps(st.get("metadata"), sort_keys=True)))
    first = degraded[0]["data"]
    assert first.get("recording_id") == rid and first.get("direction") == "down", first
    assert first.get("step") in ("speed", "fps_half", "resolution"), first
    assert first["metadata"]["degradation"]["steps"], first

    st = c.node.wait_status(room, rid, ("completed", "failed"), timeout=60)
    assert st["status"] == "completed", st
    d = st["metadata"].get("degradation")
    assert d and d["steps"], st["metadata"]
    assert d["steps"][0]["step"] == "speed" and d["steps"][0]["direction"] == "down", d
    for s in d["steps"]:
        assert s["step"] in ("speed", "fps_half", "resolution") and s["at"].endswith("Z"), s
    assert 0 < d["effective_fps"] <= FPS and FPS / 4 <= d["min_fps"] <= FPS, d

    paths = [os.path.join(dp, f) for dp, _, fs in os.walk(c.node.storage) for f in fs
             if f == "recording_%s.webm" % rid]
    assert paths, "no file for %s under %s" % (rid, c.node.storage)
    times = video_times(paths[0])
    cov = covered_seconds(times, wall, 4.0 / FPS)
    print("   %d frames in %.2f s of wall time, %.1f%% covered at >= %d fps; steps: %s" % (
        len(times), wall, 100 * cov / wall, FPS // 4,
        ", ".join("%s %s" % (s["direction"], s["step"]) for s in d["steps"])), flush=True)
    edges = [0.0] + [t for t in times if t <= wall] + [wall]
    gaps = sorted(((b - a, a) for a, b in zip(edges, edges[1:]) if b - a > 4.0 / FPS), reverse=True)
    assert cov >= 0.8 * wall, "only %.2f of %.2f s covered by frames at >= %d fps (gaps: %s)" % (
        cov, wall, FPS // 4, ", ".join("%.2f s at %.2f" % g for g in gaps[:5]))
    dec = subprocess.run(["ffmpeg", "-v", "error", "-i", paths[0], "-f", "null", "-"],
                         capture_output=True, text=True)
    assert dec.returncode == 0 and not dec.stderr.strip(), dec.stderr[-500:]

    m = c.node.request("GET", "/metrics", token=None)
    assert m.status == 200, m
    line = [x for x in m.body.decode().splitlines()
            if x.startswith("edgerec_recording_degradations_total ")]
    assert line and int(line[0].split()[1]) >= 1, line


if __name__ == "__main__":
    run_tests(globals(), setup=setup, teardown=stop_nodes)
