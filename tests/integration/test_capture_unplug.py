"""test_capture_unplug: a camera unplugged in the middle of a recording and
plugged back. The camera is the kernel's vivid in a qemu guest
(tests/support/guest); its "disconnect" control does what a USB unplug
does (the node goes away, every open handle gets ENODEV; vivid brings it
back once every handle is closed); as soon as edgerec has let go of it the
test unloads vivid, waits AWAY seconds and loads it again (the camera comes
back as a new device at the same path), as a replug does.

A recording of the room (camera + loopback microphone, a tone playing)
runs for a while, the camera goes, edgerec must:
- publish source_stalled and show it in the state (metadata.source_stalled);
- let go of the device (rmmod succeeds);
- take the camera back once it returns: source_resumed, and video frames
  again, the first of them a keyframe, at the camera's rate;
- keep the microphone (the tone goes on through the gap);
- finish a valid file: it decodes to the end with no error, VP8 + Opus,
  video before the unplug and after the replug, audio throughout.
"""
import os
import sys
import time

SOURCE = os.environ.get("EDGEREC_SOURCE_DIR") or os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
sys.path.insert(0, os.path.join(SOURCE, "tests", "support", "guest"))
import guestnode as gn  # noqa: E402
from edgerec_harness import run_tests, wait_until, ws_next  # noqa: E402

ROOM = "cam"
BEFORE = 10.0       # seconds recorded before the unplug
AWAY = 4.0          # seconds the camera stays away
AFTER = 10.0        # seconds recorded after the camera is back
CONFIG = {"default_quality": "low"}
CONFIG.update(gn.camera_room(ROOM))


def unplug(g, log_path):
    """vivid's disconnect control (the node goes, open handles get ENODEV;
    vivid registers it again at the last close), with vivid unloaded the
    moment edgerec has closed its handle, before its next reopen (it tries
    every 500 ms): the camera is then away until modprobe. Returns the
    unloader's report."""
    pid = g.spawn("exec %s %s vivid 20" % (gn.guest.PYTHON, os.path.join(gn.HERE, "unload_when_free.py")), log_path)
    wait_until(lambda: "ready" in open(log_path).read(), timeout=60, interval=0.2, what="the unloader")
    g.run("v4l2-ctl -d %s -c disconnect=1" % gn.CAMERA, check=True)
    rc = g.wait(pid, 60)
    report = g.run("cat " + log_path)[1].strip().replace("\n", ", ")
    assert rc == 0, "edgerec did not let go of the unplugged camera (vivid stayed in use): " + report
    return report


def setup():
    return gn.start_guest_node("test_capture_unplug", CONFIG)


def test_unplug_and_replug_mid_recording(c):
    g = c.guest
    wav = gn.write_tone_wav(os.path.join(c.node.dir, "tone.wav"), BEFORE + AFTER + 120, 1000)
    aplay_log = os.path.join(c.node.dir, "aplay.log")
    pid = gn.play(g, wav, aplay_log)
    ws = c.node.ws(ROOM)
    r = c.node.start_recording(ROOM, quality="low")
    assert r.status == 200, r
    rid = r.json["recording_id"]
    t_started = time.monotonic()
    try:
        time.sleep(3)
        mode = gn.camera_mode(g)
        time.sleep(max(0.0, BEFORE - (time.monotonic() - t_started)))

        t_unplug = time.monotonic() - t_started
        report = unplug(g, os.path.join(c.node.dir, "unload.log"))
        ev = ws_next(ws, "source_stalled", timeout=30)
        print("unplugged at %.1f s, vivid %s; event %s" % (t_unplug, report, ev.get("type")), flush=True)
        st = c.node.op("status", ROOM, rid)
        assert st.status == 200 and st.json["metadata"].get("source_stalled") is True, st.json
        time.sleep(AWAY)
        assert g.run("test -e %s" % gn.CAMERA)[0] != 0, "the camera is still there"
        g.run('modprobe -d "$GUEST_KROOT" vivid $GUEST_VIVID_OPTIONS', check=True)
        t_back = time.monotonic() - t_started
        ev = ws_next(ws, "source_resumed", timeout=30)
        print("camera back at %.1f s; event %s" % (t_back, ev.get("type")), flush=True)
        time.sleep(AFTER)
        t_stop = time.monotonic() - t_started
        r = c.node.op("stop", ROOM, rid)
        assert r.status == 200, r
    finally:
        g.signal(pid, 15)
        g.wait(pid, 20)
    rec = c.node.wait_status(ROOM, rid, ("completed", "failed"), timeout=300)
    ws.close()
    assert rec["status"] == "completed", rec
    print("metadata:", {k: v for k, v in rec["metadata"].items() if k != "degradation"})
    assert not gn.underruns(aplay_log), gn.underruns(aplay_log)

    path = c.node.fetch(rec)
    fmt, v, a = gn.streams(path)
    assert v and v["codec_name"] == "vp8" and a and a["codec_name"] == "opus", (v, a)
    gn.decodes_to_end(path)

    # Video before the unplug, a gap, video again after the replug.
    info = gn.ffprobe(path, "-select_streams", "v", "-show_entries", "packet=pts_time,flags")
    pk = sorted((float(p["pts_time"]), "K" in p["flags"]) for p in info["packets"] if "pts_time" in p)
    gaps = [(b[0] - a[0], i + 1) for i, (a, b) in enumerate(zip(pk, pk[1:]))]
    gap, after = max(gaps)
    fps = mode["fps"]
    print("video: %d frames, longest gap %.2f s at %.2f s, %d frames after it; stopped at %.1f s" % (
        len(pk), gap, pk[after][0], len(pk) - after, t_stop))
    assert gap >= 1.0, "no gap in the video where the camera was away (%.2f s)" % gap
    assert pk[after][1], "the first frame after the replug is not a keyframe"
    before_frames, after_frames = after, len(pk) - after
    assert before_frames >= 0.95 * fps * (t_unplug - 1.0), (before_frames, t_unplug)
    # After the return the camera runs at its rate again until the stop.
    back_span = pk[-1][0] - pk[after][0]
    assert after_frames >= 0.95 * fps * back_span and back_span >= AFTER - 1.0, (after_frames, back_span)

    # The microphone went on through the gap: the tone in every second.
    a0, samples = gn.decode_audio(path)
    gn.assert_tone_throughout(samples, 1000)
    assert len(samples) / gn.RATE >= pk[-1][0] - a0 - 0.5, (len(samples), a0, pk[-1][0])


if __name__ == "__main__":
    gn.require_e2e()
    run_tests(globals(), setup=setup, teardown=gn.stop_guest_node)
