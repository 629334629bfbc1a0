"""H.264 through an rtp room and the REST API: `edgerec serve`, a real
x264 sender (ffmpeg -c:v libx264 -f rtp, with Opus), the recording checked
with ffprobe/ffmpeg.

1. A webm start for an H.264 room is refused with 400 and a detail that
   says WebM cannot hold H.264.
2. Clean run, mkv, room args video_codec=h264 (SPS/PPS in-band, as x264
   repeats them before every IDR): the status turns to recording on the
   first IDR, metadata.rtp.video_codec is h264 and video_resolution the
   sender's 1280x720; after stop and processing the file is H.264 (the
   track's avcC read by ffprobe) + Opus, decodes with `ffmpeg -f null`
   without a single error, its first packet is a keyframe, its frame count
   is within 5 % of its duration x 30 fps and within 5 % of what was sent,
   no packet or frame was lost on the way in, a thumbnail was made.
3. Lossy run, mp4, a room described by an SDP file whose fmtp carries
   sprop-parameter-sets while the sender keeps SPS/PPS out of the stream
   (global header): the video goes through rtp_impair's relay (2 % loss,
   5 % reordered). Incomplete access units are dropped, the next frames wait
   for an IDR (PLIs sent, counted in metadata.rtp_receive), every IDR gets
   the SDP's SPS/PPS; processing remuxes to MP4, which ffprobe reads as
   h264 + opus with the right duration and which decodes without errors.
"""

import json
import os
import re
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "support"))

from edgerec_harness import Edgerec, Redis, mktemp, run_tests, wait_until  # noqa: E402
from rtp_impair import Relay  # noqa: E402
from rtp_testlib import free_ports, keyframe_flags, probe  # noqa: E402

ROOM = "h264-room"
SDP_ROOM = "h264-sdp-room"
SECONDS = 8
FPS = 30
X264 = ["-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-g", "60", "-b:v", "1200k",
        "-pix_fmt", "yuv420p"]


class Ctx:
    pass


def sender_sprop(tmp):
    """The sprop-parameter-sets ffmpeg's x264 writes for the settings the
    lossy run uses (x264's headers depend on the settings only)."""
    sdp = os.path.join(tmp, "probe.sdp")
    port = free_ports(1)[0]
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc2=s=1280x720:r=30:d=0.1"] + X264 +
                   ["-flags:v", "+global_header", "-payload_type", "96", "-f", "rtp", "-sdp_file", sdp,
                    "rtp://127.0.0.1:%d?pkt_size=1200" % port], check=True, capture_output=True)
    m = re.search(r"sprop-parameter-sets=([^;\s]+)", open(sdp).read())
    assert m, open(sdp).read()
    return m.group(1)


def setup():
    c = Ctx()
    c.tmp = mktemp("rtph264")
    c.redis = Redis()
    c.redis.start()
    c.pmin = free_ports(1, step=16)[0]
    # The SDP room listens on fixed ports inside the range: the last two pairs.
    c.sdp_vport, c.sdp_aport = c.pmin + 12, c.pmin + 14
    c.sdp = os.path.join(c.tmp, "room.sdp")
    with open(c.sdp, "w") as f:
        f.write("v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=room\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
                "m=video %d RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n"
                "a=fmtp:96 packetization-mode=1; sprop-parameter-sets=%s; profile-level-id=42C01F\r\n"
                "m=audio %d RTP/AVP 97\r\na=rtpmap:97 opus/48000/2\r\n"
                % (c.sdp_vport, sender_sprop(c.tmp), c.sdp_aport))
    c.node = Edgerec(redis=c.redis, config={
        "room.%s.source" % ROOM: "rtp",
        "room.%s.args" % ROOM: "bind=127.0.0.1,video_codec=h264,video_pt=96,audio_pt=97",
        "room.%s.source" % SDP_ROOM: "rtp",
        "room.%s.args" % SDP_ROOM: "bind=127.0.0.1,sdp=%s" % c.sdp,
        "rtp.port_min": c.pmin,
        "rtp.port_max": c.pmin + 15,
        "recorder.first_frame_timeout": "30s",
    })
    c.node.start()
    c.nodes = [c.node]
    return c


def base(room):
    return "/api/webrtc/rooms/%s/recording" % room


def state(ctx, room, rid):
    r = ctx.node.request("GET", "%s/%s/status" % (base(room), rid))
    assert r.status == 200, r
    return r.json


def send(vport, aport, extra=()):
    """ffmpeg: SECONDS of 1280x720 30 fps x264 and Opus, paced in real time."""
    return subprocess.Popen(
        ["ffmpeg", "-v", "error", "-re",
         "-f", "lavfi", "-i", "testsrc2=s=1280x720:r=%d:d=%d" % (FPS, SECONDS),
         "-f", "lavfi", "-i", "sine=f=440:r=48000:d=%d" % SECONDS,
         "-map", "0:v"] + X264 + list(extra) +
        ["-payload_type", "96", "-ssrc", "1111", "-f", "rtp", "rtp://127.0.0.1:%d?pkt_size=1200" % vport,
         "-map", "1:a", "-c:a", "libopus", "-b:a", "64k", "-payload_type", "97", "-ssrc", "2222",
         "-f", "rtp", "rtp://127.0.0.1:%d?pkt_size=1200" % aport],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def record(ctx, room, fmt, sender_fn):
    """Starts a recording, runs the sender, stops after it ended, waits
    for processing. Returns (final state, sender wall seconds)."""
    r = ctx.node.request("POST", base(room) + "/start?recording_format=%s&quality=low" % fmt)
    assert r.status == 200, r
    rid = r.json["recording_id"]
    rtp = r.json["metadata"]["rtp"]
    assert rtp["video_codec"] == "h264", rtp
    t0 = time.monotonic()
    if rtp.get("from_sdp"):
        sender, cleanup = sender_fn(ctx.sdp_vport, ctx.sdp_aport)
    else:
        sender, cleanup = sender_fn(rtp["video_port"], rtp["audio_port"])
    try:
        wait_until(lambda: state(ctx, room, rid)["status"] == "recording", timeout=15, what="recording")
        st = state(ctx, room, rid)
        assert st["metadata"].get("video_resolution") == "1280x720", st["metadata"]
        sender.wait(SECONDS * 3)
        wall = time.monotonic() - t0
        err = sender.stderr.read()
        assert sender.returncode == 0, err
        time.sleep(0.5)  # the jitter buffer's last frames
        r = ctx.node.request("POST", "%s/%s/stop" % (base(room), rid))
        assert r.status == 200, r
    finally:
        if sender.poll() is None:
            sender.kill()
            sender.wait()
        cleanup()
    wait_until(lambda: state(ctx, room, rid)["status"] in ("completed", "failed"), timeout=30, what="processed")
    st = state(ctx, room, rid)
    assert st["status"] == "completed", st
    return st, wall


def decode_errors(path):
    r = subprocess.run(["ffmpeg", "-v", "error", "-i", path, "-f", "null", "-"], capture_output=True, text=True)
    return r.returncode, r.stderr.strip()


def duration(path):
    out = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format=duration,format_name", "-of", "json",
                          path], capture_output=True, text=True, check=True)
    f = json.loads(out.stdout)["format"]
    return float(f["duration"]), f["format_name"]


def test_webm_refused(ctx):
    r = ctx.node.request("POST", base(ROOM) + "/start?recording_format=webm")
    assert r.status == 400, r
    text = json.dumps(r.json)
    assert "WebM" in text and "H.264" in text and "mkv" in text, r
    print("webm refused: %s" % r.json.get("detail"))


def test_clean_mkv(ctx):
    def sender_fn(vp, ap):
        return send(vp, ap), lambda: None

    st, wall = record(ctx, ROOM, "mkv", sender_fn)
    path = os.path.join(st["local_path"], st["file_name"])
    assert path.endswith(".mkv"), path
    streams = probe(path)
    v = [s for s in streams if s["codec_name"] == "h264"]
    a = [s for s in streams if s["codec_name"] == "opus"]
    assert len(v) == 1 and len(a) == 1, streams
    assert (v[0]["width"], v[0]["height"]) == (1280, 720), v
    rc, errs = decode_errors(path)
    assert rc == 0 and errs == "", "decode errors: %s" % errs[:600]
    flags = keyframe_flags(path)
    assert flags and flags[0], "the first video packet is a keyframe"
    frames = int(v[0]["nb_read_frames"])
    dur, _ = duration(path)
    sent = SECONDS * FPS
    print("clean: %d frames in %.3f s (%.1f fps), %d sent, sender wall %.2f s, %d keyframes" %
          (frames, dur, frames / dur, sent, wall, sum(flags)))
    assert abs(frames - dur * FPS) <= 0.05 * dur * FPS, (frames, dur)
    assert abs(frames - sent) <= 0.05 * sent, (frames, sent)
    m = st["metadata"]
    # nothing lost on loopback (the one PLI is the start's, for the first IDR)
    rx = m.get("rtp_receive") or {}
    assert rx.get("packets_lost", 0) == 0 and rx.get("video_frames_dropped", 0) == 0, rx
    assert m.get("thumbnail"), m
    assert m.get("media", {}).get("video_frames_encoded") == frames, m.get("media")


def test_lossy_mp4_sprop(ctx):
    relay_port = free_ports(1)[0]
    holder = {}

    def sender_fn(vp, ap):
        # RTP through the lossy relay; the sender's RTCP goes to relay+1
        # where nobody listens (PLIs could not reach ffmpeg anyway).
        relay = Relay([(relay_port, ("127.0.0.1", vp))], loss=0.02, reorder=0.05, seed=5).start()
        holder["relay"] = relay
        return send(relay_port, ap, extra=["-flags:v", "+global_header"]), relay.stop

    r = ctx.node.request("POST", base(SDP_ROOM) + "/start?recording_format=webm")
    assert r.status == 400, r
    st, wall = record(ctx, SDP_ROOM, "mp4", sender_fn)
    counts = holder["relay"].counts
    path = os.path.join(st["local_path"], st["file_name"])
    assert path.endswith(".mp4"), path
    dur, fmt = duration(path)
    assert "mp4" in fmt, fmt
    streams = probe(path)
    v = [s for s in streams if s["codec_name"] == "h264"]
    a = [s for s in streams if s["codec_name"] == "opus"]
    assert len(v) == 1 and len(a) == 1, streams
    assert (v[0]["width"], v[0]["height"]) == (1280, 720), v
    rc, errs = decode_errors(path)
    frames = int(v[0]["nb_read_frames"])
    rx = st["metadata"].get("rtp_receive") or {}
    print("lossy: relay %s; recorded %d of %d frames in %.3f s (sender wall %.2f s); rtp_receive %s" %
          (counts, frames, SECONDS * FPS, dur, wall, rx))
    assert rc == 0 and errs == "", "decode errors: %s" % errs[:600]
    assert counts["lost"] > 0 and counts["reordered"] > 0, counts
    assert rx.get("packets_lost", 0) > 0 and rx.get("video_frames_dropped", 0) > 0, rx
    assert rx.get("keyframe_requests", 0) > 0, rx
    # The sender's IDRs come every 2 s: at least the first GOP and some of
    # the later ones survive; the duration is the sending time.
    assert 0 < frames < SECONDS * FPS, frames
    assert SECONDS - 1.5 <= dur <= SECONDS + 0.5, dur
    assert abs(st["duration_seconds"] - dur) <= 0.5, (st["duration_seconds"], dur)


def teardown(ctx):
    if ctx:
        ctx.node.stop()
        ctx.redis.stop()


if __name__ == "__main__":
    run_tests(globals(), setup=setup, teardown=teardown)
