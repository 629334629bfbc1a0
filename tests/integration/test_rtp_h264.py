"""H.264 through an rtp room and the REST API: `edgerec serve`, a real
x264 sender (ffmpeg -c:v libx264 -f rtp, with Opus), the recording checked
with ffprobe/ffmpeg.

1. A webm start for an H.264 room is refused with 400 and a detail that
   says WebM cannot hold H.264.
2. Clean run, mkv, room args video_codec=h264 (SPS/PPS in-band, as x264
   repeats them before every IDR): the status turns to recording on the
   first IDR, metadata.rtp.video_codec is h264 and video_resolution the
   sender's 640x360 (23 macroblock rows cropped); after stop and
   processing the file is H.264 (the track's avcC read by ffprobe) + Opus,
   decodes with `ffmpeg -f null` without a single error, its first packet
   is a keyframe, its frame count is within 5 % of its video's span x 30
   fps and within 5 % of what was sent, no packet or frame was lost on the
   way in, a thumbnail was made.
3. Lossy run, mp4, a room described by an SDP file whose fmtp carries
   sprop-parameter-sets while the sender keeps SPS/PPS out of the stream
   (global header; an IDR every 0.5 s): the video goes through
   rtp_impair's relay (2 % loss, 5 % reordered). Incomplete access units
   are dropped, the next frames wait for an IDR (PLIs sent, counted in
   metadata.rtp_receive) and the recording comes back at later IDRs, each
   given the SDP's SPS/PPS; processing remuxes to MP4, which ffprobe reads as
   h264 + opus with the right duration and which decodes without errors.
4. Resolution change, mp4: one sender at 960x540, then another (new SSRC)
   at 640x360 into the same recording. The file keeps one track whose
   header says 960x540 (as VP8 files do), the 640x360 IDR carries its
   SPS/PPS, ffmpeg decodes every frame of both parts of the remuxed MP4
   without an error and sees both sizes, and the state says
   metadata.video_resolution_changes = 1 and video_resolution_last =
   640x360.
5. A sender that answers PLI: GStreamer rtpbin with openh264enc (an IDR
   only when asked: gop-size 1000) and rtph264pay (SPS/PPS in STAP-A before
   every IDR, aggregate-mode zero-latency), through the lossy relay; the
   room's PLIs go to rtpbin's RTCP port (pli_to). Every loss of a reference
   picture is answered by a new IDR: the file holds several keyframes and
   most of the frames, and decodes without errors.
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
GST_ROOM = "h264-gst-room"
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
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc2=s=640x360:r=30:d=0.1"] + X264 +
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
    c.pli_port = free_ports(1)[0]
    c.node = Edgerec(redis=c.redis, config={
        "room.%s.source" % GST_ROOM: "rtp",
        "room.%s.args" % GST_ROOM: "bind=127.0.0.1,video_codec=h264,video_pt=96,audio=0,pli_to=127.0.0.1:%d"
                                   % c.pli_port,
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


def send(vport, aport, extra=(), size="640x360", seconds=SECONDS, ssrc=1111):
    """ffmpeg: 'seconds' of 30 fps x264 and (aport) Opus, paced in real time."""
    audio = ["-map", "1:a", "-c:a", "libopus", "-b:a", "64k", "-payload_type", "97", "-ssrc", "2222",
             "-f", "rtp", "rtp://127.0.0.1:%d?pkt_size=1200" % aport] if aport else []
    return subprocess.Popen(
        ["ffmpeg", "-v", "error", "-re",
         "-f", "lavfi", "-i", "testsrc2=s=%s:r=%d:d=%d" % (size, FPS, seconds),
         "-f", "lavfi", "-i", "sine=f=440:r=48000:d=%d" % seconds,
         "-map", "0:v"] + X264 + list(extra) +
        ["-payload_type", "96", "-ssrc", str(ssrc), "-f", "rtp", "rtp://127.0.0.1:%d?pkt_size=1200" % vport] +
        audio,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def record(ctx, room, fmt, sender_fn, size="640x360"):
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
        sender, cleanup = sender_fn(rtp["video_port"], rtp.get("audio_port", 0))
    try:
        wait_until(lambda: state(ctx, room, rid)["status"] == "recording", timeout=15, what="recording")
        st = state(ctx, room, rid)
        assert st["metadata"].get("video_resolution") == size, st["metadata"]
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


def decode_errors(path, passthrough=False):
    """ffmpeg's exit code and error output decoding every frame of 'path'.
    'passthrough': frames keep their own timestamps (and the file's time
    base) instead of going to ffmpeg's 1/fps grid, so only frames that
    really share a timestamp collide."""
    keep = ["-vsync", "passthrough", "-enc_time_base", "-1"]
    r = subprocess.run(["ffmpeg", "-v", "error", "-i", path] + (keep if passthrough else []) +
                       ["-f", "null", "-"], capture_output=True, text=True)
    return r.returncode, r.stderr.strip()


def video_span(path):
    """Seconds from the first video frame to the end of the last (its
    timestamps, whatever the audio does)."""
    out = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries", "packet=pts_time",
                          "-of", "csv=p=0", path], capture_output=True, text=True, check=True)
    ts = sorted(float(x) for x in out.stdout.split())
    return ts[-1] - ts[0] + 1.0 / FPS


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
    assert (v[0]["width"], v[0]["height"]) == (640, 360), v
    rc, errs = decode_errors(path)
    assert rc == 0 and errs == "", "decode errors: %s" % errs[:600]
    flags = keyframe_flags(path)
    assert flags and flags[0], "the first video packet is a keyframe"
    frames = int(v[0]["nb_read_frames"])
    dur = video_span(path)
    sent = SECONDS * FPS
    print("clean: %d frames over %.3f s of video (%.1f fps), %d sent, sender wall %.2f s, %d keyframes, load %s" %
          (frames, dur, frames / dur, sent, wall, sum(flags), os.getloadavg()))
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
        # An IDR every half second: ffmpeg ignores PLI, so each recovery
        # waits for the next one.
        return send(relay_port, ap, extra=["-flags:v", "+global_header", "-g", "15"]), relay.stop

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
    assert (v[0]["width"], v[0]["height"]) == (640, 360), v
    rc, errs = decode_errors(path)
    frames = int(v[0]["nb_read_frames"])
    rx = st["metadata"].get("rtp_receive") or {}
    print("lossy: relay %s; recorded %d of %d frames in %.3f s (sender wall %.2f s); rtp_receive %s" %
          (counts, frames, SECONDS * FPS, dur, wall, rx))
    assert rc == 0 and errs == "", "decode errors: %s" % errs[:600]
    assert counts["lost"] > 0 and counts["reordered"] > 0, counts
    assert rx.get("packets_lost", 0) > 0 and rx.get("video_frames_dropped", 0) > 0, rx
    assert rx.get("keyframe_requests", 0) > 0, rx
    assert ctx.node.metric("edgerec_rtp_packets_lost_total") > 0
    assert ctx.node.metric("edgerec_rtp_video_frames_dropped_total") > 0
    # Frames were lost and the recording came back at later IDRs; the
    # duration is the sending time.
    keys = sum(keyframe_flags(path))
    print("lossy: %d keyframes in the file" % keys)
    assert 30 <= frames < SECONDS * FPS and keys >= 3, (frames, keys)
    assert SECONDS - 1.5 <= dur <= SECONDS + 0.5, dur
    assert abs(st["duration_seconds"] - dur) <= 0.5, (st["duration_seconds"], dur)


def test_resolution_change(ctx):
    class Both:
        """Two senders one after the other, seen by record() as one."""
        def __init__(self, vp):
            self.vp = vp
            self.stderr = self
            self.returncode = None
            self.p = send(vp, 0, size="960x540", seconds=3, ssrc=3333, extra=["-g", "15"])

        def read(self):
            return ""

        def wait(self, timeout):
            self.p.wait(timeout)
            if self.p.returncode == 0:
                # A new SSRC that comes within 300 ms of the old one's
                # last packet takes over on its 4th packet: the IDR it
                # cut is dropped and the next one (0.5 s later) taken.
                self.p = send(self.vp, 0, size="640x360", seconds=3, ssrc=4444, extra=["-g", "15"])
                self.p.wait(timeout)
            self.returncode = self.p.returncode

        def poll(self):
            return self.p.poll()

        def kill(self):
            self.p.kill()

    st, wall = record(ctx, ROOM, "mp4", lambda vp, ap: (Both(vp), lambda: None), size="960x540")
    path = os.path.join(st["local_path"], st["file_name"])
    m = st["metadata"]
    print("resolution change: metadata %s -> %s, %s change(s)" % (m.get("video_resolution"),
                                                                  m.get("video_resolution_last"),
                                                                  m.get("video_resolution_changes")))
    assert m.get("video_resolution") == "960x540", m
    assert m.get("video_resolution_changes") == 1 and m.get("video_resolution_last") == "640x360", m
    # The second sender's timeline is anchored at its arrival and slewed
    # (core/media/README.md, Timestamps): while it slews, one frame can
    # share a slot of ffmpeg's 1/fps grid. What is tested here is decoding,
    # so the frames keep their own timestamps.
    rc, errs = decode_errors(path, passthrough=True)
    assert rc == 0 and errs == "", "decode errors: %s" % errs[:600]
    r = subprocess.run(["ffmpeg", "-v", "info", "-i", path, "-vf", "showinfo", "-f", "null", "-"],
                       capture_output=True, text=True)
    sizes = re.findall(r" s:(\d+x\d+) ", r.stderr)
    big, small = sizes.count("960x540"), sizes.count("640x360")
    print("decoded %d frames at 960x540 and %d at 640x360" % (big, small))
    assert big >= 70 and small >= 70 and big + small == len(sizes), (big, small, len(sizes))
    assert sizes.index("640x360") == big, "the 640x360 part follows the 960x540 one"


def test_gstreamer_pli_recovery(ctx):
    relay_port = free_ports(1)[0]
    holder = {}
    frames_sent = SECONDS * FPS

    def sender_fn(vp, ap):
        relay = Relay([(relay_port, ("127.0.0.1", vp))], loss=0.02, reorder=0.05, seed=3).start()
        holder["relay"] = relay
        pipeline = (
            "rtpbin name=rb "
            "videotestsrc is-live=true num-buffers={n} pattern=ball ! "
            "video/x-raw,width=640,height=360,framerate={fps}/1 ! "
            "openh264enc gop-size=1000 complexity=low bitrate=800000 ! h264parse ! "
            "rtph264pay pt=96 mtu=1200 config-interval=-1 aggregate-mode=zero-latency ! rb.send_rtp_sink_0 "
            "rb.send_rtp_src_0 ! udpsink host=127.0.0.1 port={relay} "
            "rb.send_rtcp_src_0 ! udpsink host=127.0.0.1 port={rtcp} sync=false async=false "
            "udpsrc address=127.0.0.1 port={pli} ! rb.recv_rtcp_sink_0"
        ).format(n=frames_sent, fps=FPS, relay=relay_port, rtcp=vp + 1, pli=ctx.pli_port)
        p = subprocess.Popen(["gst-launch-1.0", "-q"] + pipeline.split(), stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True)
        return GstSender(p), relay.stop

    st, wall = record(ctx, GST_ROOM, "mkv", sender_fn)
    counts = holder["relay"].counts
    path = os.path.join(st["local_path"], st["file_name"])
    streams = probe(path)
    v = [s for s in streams if s["codec_name"] == "h264"]
    assert len(v) == 1 and (v[0]["width"], v[0]["height"]) == (640, 360), streams
    frames = int(v[0]["nb_read_frames"])
    keys = sum(keyframe_flags(path))
    rx = st["metadata"].get("rtp_receive") or {}
    print("pli recovery: relay %s; recorded %d of %d frames (%.0f %%), %d keyframes; rtp_receive %s" %
          (counts, frames, frames_sent, 100.0 * frames / frames_sent, keys, rx))
    rc, errs = decode_errors(path)
    assert rc == 0 and errs == "", "decode errors: %s" % errs[:600]
    assert counts["lost"] > 0, counts
    assert rx.get("keyframe_requests", 0) >= 2 and keys >= 2, (rx, keys)
    assert frames >= 0.5 * frames_sent, frames


class GstSender:
    """gst-launch as record() expects a sender: it ends after its buffers
    (rtpbin may hang in EOS on its RTCP branch: then it is stopped)."""
    def __init__(self, p):
        self.p = p
        self.stderr = p.stderr
        self.returncode = None

    def wait(self, timeout):
        try:
            self.p.wait(min(timeout, SECONDS + 5))
            self.returncode = self.p.returncode
        except subprocess.TimeoutExpired:
            self.p.terminate()
            self.p.wait(5)
            self.returncode = 0

    def poll(self):
        return self.p.poll()

    def kill(self):
        self.p.kill()


def teardown(ctx):
    if ctx:
        ctx.node.stop()
        ctx.redis.stop()


if __name__ == "__main__":
    run_tests(globals(), setup=setup, teardown=teardown)
