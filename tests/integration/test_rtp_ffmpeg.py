"""RTP ingest from a real ffmpeg `-f rtp` sender (sends SR, ignores PLI), configured from ffmpeg's own SDP file.

The sender replays a pre-encoded file (VP8 with a keyframe every 2 s, Opus)
whose picture flashes white and whose sound beeps at the same instants every
second. Its video goes through a relay that drops one packet about 1.5 s in.
Checks:
- the recording starts on the sender's first keyframe; after the loss it
  drops frames until the sender's next GOP keyframe (the PLIs it keeps
  sending are ignored by ffmpeg) and resumes exactly there; every recorded
  VP8 and Opus packet is the sender's, in order;
- Sender Reports arrived on both streams;
- A/V offset: every flash in the recording has its beep within 40 ms;
- it decodes without errors.
A second run sends no RTCP at all (as Janus rtp_forward does): the streams
are then anchored to arrival time, and the flash/beep offset must still be
within 40 ms.
"""

import os
import subprocess
import time

from rtp_impair import Relay
from rtp_testlib import (TempDir, check, contiguous_at, subsequence_positions, decode_errors, fail, finish_record, flash_beep_times,
                         free_ports, keyframe_flags, packet_md5s, start_record, wait_sender)

SECONDS = 6


def make_reference(path):
    flash = "lt(mod(t\\,1)\\,0.1)"
    tone = "if({f}\\,0.5*sin(2*PI*1000*t)\\,0)".format(f=flash)
    r = subprocess.run(
        ["ffmpeg", "-v", "error", "-y",
         "-f", "lavfi", "-i", "color=c=black:s=320x240:r=30:d=%d,drawbox=c=white:t=fill:enable='%s'" % (SECONDS, flash),
         "-f", "lavfi", "-i", "aevalsrc='%s|%s':s=48000:d=%d" % (tone, tone, SECONDS),
         "-c:v", "libvpx", "-deadline", "realtime", "-cpu-used", "8", "-b:v", "300k", "-g", "60",
         "-auto-alt-ref", "0", "-c:a", "libopus", "-b:a", "64k", path],
        capture_output=True, text=True)
    if r.returncode != 0:
        fail("cannot make the reference file: " + r.stderr)


def main():
    with TempDir() as tmp:
        ref = os.path.join(tmp, "ref.webm")
        out = os.path.join(tmp, "rec.webm")
        sdp = os.path.join(tmp, "recv.sdp")
        make_reference(ref)
        vport, aport, relay_v = free_ports(3)
        # the receiver's SDP, as ffmpeg's -sdp_file writes it
        with open(sdp, "w") as f:
            f.write("v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=No Name\r\nt=0 0\r\n"
                    "m=video %d RTP/AVP 96\r\nc=IN IP4 127.0.0.1\r\na=rtpmap:96 VP8/90000\r\n"
                    "m=audio %d RTP/AVP 97\r\nc=IN IP4 127.0.0.1\r\na=rtpmap:97 opus/48000/2\r\n"
                    "a=fmtp:97 sprop-stereo=1\r\n" % (vport, aport))
        relay = Relay([(relay_v, ("127.0.0.1", vport), {"drop": [45]}),
                       (relay_v + 1, ("127.0.0.1", vport + 1), {"clean": True})]).start()
        rec = start_record("sdp=%s,bind=127.0.0.1,idle_eof_ms=1200" % sdp, out, 20)
        time.sleep(0.3)
        sender = subprocess.Popen(
            ["ffmpeg", "-v", "error", "-re", "-i", ref,
             "-map", "0:v", "-c", "copy", "-payload_type", "96", "-ssrc", "1111", "-f", "rtp",
             "rtp://127.0.0.1:%d?pkt_size=1200" % relay_v,
             "-map", "0:a", "-c", "copy", "-payload_type", "97", "-ssrc", "2222", "-f", "rtp",
             "rtp://127.0.0.1:%d?pkt_size=1200" % aport],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        wait_sender(sender, SECONDS + 5)
        time.sleep(0.2)
        relay.stop()
        st = finish_record(rec)

        ref_v, rec_v = packet_md5s(ref, "v"), packet_md5s(out, "v")
        ref_flags, flags = keyframe_flags(ref), keyframe_flags(out)
        pos = subsequence_positions(rec_v, ref_v)
        check(pos is not None, "every recorded VP8 packet is the sender's, in order")
        print("reference %d video packets, recorded %d" % (len(ref_v), len(rec_v)))
        check(pos[0] == 0 and flags[0], "the recording starts on the sender's first keyframe")
        gaps = [i for i in range(1, len(pos)) if pos[i] != pos[i - 1] + 1]
        check(len(gaps) == 1, "the dropped packet made one gap (%d)" % len(gaps))
        g = gaps[0]
        check(ref_flags[pos[g]] and not any(ref_flags[pos[g - 1] + 1:pos[g]]),
              "resumed on the sender's next GOP keyframe (frame %d after %d)" % (pos[g], pos[g - 1]))
        check(st["keyframe_requests"] >= 2, "the recorder kept asking (%d PLIs)" % st["keyframe_requests"])
        check(pos[-1] >= len(ref_v) - 3, "recorded up to the end")
        check(st["first_video_key"] == 1, "first recorded video frame is a keyframe")
        check(st["video_sr"] >= 1 and st["audio_sr"] >= 1, "sender reports received on both streams")
        ref_a, rec_a = packet_md5s(ref, "a"), packet_md5s(out, "a")
        check(contiguous_at(rec_a, ref_a) >= 0 and len(rec_a) >= 250,
              "recorded Opus packets are the sender's, contiguous (%d)" % len(rec_a))

        flashes, beeps = flash_beep_times(out)
        print("flashes %s" % flashes)
        print("beeps   %s" % beeps)
        # The last black_end is the end of the stream, not a flash.
        flashes = flashes[:-1]
        pairs = []
        for f in flashes:
            near = min(beeps, key=lambda b: abs(b - f)) if beeps else None
            if near is not None and abs(near - f) < 0.5:
                pairs.append(near - f)
        print("flash -> beep offsets (ms): %s" % [round(x * 1000, 1) for x in pairs])
        check(len(pairs) >= 3, "flash/beep pairs found (%d)" % len(pairs))
        worst = max(abs(p) for p in pairs)
        check(worst <= 0.040, "A/V offset within 40 ms (worst %.1f ms)" % (worst * 1000))
        errs = decode_errors(out)
        check(errs == "", "decodes without errors" + ("" if not errs else ": " + errs[:200]))

        no_sender_reports(tmp, ref)
    print("all ok")


def av_offsets(path):
    flashes, beeps = flash_beep_times(path)
    pairs = []
    for f in flashes[:-1]:  # the last black_end is the end of the stream
        near = min(beeps, key=lambda b: abs(b - f)) if beeps else None
        if near is not None and abs(near - f) < 0.5:
            pairs.append(near - f)
    return pairs


def no_sender_reports(tmp, ref):
    out = os.path.join(tmp, "rec_nosr.webm")
    vport, aport, relay_v, relay_a = free_ports(4)
    # RTP only: ffmpeg's RTCP goes to the relay's port+1, where nobody listens
    relay = Relay([(relay_v, ("127.0.0.1", vport), {"clean": True}),
                   (relay_a, ("127.0.0.1", aport), {"clean": True})]).start()
    rec = start_record("video_port=%d,audio_port=%d,video_pt=96,audio_pt=97,bind=127.0.0.1,idle_eof_ms=1200" %
                       (vport, aport), out, 20)
    time.sleep(0.3)
    sender = subprocess.Popen(
        ["ffmpeg", "-v", "error", "-re", "-i", ref,
         "-map", "0:v", "-c", "copy", "-payload_type", "96", "-f", "rtp", "rtp://127.0.0.1:%d?pkt_size=1200" % relay_v,
         "-map", "0:a", "-c", "copy", "-payload_type", "97", "-f", "rtp", "rtp://127.0.0.1:%d?pkt_size=1200" % relay_a],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wait_sender(sender, SECONDS + 5)
    time.sleep(0.2)
    relay.stop()
    st = finish_record(rec)
    check(st["video_sr"] == 0 and st["audio_sr"] == 0, "no sender reports reached the recorder")
    pairs = av_offsets(out)
    print("flash -> beep offsets without SR (ms): %s" % [round(x * 1000, 1) for x in pairs])
    check(len(pairs) >= 3, "flash/beep pairs found (%d)" % len(pairs))
    worst = max(abs(p) for p in pairs)
    check(worst <= 0.040, "A/V offset from arrival anchoring within 40 ms (worst %.1f ms)" % (worst * 1000))


if __name__ == "__main__":
    main()
