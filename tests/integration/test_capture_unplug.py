"""test_capture_unplug: a camera unplugged in the middle of a recording and
plugged back, while another room records from a second camera. The
cameras are two instances of the kernel's vivid in a qemu guest
(tests/support/guest): /dev/video0 and /dev/video1. The first room names
its camera by a stable link (/tmp/cam-by-id, as /dev/v4l/by-id/... is);
the unplug is what udev shows of a USB unplug: the link goes and the node
reports the disconnect (vivid's "disconnect" control: every open handle
gets ENODEV, and vivid registers the node again once every handle is
closed); the replug makes the link again. (test_capture_v4l2 unloads and
reloads the driver itself under `edgerec record`.)

Room "cam" (camera + loopback microphone, a tone playing) and room
"other" (the second camera alone) record at once; the first camera goes,
and edgerec must:
- publish source_stalled for "cam" and show it in its state
  (metadata.source_stalled), and let go of the device (vivid brings the
  node back only once every handle is closed);
- take the camera back once its link returns: source_resumed, and video
  frames again, the first of them a keyframe, at the camera's rate;
- keep the microphone (the tone goes on through the gap);
- finish a valid file: it decodes to the end with no error, VP8 + Opus,
  video before the unplug and after the replug, audio throughout;
- leave "other" alone: no stall, a frame count within 5 % of its wall
  time x its camera's rate, a file that decodes to the end.
"""
import os
import sys
import time

SOURCE = os.environ.get("EDGEREC_SOURCE_DIR") or os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
sys.path.insert(0, os.path.join(SOURCE, "tests", "support", "guest"))
import guestnode as gn  # noqa: E402
from edgerec_harness import run_tests, wait_until, ws_next  # noqa: E402

ROOM = "cam"
OTHER = "other"
LINK = "/tmp/cam-by-id"
CAMERA2 = "/dev/video1"
VIVID = "n_devs=2 node_types=0x1,0x1"
BEFORE = 10.0       # seconds recorded before the unplug
AWAY = 4.0          # seconds the camera stays away
AFTER = 10.0        # seconds recorded after the camera is back
CONFIG = {"default_quality": "low"}
CONFIG.update(gn.camera_room(ROOM, device=LINK))
CONFIG.update(gn.camera_room(OTHER, device=CAMERA2, audio=None))


def setup():
    return gn.start_guest_node("test_capture_unplug", CONFIG, vivid=VIVID)


def test_unplug_and_replug_mid_recording_beside_another_camera(c):
    g = c.guest
    g.run("ln -sf %s %s" % (gn.CAMERA, LINK), check=True)
    wav = gn.write_tone_wav(os.path.join(c.node.dir, "tone.wav"), BEFORE + AFTER + 120, 1000)
    aplay_log = os.path.join(c.node.dir, "aplay.log")
    pid = gn.play(g, wav, aplay_log)
    ws, ws_other = c.node.ws(ROOM), c.node.ws(OTHER)
    t_req_other = time.monotonic()
    r = c.node.start_recording(OTHER, quality="low")
    t_other = time.monotonic()
    assert r.status == 200, r
    rid_other = r.json["recording_id"]
    r = c.node.start_recording(ROOM, quality="low")
    assert r.status == 200, r
    rid = r.json["recording_id"]
    t_started = time.monotonic()
    try:
        time.sleep(3)
        mode = gn.camera_mode(g)
        mode_other = gn.camera_mode(g, CAMERA2)
        time.sleep(max(0.0, BEFORE - (time.monotonic() - t_started)))

        t_unplug = time.monotonic() - t_started
        g.run("rm -f %s; v4l2-ctl -d %s -c disconnect=1" % (LINK, gn.CAMERA), check=True)
        ev = ws_next(ws, "source_stalled", timeout=30)
        print("unplugged at %.1f s; event %s" % (t_unplug, ev.get("type")), flush=True)
        st = c.node.op("status", ROOM, rid)
        assert st.status == 200 and st.json["metadata"].get("source_stalled") is True, st.json
        # vivid makes the node again only once nothing holds the old one.
        wait_until(lambda: g.run("test -e %s" % gn.CAMERA)[0] == 0, timeout=20, interval=0.5,
                   what="edgerec to let go of the unplugged camera")
        time.sleep(AWAY)
        g.run("ln -sf %s %s" % (gn.CAMERA, LINK), check=True)
        t_back = time.monotonic() - t_started
        ev = ws_next(ws, "source_resumed", timeout=30)
        print("camera back at %.1f s; event %s" % (t_back, ev.get("type")), flush=True)
        time.sleep(AFTER)
        t_stop = time.monotonic() - t_started
        r = c.node.op("stop", ROOM, rid)
        assert r.status == 200, r
        t_stop_other = time.monotonic()
        r = c.node.op("stop", OTHER, rid_other)
        t_stopped_other = time.monotonic()
        assert r.status == 200, r
    finally:
        g.signal(pid, 15)
        g.wait(pid, 20)
    rec = c.node.wait_status(ROOM, rid, ("completed", "failed"), timeout=300)
    rec_other = c.node.wait_status(OTHER, rid_other, ("completed", "failed"), timeout=300)
    ws.close()
    events_other = [e.get("type") for e in gn.events_of(ws_other, 1.0)]
    ws_other.close()
    assert rec["status"] == "completed", rec
    assert rec_other["status"] == "completed", rec_other
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
    # Before the unplug, and after the return until the stop, the camera
    # runs at its rate (or the recording says why not).
    before_frames, after_frames = after, len(pk) - after
    back_span = pk[-1][0] - pk[after][0]
    assert back_span >= AFTER - 1.0, back_span
    behind = gn.assert_frames(len(pk), fps * (t_unplug - 1.0 + back_span), None, rec["metadata"]["media"],
                              bool(rec["metadata"].get("degradation")))
    share = 0.5 if behind else 0.95
    assert before_frames >= share * fps * (t_unplug - 1.0), (before_frames, t_unplug)
    assert after_frames >= share * fps * back_span, (after_frames, back_span)

    # The microphone went on through the gap: the tone in every second.
    a0, samples = gn.decode_audio(path)
    gn.assert_tone_throughout(samples, 1000)
    assert len(samples) / gn.RATE >= pk[-1][0] - a0 - 0.5, (len(samples), a0, pk[-1][0])

    # The other room never noticed.
    print("other room: events %s, media %s" % (events_other, rec_other["metadata"].get("media")))
    assert "source_stalled" not in events_other, events_other
    assert not rec_other["metadata"].get("source_stalls"), rec_other["metadata"]
    path = c.node.fetch(rec_other)
    gn.decodes_to_end(path)
    pts = gn.video_pts(path)
    lo = (t_stop_other - t_other) * mode_other["fps"]
    hi = (t_stopped_other - t_req_other) * mode_other["fps"]
    print("other room: %d frames, expected %.0f..%.0f" % (len(pts), lo, hi))
    gn.assert_frames(len(pts), lo, hi, rec_other["metadata"]["media"], bool(rec_other["metadata"].get("degradation")))


if __name__ == "__main__":
    run_tests(globals(), setup=setup, teardown=gn.stop_guest_node)
