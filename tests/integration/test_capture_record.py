"""test_capture_record: a room wired to a real V4L2 camera and ALSA
microphone records through the REST API. The devices are the kernel's own
test drivers in a qemu guest (tests/support/guest): vivid's /dev/video0 and
snd-aloop's hw:Loopback,1,0, which captures what the test plays into
hw:Loopback,0,0. `edgerec serve` runs in the guest; the host drives it over
HTTPS and reads the file where the guest wrote it (a shared folder).

1. a camera held by another process (v4l2-ctl streaming from it), a
   microphone held by another (arecord), a camera and a microphone that do
   not exist: each start is refused with 409 (busy) or 503 (missing) and a
   JSON detail, and leaves no recording and no folder behind;
2. GET /api/system/devices (admin) lists the camera with YUYV among its
   formats and the loopback card among the microphones;
3. a recording at the low preset while a 1 kHz tone plays: the file decodes
   on the host, holds VP8 + Opus at the size the camera was set to (read
   from the driver with v4l2-ctl, not from edgerec), a video frame count
   within 5 % of wall time x the camera's rate, and the tone (1 kHz, at its
   level) in every second of its audio; no source_stalled on the way.

Skipped (exit 77) when the guest cannot run here (no qemu, no kernel).
Under TCG the guest is slow: the low preset is the smallest the API has.
"""
import os
import sys
import time
import uuid

SOURCE = os.environ.get("EDGEREC_SOURCE_DIR") or os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
sys.path.insert(0, os.path.join(SOURCE, "tests", "support", "guest"))
import guestnode as gn  # noqa: E402
from edgerec_harness import run_tests  # noqa: E402

ROOM = "cam"
SECONDS = 30.0
TONE_HZ = 1000
CONFIG = {"default_quality": "low"}
CONFIG.update(gn.camera_room(ROOM))
CONFIG.update(gn.camera_room("nocam", device="/dev/video7", audio=None))
CONFIG.update(gn.camera_room("nomic", audio="hw:7,0"))
CONFIG.update(gn.camera_room("camonly", audio=None))


def setup():
    return gn.start_guest_node("test_capture_record", CONFIG)


def test_busy_camera_is_refused_with_409(c):
    log = os.path.join(c.node.dir, "holder.log")
    pid = c.guest.spawn("exec v4l2-ctl -d %s --stream-mmap --stream-to=/dev/null" % gn.CAMERA, log)
    try:
        # Streaming once v4l2-ctl has queued its buffers (it prints '<').
        time.sleep(3)
        assert c.guest.wait(pid, 0) is None, open(log).read()
        r = gn.refused(c, "camonly", (409,))
        print("busy camera:", r.status, r.json["detail"])
    finally:
        c.guest.signal(pid, 15)
        c.guest.wait(pid, 20)


def test_busy_microphone_is_refused_with_409(c):
    with gn.microphone_held(c):
        r = gn.refused(c, ROOM, (409,))
        print("busy microphone:", r.status, r.json["detail"])


def test_missing_devices_are_refused_with_503(c):
    for room in ("nocam", "nomic"):
        r = gn.refused(c, room, (503,))
        print("missing device (%s):" % room, r.status, r.json["detail"])


def test_devices_lists_the_camera_and_the_microphone(c):
    admin = c.node.token("root", claims={"roles": ["admin"]})
    r = c.node.request("GET", "/api/system/devices", token=admin)
    assert r.status == 200, r
    text = r.body.decode()
    assert gn.CAMERA in text and "YUYV" in text.upper(), text[:2000]
    assert "Loopback" in text, text[:2000]
    r = c.node.request("GET", "/api/system/devices", token="alice")
    assert r.status == 403, r


def test_record_camera_and_microphone(c):
    g = c.guest
    wav = gn.write_tone_wav(os.path.join(c.node.dir, "tone.wav"), SECONDS + 60, TONE_HZ)
    aplay_log = os.path.join(c.node.dir, "aplay.log")
    pid = gn.play(g, wav, aplay_log)
    ws = c.node.ws(ROOM)
    t_req = time.monotonic()
    r = c.node.start_recording(ROOM, quality="low")
    t_started = time.monotonic()
    assert r.status == 200, r
    rid = r.json["recording_id"]
    try:
        time.sleep(3)
        mode = gn.camera_mode(g)
        print("camera while recording:", mode, flush=True)
        time.sleep(max(0.0, SECONDS - (time.monotonic() - t_started)))
        t_stop = time.monotonic()
        r = c.node.op("stop", ROOM, rid)
        t_stopped = time.monotonic()
        assert r.status == 200, r
    finally:
        g.signal(pid, 15)
        g.wait(pid, 20)
    rec = c.node.wait_status(ROOM, rid, ("completed", "failed"), timeout=300)
    assert rec["status"] == "completed", rec
    events = [e.get("type") for e in gn.events_of(ws, 1.0)]
    ws.close()
    print("events:", events)
    assert "source_stalled" not in events, events
    assert not gn.underruns(aplay_log), gn.underruns(aplay_log)

    path = c.node.fetch(rec)
    fmt, v, a = gn.streams(path)
    assert v and v["codec_name"] == "vp8", v
    assert a and a["codec_name"] == "opus", a
    want_w, want_h = gn.fit_box(mode["width"], mode["height"], *gn.PRESET_BOX[:2])
    assert (v["width"], v["height"]) == (want_w, want_h), ((v["width"], v["height"]), mode)
    gn.decodes_to_end(path)

    # Frames: wall time x the rate the camera runs at, within 5 %. The
    # recording began inside the start request and ended inside the stop.
    pts = gn.video_pts(path)
    fps = mode["fps"]
    lo, hi = (t_stop - t_started) * fps, (t_stopped - t_req) * fps
    print("video frames %d, expected %.0f..%.0f (%.2f fps, %.1f..%.1f s wall); state %s" % (
        len(pts), lo, hi, fps, t_stop - t_started, t_stopped - t_req, rec["metadata"].get("media")))
    assert lo * 0.95 <= len(pts) <= hi * 1.05, (len(pts), lo, hi)

    # The tone in every second of the audio once aplay has started.
    hole, n = gn.audio_contiguous(path)
    assert hole < 0.002, "audio packets not contiguous: a hole or overlap of %.1f ms" % (1000 * hole)
    a0, samples = gn.decode_audio(path)
    audio_seconds = len(samples) / gn.RATE
    video_seconds = pts[-1] - pts[0] + 1.0 / fps
    print("audio %.3f s from %.3f, video %.3f s from %.3f" % (audio_seconds, a0, video_seconds, pts[0]))
    assert abs((a0 + audio_seconds) - (pts[-1] + 1.0 / fps)) < 0.5, (a0, audio_seconds, pts[0], pts[-1])
    gn.assert_tone_throughout(samples, TONE_HZ)


if __name__ == "__main__":
    gn.require_e2e()
    run_tests(globals(), setup=setup, teardown=gn.stop_guest_node)
