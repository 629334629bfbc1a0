"""test_whip_h264: H.264 + Opus publishers over WHIP into mp4 and mkv.

The recording's format picks the video codec (webrtc_offer_choose): mp4
takes H.264 only, mkv H.264 when offered (else VP8), webm VP8 only.

- Debian's chromium (headless, fake camera and microphone, through
  tests/support/browser/whip.mjs with H.264 first in its codec
  preferences) publishes into mp4 and into mkv; each file decodes cleanly
  (ffmpeg -f null), holds h264 + opus (ffprobe; the mp4 after the remux),
  its video covers the publishing time, metadata.whip says h264.
- node-datachannel (libdatachannel, the WebRTC stack of OBS Studio's WHIP
  output; tests/support/obs_whip/obs_whip.mjs) publishes as OBS does: no
  trickle, an offer without candidates, H.264 from ffmpeg/libx264 (Annex-B,
  packetized by libdatachannel's H264RtpPacketizer) and Opus from
  ffmpeg/libopus; the mkv and the mp4 decode and hold h264 + opus.
- The answer: an H.264 offer to an mp4 recording is answered with the
  offer's H.264 payload type and fmtp (less sprop-parameter-sets); a
  VP8-only offer to mp4 gets 400 with a detail naming H.264.

EDGEREC_WHIP_RUNS=N repeats each publish N times (default 1)."""

import json
import os
import subprocess
import time

from edgerec_harness import npm_dir, run_tests
from test_whip_browser import (check_browser_recording, ffprobe, file_of, offer, post, teardown, whip_path)
from test_whip_browser import setup as whip_setup

WAIT_ROOM = "whipwait"


def setup():
    # A room whose source is `whip`: a REST start waits for its publisher.
    return whip_setup({"room.%s.source" % WAIT_ROOM: "whip"})

RUNS = int(os.environ.get("EDGEREC_WHIP_RUNS", "1"))


def test_answer_carries_h264(c):
    h264 = "a=rtpmap:102 H264/90000\r\na=fmtp:102 level-asymmetry-allowed=1;packetization-mode=1;" \
           "profile-level-id=42e01f;sprop-parameter-sets=Z0LAHtkA,aMuDyA=="
    r = post(c, offer(video=h264).replace("UDP/TLS/RTP/SAVPF 96", "UDP/TLS/RTP/SAVPF 102"), room="whip-h264-sdp",
             fmt="mp4")
    assert r.status == 201, r
    sdp = r.body.decode()
    assert "m=video %d UDP/TLS/RTP/SAVPF 102\r\n" % c.udp in sdp, sdp
    assert "a=rtpmap:102 H264/90000\r\n" in sdp, sdp
    assert "a=fmtp:102 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f\r\n" in sdp, sdp
    rid = r.headers["x-recording-id"]
    st = c.node.op("status", "whip-h264-sdp", rid).json
    assert st["metadata"]["whip"]["video_codec"] == "h264" and st["metadata"]["whip"]["video_pt"] == 102, st
    assert c.node.request("DELETE", r.headers["location"]).status == 200
    # VP8 only into mp4: refused, the detail names what mp4 takes.
    r = post(c, offer(), room="whip-h264-sdp", fmt="mp4")
    assert r.status == 400 and r.json["code"] == "unsupported_codec" and "H.264" in r.json["detail"], r


def test_browser_h264_into_mp4(c):
    for i in range(RUNS):
        rec, _ = check_browser_recording(c, "whip-h264-mp4-%d" % i, "mp4", codec="h264")
        assert rec["file_name"].endswith(".mp4"), rec
        print("run %d/%d ok" % (i + 1, RUNS), flush=True)


def test_browser_h264_into_mkv(c):
    for i in range(RUNS):
        rec, _ = check_browser_recording(c, "whip-h264-mkv-%d" % i, "mkv", codec="h264")
        assert rec["file_name"].endswith(".mkv"), rec
        print("run %d/%d ok" % (i + 1, RUNS), flush=True)


def obs_publish(c, room, fmt, seconds=6, rid=None):
    obs_dir = npm_dir("obs_whip")
    out = subprocess.run(["node", os.path.join(obs_dir, "obs_whip.mjs"), c.node.url + whip_path(room, fmt),
                          c.node.token("alice"), str(seconds)],
                         capture_output=True, text=True, timeout=120, cwd=obs_dir,
                         env=dict(os.environ, NODE_EXTRA_CA_CERTS=c.node.cert_path))
    lines = [l for l in out.stdout.splitlines() if l.startswith("{")]
    assert lines, (out.returncode, out.stdout[-2000:], out.stderr[-2000:])
    res = json.loads(lines[-1])
    print("node-datachannel: %s" % json.dumps(res), flush=True)
    assert out.returncode == 0 and res.get("status") == 201, (res, out.stderr[-2000:])
    # As OBS: the offer went without candidates (the server learnt the
    # publisher's address from its STUN checks).
    assert res["offer_candidates_sent"] == 0, res
    assert res["delete_status"] == 200, res
    if rid:
        assert res["recording_id"] == rid, (res, rid)
    rec = c.node.wait_status(room, res["recording_id"], ("completed", "failed"), timeout=60)
    assert rec["status"] == "completed", rec
    assert rec["metadata"]["whip"]["video_codec"] == "h264", rec["metadata"]
    path = file_of(rec)
    assert path.endswith("." + fmt), path
    dec = subprocess.run(["ffmpeg", "-v", "error", "-i", path, "-fps_mode", "passthrough", "-f", "null", "-"],
                         capture_output=True, text=True, timeout=120)
    errors = [l for l in dec.stderr.splitlines() if l.strip() and "non monotonically increasing dts" not in l]
    assert dec.returncode == 0 and not errors, dec.stderr[-2000:]
    info = ffprobe(path)
    assert sorted(s["codec_name"] for s in info["streams"]) == ["h264", "opus"], info["streams"]
    video = [s for s in info["streams"] if s["codec_type"] == "video"][0]
    audio = [s for s in info["streams"] if s["codec_type"] == "audio"][0]
    assert (int(video["width"]), int(video["height"])) == (res["width"], res["height"]), video
    frames = int(video["nb_read_frames"])
    duration = float(info["format"]["duration"])
    published = res["published_ms"] / 1000.0
    print("file: %.2f s, %d video frames, %s audio frames; sent %d frames in %.2f s" %
          (duration, frames, audio["nb_read_frames"], res["video_frames"], published), flush=True)
    # The publisher starts with a keyframe and sends one every second:
    # the file holds (nearly) all it sent, and covers the publishing time.
    assert frames >= 0.9 * res["video_frames"] - 30, (frames, res)
    assert published - 1.5 <= duration <= published + 3.0, (duration, published)
    assert int(audio["nb_read_frames"]) >= 40 * (published - 1.5), audio
    return rec


def test_obs_like_publisher_into_mkv(c):
    for i in range(RUNS):
        obs_publish(c, "whip-obs-mkv-%d" % i, "mkv")
        print("run %d/%d ok" % (i + 1, RUNS), flush=True)


def test_obs_like_publisher_into_mp4(c):
    for i in range(RUNS):
        obs_publish(c, "whip-obs-mp4-%d" % i, "mp4")
        print("run %d/%d ok" % (i + 1, RUNS), flush=True)


def test_whip_room_started_over_rest_waits_for_its_publisher(c):
    for i in range(RUNS):
        r = c.node.start_recording(WAIT_ROOM, fmt="mkv")
        assert r.status == 200, r
        rid = r.json["recording_id"]
        st = c.node.op("status", WAIT_ROOM, rid).json
        assert st["status"] == "pending", st
        assert st["metadata"]["whip"] == {"waiting": True, "video_codec": "h264"}, st["metadata"]
        # Still waiting after a while (nothing fails while no one publishes).
        time.sleep(2)
        assert c.node.op("status", WAIT_ROOM, rid).json["status"] == "pending"
        # A VP8-only publisher cannot give this mkv recording H.264: refused,
        # and the recording keeps waiting for the right one.
        bad = post(c, offer(), room=WAIT_ROOM, fmt="mkv")
        assert bad.status == 400 and bad.json["code"] == "unsupported_codec" and "H.264" in bad.json["detail"], bad
        rec = obs_publish(c, WAIT_ROOM, "mkv", rid=rid)
        whip = rec["metadata"]["whip"]
        assert whip["waited"] is True and whip["video_codec"] == "h264" and "session" in whip, whip
        print("run %d/%d ok" % (i + 1, RUNS), flush=True)
    # Cancelled over REST before anyone published (a pending recording
    # cannot be stopped, SPEC): cancelled like any pending recording.
    r = c.node.start_recording(WAIT_ROOM, fmt="webm")
    assert r.status == 200, r
    rid = r.json["recording_id"]
    assert c.node.op("status", WAIT_ROOM, rid).json["metadata"]["whip"]["video_codec"] == "vp8"
    s = c.node.op("cancel", WAIT_ROOM, rid)
    assert s.status == 200 and s.json["status"] == "cancelled", s
    # The publisher who comes after it starts a recording of its own.
    r = post(c, offer(), room=WAIT_ROOM, fmt="webm")
    assert r.status == 201 and r.headers["x-recording-id"] != rid, r
    assert c.node.request("DELETE", r.headers["location"]).status == 200


if __name__ == "__main__":
    run_tests(globals(), setup=setup, teardown=teardown)
