"""RTP ingest through the REST API: `edgerec serve` with a room whose source is
rtp, a real GStreamer rtpbin sender (VP8 640x480 + Opus, answers PLI) pointed
at the ports the server allocated.

1. mp4 for the rtp room is refused with 400 and a detail that says why.
2. A start before anyone sends replies at once (pending) with metadata.rtp:
   ports from the configured range, RTCP ports, payload types. After 2 s of
   silence the state and a source_stalled event say the source stalled.
   The sender then starts (mid-stream, keyframes only on PLI); the status
   becomes recording, metadata.video_resolution is the sender's and
   metadata.time_to_first_keyframe_ms is set. Stop, wait for completed and
   check the file with ffprobe: VP8 + Opus, the Matroska header's
   PixelWidth/Height are the sender's 640x480 (not the preset's), the first
   video packet is a keyframe, duration about what was sent. The ports are
   free again after the stop (a second start gets a pair, and the UDP ports
   can be bound).
3. Only audio arrives: no keyframe ever comes; the recording stays pending
   and fails after 10 s of audio with an error that says so.
4. Recordings nobody sends to are cancelled: their ports are released too.
"""

import json
import os
import socket
import struct
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "support"))

from edgerec_harness import Edgerec, Redis, mktemp, run_tests, wait_until, ws_next  # noqa: E402
from rtp_testlib import free_ports, gst_sender, keyframe_flags, probe  # noqa: E402

ROOM = "sfu-room"
BASE = "/api/webrtc/rooms/%s/recording" % ROOM


class Ctx:
    pass


def ebml_tracks_video_size(path):
    """PixelWidth/PixelHeight of the first video TrackEntry, read straight
    from the file's EBML (not from decoded frames)."""
    data = open(path, "rb").read()

    def vint(pos, keep_marker):
        b = data[pos]
        n = 1
        while n <= 8 and not (b & (0x80 >> (n - 1))):
            n += 1
        v = b if keep_marker else b & ((0x80 >> (n - 1)) - 1)
        for i in range(1, n):
            v = (v << 8) | data[pos + i]
        return v, n

    def walk(start, end, want):
        pos = start
        while pos < end:
            eid, n = vint(pos, True)
            size, m = vint(pos + n, False)
            body = pos + n + m
            if size == (1 << (7 * m)) - 1:  # unknown size: the rest
                size = end - body
            yield eid, body, min(body + size, end)
            pos = body + size

    for eid, b, e in walk(0, len(data), None):
        if eid != 0x18538067:  # Segment
            continue
        for eid2, b2, e2 in walk(b, e, None):
            if eid2 != 0x1654AE6B:  # Tracks
                continue
            for eid3, b3, e3 in walk(b2, e2, None):  # TrackEntry
                for eid4, b4, e4 in walk(b3, e3, None):
                    if eid4 != 0xE0:  # Video
                        continue
                    w = h = None
                    for eid5, b5, e5 in walk(b4, e4, None):
                        val = int.from_bytes(data[b5:e5], "big")
                        if eid5 == 0xB0:
                            w = val
                        elif eid5 == 0xBA:
                            h = val
                    return w, h
    return None, None


def setup():
    c = Ctx()
    c.redis = Redis()
    c.redis.start()
    # A small range of its own: 8 pairs.
    c.pmin = free_ports(1, step=16)[0]
    c.fb = free_ports(2, step=2)
    c.node = Edgerec(redis=c.redis, config={
        "room.%s.source" % ROOM: "rtp",
        "room.%s.args" % ROOM: "bind=127.0.0.1,video_pt=96,audio_pt=97,pli_to=127.0.0.1:%d,"
                               "audio_rtcp_to=127.0.0.1:%d" % (c.fb[0], c.fb[1]),
        "rtp.port_min": c.pmin,
        "rtp.port_max": c.pmin + 15,
        "recorder.first_frame_timeout": "30s",
    })
    c.node.start()
    c.nodes = [c.node]
    c.tmp = mktemp("rtpsrv")
    return c


def state(ctx, rid):
    r = ctx.node.request("GET", "%s/%s/status" % (BASE, rid))
    assert r.status == 200, r
    return r.json


def test_mp4_refused(ctx):
    r = ctx.node.request("POST", BASE + "/start?recording_format=mp4")
    assert r.status == 400, r
    text = json.dumps(r.json)
    assert "webm" in text and "mp4" in text, r


def test_record_through_api(ctx):
    ws = ctx.node.ws(ROOM)
    t0 = time.monotonic()
    r = ctx.node.request("POST", BASE + "/start?recording_format=webm&quality=low")
    assert r.status == 200, r
    assert time.monotonic() - t0 < 5, "start waits for the SFU"
    rec = r.json
    rid = rec["recording_id"]
    assert rec["status"] == "pending", rec
    rtp = rec["metadata"]["rtp"]
    vp, ap = rtp["video_port"], rtp["audio_port"]
    assert ctx.pmin <= vp < ctx.pmin + 16 and ctx.pmin <= ap < ctx.pmin + 16, rtp
    assert vp % 2 == 0 and ap % 2 == 0 and vp != ap, rtp
    assert rtp["video_rtcp_port"] == vp + 1 and rtp["audio_rtcp_port"] == ap + 1, rtp
    assert rtp["video_pt"] == 96 and rtp["audio_pt"] == 97, rtp
    print("ports: video %d audio %d" % (vp, ap))

    # Nobody sends yet: the source stalls, the recording stays.
    ev = ws_next(ws, "source_stalled", timeout=8)
    assert ev["data"]["recording_id"] == rid, ev
    st = state(ctx, rid)
    assert st["status"] == "pending" and st["metadata"].get("source_stalled") is True, st

    # Our feedback ports are the sender's RTCP receive ports (pli_to in the room args).
    ref = os.path.join(ctx.tmp, "ref.webm")
    sender = gst_sender(ref, vp, ap, ctx.fb[0], ctx.fb[1], seconds=6, width=640, height=480)
    try:
        wait_until(lambda: state(ctx, rid)["status"] == "recording", timeout=8, what="recording")
        ev = ws_next(ws, "source_resumed", timeout=5)
        st = state(ctx, rid)
        ttfk = st["metadata"].get("time_to_first_keyframe_ms")
        assert isinstance(ttfk, (int, float)) and ttfk > 0, st
        assert st["metadata"].get("source_stalled") is False, st
        assert st["metadata"].get("video_resolution") == "640x480", st
        print("time to first keyframe %.0f ms (from start; the sender began later)" % ttfk)
        time.sleep(3)
        m = ctx.node.request("GET", "/metrics")
        assert m.status == 200, m
        text = m.body.decode()
        assert "edgerec_rtp_first_keyframe_seconds_count 1" in text, text[-600:]
        assert "edgerec_rtp_source_stalls_total 1" in text, text[-600:]
        # a well-behaved sender: the clock mapping alone keeps every track
        # strictly increasing, the muxer never has to move a frame
        assert "\nedgerec_mux_timestamp_fixes_total 0\n" in text, text[-600:]
        r = ctx.node.request("POST", "%s/%s/stop" % (BASE, rid))
        assert r.status == 200, r
    finally:
        sender.kill()
        sender.wait()
    ws.close()
    wait_until(lambda: state(ctx, rid)["status"] in ("completed", "failed"), timeout=20, what="processed")
    st = state(ctx, rid)
    assert st["status"] == "completed", st
    path = os.path.join(st["local_path"], st["file_name"])
    streams = probe(path)
    v = [s for s in streams if s["codec_name"] == "vp8"]
    a = [s for s in streams if s["codec_name"] == "opus"]
    assert len(v) == 1 and len(a) == 1, streams
    assert (v[0]["width"], v[0]["height"]) == (640, 480), v
    assert ebml_tracks_video_size(path) == (640, 480), ebml_tracks_video_size(path)
    flags = keyframe_flags(path)
    assert flags and flags[0], "first video packet is a keyframe"
    assert int(v[0]["nb_read_frames"]) >= 60, v
    out = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "json", path],
                         capture_output=True, text=True, check=True)
    dur = float(json.loads(out.stdout)["format"]["duration"])
    assert 2.0 <= dur <= 6.5, dur
    assert 2.0 <= st["duration_seconds"] <= 6.5, st
    print("completed: %.2f s, %s video frames, %s audio frames" % (dur, v[0]["nb_read_frames"],
                                                                   a[0]["nb_read_frames"]))
    for p in (vp, vp + 1, ap, ap + 1):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("127.0.0.1", p))
        s.close()


def test_audio_only_sender(ctx):
    # Only Opus arrives: no keyframe will come. The recording stays pending,
    # then fails with a reason that says so (not "finalize failed"), its
    # ports released.
    r = ctx.node.request("POST", BASE + "/start?recording_format=webm&quality=low")
    assert r.status == 200, r
    rid = r.json["recording_id"]
    ap = r.json["metadata"]["rtp"]["audio_port"]
    sender = subprocess.Popen(
        ["gst-launch-1.0", "-q", "audiotestsrc", "is-live=true", "wave=sine", "num-buffers=800",
         "samplesperbuffer=960", "!", "audio/x-raw,rate=48000,channels=2", "!", "opusenc", "frame-size=20",
         "!", "rtpopuspay", "pt=97", "!", "udpsink", "host=127.0.0.1", "port=%d" % ap],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(3)
        assert state(ctx, rid)["status"] == "pending", state(ctx, rid)
        wait_until(lambda: state(ctx, rid)["status"] != "pending", timeout=14, what="the end of waiting")
    finally:
        sender.kill()
        sender.wait()
    st = state(ctx, rid)
    assert st["status"] == "failed", st
    assert "no video keyframe" in (st["error"] or ""), st
    print("audio-only: %s" % st["error"])


def test_cancel_releases_ports(ctx):
    # The range holds 8 pairs, 4 recordings' worth: start and cancel more
    # than that; it only works if every cancel gave its ports back.
    for i in range(5):
        r = ctx.node.request("POST", BASE + "/start?recording_format=mkv&quality=low")
        assert r.status == 200, (i, r)
        rid = r.json["recording_id"]
        r = ctx.node.request("DELETE", "%s/%s" % (BASE, rid))
        assert r.status == 200, (i, r)
        assert r.json["status"] == "cancelled", r


def teardown(ctx):
    if ctx:
        ctx.node.stop()
        ctx.redis.stop()


if __name__ == "__main__":
    run_tests(globals(), setup=setup, teardown=teardown)
