"""test_media_stall: a box whose recorder gets no CPU for a while (stopped
here with SIGSTOP for STALL seconds, the extreme of a starved core) keeps
its recordings on the wall clock, as a camera would: two low recordings made
at once through the REST API each last their wall time (not wall time minus
the stall), the video packets show one gap of about the stall rather than a
shifted timeline, the frames that fell due meanwhile are counted as dropped
in each record's metadata and in /metrics, and ffmpeg decodes both files."""

import os
import signal
import subprocess
import sys
import time
import uuid

from edgerec_harness import run_tests, start_node, stop_nodes

sys.path.insert(0, os.path.join(os.environ.get("EDGEREC_SOURCE_DIR", "."), "tests/fixtures/media"))
from mediacheck import packets  # noqa: E402

FPS = 24            # the low preset
STALL = 2.0         # seconds without CPU


def setup():
    return start_node(config={"default_quality": "low"})


def video_times(path):
    return sorted(t for t, _, _ in packets(path, "v"))


def test_two_recordings_stay_on_the_wall_clock_across_a_stall(c):
    dropped_before = c.node.metric("edgerec_video_frames_dropped_total")
    rooms = ["stall-%s-%d" % (uuid.uuid4().hex[:6], i) for i in range(2)]
    started = []
    for room in rooms:
        r = c.node.start_recording(room, fmt="webm")
        assert r.status == 200, r
        started.append((room, r.json["recording_id"], time.monotonic()))
    time.sleep(2.0)
    os.kill(c.node.proc.pid, signal.SIGSTOP)
    try:
        time.sleep(STALL)
    finally:
        os.kill(c.node.proc.pid, signal.SIGCONT)
    time.sleep(2.0)
    recs = []
    for room, rid, t0 in started:
        r = c.node.op("stop", room, rid)
        assert r.status == 200, r
        recs.append((room, rid, time.monotonic() - t0))
    for room, rid, wall in recs:
        rec = c.node.wait_status(room, rid, ("completed", "failed"), timeout=60)
        assert rec["status"] == "completed", rec
        media = rec["metadata"]["media"]
        # The recording covers its wall time (less the start's latency).
        assert rec["duration_seconds"] >= wall - 1.0, (rec["duration_seconds"], wall, rec)
        # What fell due during the stall is counted, not silently absent.
        assert media["video_frames_dropped"] >= (STALL - 0.5) * FPS, media
        path = os.path.join(rec["local_path"], rec["file_name"])
        times = video_times(path)
        gaps = [b - a for a, b in zip(times, times[1:])]
        assert max(gaps) >= STALL - 0.5, ("no gap where the stall was", max(gaps))
        assert times[-1] >= wall - 1.0, (times[-1], wall)
        dec = subprocess.run(["ffmpeg", "-v", "error", "-i", path, "-f", "null", "-"],
                             capture_output=True, text=True)
        assert dec.returncode == 0 and not dec.stderr.strip(), dec.stderr[-400:]
    dropped = c.node.metric("edgerec_video_frames_dropped_total") - dropped_before
    assert dropped >= 2 * (STALL - 0.5) * FPS, dropped


if __name__ == "__main__":
    run_tests(globals(), setup=setup, teardown=stop_nodes)
