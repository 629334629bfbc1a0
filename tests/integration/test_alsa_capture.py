"""test_alsa_capture: microphone capture (media_alsa, the `alsa` source) on a
real ALSA device: snd-aloop in a qemu guest (tests/support/guest), which
captures on hw:Loopback,1,0 what the test plays into hw:Loopback,0,0.

1. The capture module itself (tests/unit/test_media_alsa_device run in the
   guest with EDGEREC_ALSA_TEST_PCM) while a 1 kHz tone plays: a second
   open of the same PCM is -EBUSY; the tone is in the output; the output's
   time (first pts + frames / 48 kHz) stays with CLOCK_MONOTONIC within
   15 ms (medians of 5 s windows; it holds within a few ms), first at the
   nominal rate, then with the cable's "PCM Rate Shift 100000" at 100030
   (the device's samples come 300 ppm slow: uncorrected, the output would
   fall 18 ms behind over the 60 s; corrected it must move less than 8 ms
   from the first window to the last) where the drift estimate must also
   find -300 ppm. (test_capture_record holds a whole recording to 20 ms
   over 2 minutes at twice the shift.)
2. An audio-only room (source `alsa`) through the REST API: a missing
   device is refused with 503, one held by arecord with 409, each with a
   detail and nothing left behind; a recording whose microphone is
   unplugged (the card unbound from its driver, as a USB unplug does) and
   plugged back: source_stalled, then source_resumed, the state says so
   (metadata.capture.audio: the device's rate and channels, drift,
   overruns; /metrics counts overruns), and the file is valid Opus with
   the tone before the unplug and after the return.

Skipped (exit 77) when the guest cannot run here.
"""
import json
import os
import sys
import time

SOURCE = os.environ.get("EDGEREC_SOURCE_DIR") or os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
BUILD = os.environ.get("EDGEREC_BUILD_DIR") or os.path.join(SOURCE, "build")
sys.path.insert(0, os.path.join(SOURCE, "tests", "support", "guest"))
import guestnode as gn  # noqa: E402
from edgerec_harness import run_tests, wait_until, ws_next  # noqa: E402

ROOM = "mic"
DEVICE_TEST = os.path.join(BUILD, "tests", "test_media_alsa_device")
UNBIND = "echo snd_aloop.0 > /sys/bus/platform/drivers/snd_aloop/unbind"
BIND = "echo snd_aloop.0 > /sys/bus/platform/drivers/snd_aloop/bind"
CONFIG = {
    "default_quality": "low",
    "room.mic.source": "alsa", "room.mic.args": "device=" + gn.MIC,
    "room.nomic.source": "alsa", "room.nomic.args": "device=hw:CARD=NoSuchCard,DEV=0",
}


def setup():
    return gn.start_guest_node("test_alsa_capture", CONFIG)


def set_rate_shift(g, value):
    # The cable into hw:Loopback,1,0 is timed by device 1's control.
    g.run("amixer -q -c Loopback cset iface=PCM,name='PCM Rate Shift 100000',device=1,subdevice=0 %d"
          % value, check=True)


def capture(c, seconds, ppm=None):
    """Runs the capture check in the guest while the tone plays; returns
    its JSON figures."""
    g = c.guest
    wav = gn.write_tone_wav(os.path.join(c.node.dir, "tone.wav"), seconds + 30)
    aplay_log = os.path.join(c.node.dir, "aplay.log")
    pid = gn.play(g, wav, aplay_log)
    try:
        time.sleep(1)
        env = "EDGEREC_ALSA_TEST_PCM=%s EDGEREC_ALSA_TEST_SECONDS=%d" % (gn.MIC, seconds)
        if ppm is not None:
            env += " EDGEREC_ALSA_TEST_PPM=%d" % ppm
        rc, out = g.run("%s %s 2>&1" % (env, DEVICE_TEST), timeout=seconds + 120)
    finally:
        g.signal(pid, 15)
        g.wait(pid, 20)
    lines = [l for l in out.splitlines() if l.startswith("{")]
    assert rc == 0 and lines, "capture check failed (exit %s):\n%s" % (rc, out[-4000:])
    figures = json.loads(lines[-1])
    print("capture %s" % json.dumps(figures), flush=True)
    assert not gn.underruns(aplay_log), "aplay underran (an environment fault): %s" % gn.underruns(aplay_log)
    return figures


def test_capture_holds_the_monotonic_clock(c):
    f = capture(c, 30)
    # (the capture check itself has judged the tone, allowing for the
    # silence of an overrun: a starved guest may leave the reader away 4 s)
    assert f["blocks"] >= 250 and f["tone_blocks"] >= f["blocks"] // 2, f


def test_capture_corrects_a_300ppm_slow_device(c):
    set_rate_shift(c.guest, 100030)
    try:
        f = capture(c, 60, ppm=-300)
    finally:
        set_rate_shift(c.guest, 100000)
    # Without correction the output would lose 300 ppm of the run.
    print("output time: %+.2f ms from the first to the last window (uncorrected: %+.1f ms); "
          "drift found %.1f ppm, measured from the device's frames %.1f ppm" % (
              f["delay_last_ms"] - f["delay_first_ms"], -300e-6 * f["seconds"] * 1000, f["drift_ppm"],
              f["device_ppm_measured"]), flush=True)
    assert abs(f["delay_last_ms"] - f["delay_first_ms"]) <= 8, f


def test_missing_and_busy_microphone_are_refused(c):
    r = gn.refused(c, "nomic", (503,))
    print("missing microphone:", r.status, r.json["detail"])
    with gn.microphone_held(c):
        r = gn.refused(c, ROOM, (409,))
        print("busy microphone:", r.status, r.json["detail"])


def test_unplug_and_replug_an_audio_only_room(c):
    g = c.guest
    wav = gn.write_tone_wav(os.path.join(c.node.dir, "tone.wav"), 120)
    ws = c.node.ws(ROOM)
    r = c.node.start_recording(ROOM, quality="low")
    assert r.status == 200, r
    rid = r.json["recording_id"]
    t0 = time.monotonic()
    pid = gn.play(g, wav, os.path.join(c.node.dir, "aplay1.log"))
    pid2 = None
    try:
        time.sleep(10)
        t_unplug = time.monotonic() - t0
        g.run(UNBIND, check=True)       # the card goes; aplay ends with it
        ev = ws_next(ws, "source_stalled", timeout=30)
        print("unplugged at %.1f s; event %s" % (t_unplug, ev), flush=True)
        st = c.node.op("status", ROOM, rid)
        assert st.status == 200 and st.json["metadata"].get("source_stalled") is True, st.json
        time.sleep(2)
        g.run(BIND, check=True)
        t_back = time.monotonic() - t0
        ev = ws_next(ws, "source_resumed", timeout=30)
        print("plugged back at %.1f s; event %s" % (t_back, ev), flush=True)
        pid2 = gn.play(g, wav, os.path.join(c.node.dir, "aplay2.log"))
        time.sleep(10)
        r = c.node.op("stop", ROOM, rid)
        assert r.status == 200, r
    finally:
        for p in (pid, pid2):
            if p is not None:
                g.signal(p, 15)
                g.wait(p, 20)
    rec = c.node.wait_status(ROOM, rid, ("completed", "failed"), timeout=300)
    ws.close()
    assert rec["status"] == "completed", rec
    md = rec["metadata"]
    print("metadata:", {k: v for k, v in md.items() if k != "degradation"}, flush=True)
    assert md.get("source_stalls", 0) >= 1 and md.get("source_stalled") is False, md
    audio = md.get("capture", {}).get("audio", {})
    assert audio.get("device_rate") == 48000 and audio.get("device_channels") == 2, md.get("capture")
    assert md["capture"].get("audio_reopens") == 1, md["capture"]
    m = c.node.request("GET", "/metrics", token=None).body.decode()
    assert "edgerec_audio_capture_overruns_total" in m and "edgerec_audio_capture_silence_frames_total" in m, \
        [l for l in m.splitlines() if "audio" in l]

    path = c.node.fetch(rec)
    fmt, v, a = gn.streams(path)
    assert v is None and a and a["codec_name"] == "opus", (v, a)
    gn.decodes_to_end(path)
    a0, samples = gn.decode_audio(path)
    secs = int(len(samples) / gn.RATE)
    tone = []
    for s in range(secs):
        hz, rms = gn.tone_frequency(samples[s * gn.RATE:(s + 1) * gn.RATE])
        tone.append(abs(hz - 1000) < 10 and rms > 0.2)
    print("audio %.1f s from %.3f; seconds with the tone: %s" % (
        len(samples) / gn.RATE, a0, "".join("T" if t else "." for t in tone)), flush=True)
    # The tone before the unplug and after the return (aplay starts a few
    # seconds into the recording and again after the card is back): two
    # runs of seconds with it, the silence of the gap between them.
    runs, n = [], 0
    for t in tone + [False]:
        if t:
            n += 1
        elif n:
            runs.append(n)
            n = 0
    assert len(runs) >= 2 and runs[0] >= 4 and runs[-1] >= 7, tone
    # The time the card was away is a gap in the file's timeline: the
    # packets after it are timed when their sound was captured.
    info = gn.ffprobe(path, "-select_streams", "a", "-show_entries", "packet=pts_time,duration_time")
    pk = [(float(p["pts_time"]), float(p["duration_time"])) for p in info["packets"]
          if "pts_time" in p and "duration_time" in p]
    gap, at = max((b[0] - (a[0] + a[1]), a[0] + a[1]) for a, b in zip(pk, pk[1:]))
    print("audio gap %.2f s at %.2f s (away from %.1f to %.1f s of the test)" % (gap, at, t_unplug, t_back))
    assert gap >= 1.0 and pk[-1][0] - pk[0][0] >= t_back - t_unplug + 15, (gap, pk[0], pk[-1])


if __name__ == "__main__":
    run_tests(globals(), setup=setup, teardown=gn.stop_guest_node)
