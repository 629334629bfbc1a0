"""RTP ingest from a real GStreamer rtpbin sender (VP8 + Opus, sends SR, answers PLI).

1. Clean, joining mid-stream: the sender makes no periodic keyframes and is
   already running when the recorder starts, so the recording can only begin
   with a keyframe that our PLI asked for. Checks: first frame a keyframe,
   PLI->keyframe latency, every recorded VP8 packet identical to the
   sender's own encoded frames and contiguous with them to the end, Opus
   packets identical too, Sender Reports seen, clean decode.
2. The same through the product's command, `edgerec record --source rtp`
   (the media pipeline in passthrough), paused from 1 s to 2 s: the file
   holds the sender's VP8 packets in two contiguous runs, each starting on a
   keyframe; the second keyframe exists only because the resume asked the
   source for one and our PLI reached the sender. Opus packets are the
   sender's too.
3. Through the seeded loss/reorder/duplicate relay: the recording holds only
   the sender's frames, in order, and every gap is followed by a keyframe
   (nothing decodes from a broken reference); the recorder asked for
   keyframes again and got them.
"""

import os
import subprocess
import time

from rtp_impair import Relay
from rtp_testlib import (TempDir, check, contiguous_at, wait_sender, subsequence_positions, decode_errors, fail, finish_record, free_ports, gst_sender,
                         keyframe_flags, packet_md5s, probe, start_record, subsequence_positions)


def clean_mid_stream(tmp):
    vport, aport, pli, artcp = free_ports(4)
    ref = os.path.join(tmp, "ref.webm")
    out = os.path.join(tmp, "rec.webm")
    sender = gst_sender(ref, vport, aport, pli, artcp, seconds=5)
    time.sleep(1.2)
    rec = start_record("video_port=%d,audio_port=%d,video_pt=96,audio_pt=97,bind=127.0.0.1,"
                       "pli_to=127.0.0.1:%d,audio_rtcp_to=127.0.0.1:%d,idle_eof_ms=1200" % (vport, aport, pli, artcp),
                       out, 15)
    wait_sender(sender, 10)
    st = finish_record(rec)

    check(st["first_video_key"] == 1, "first recorded video frame is a keyframe")
    latency = st["first_keyframe_ms"] - st["first_packet_ms"]
    check(0 <= latency < 300, "PLI -> keyframe latency %.0f ms (< 300 ms)" % latency)
    check(st["keyframe_requests"] >= 1, "a PLI was sent")
    check(st["video_sr"] >= 1 and st["audio_sr"] >= 1, "sender reports received on both streams")

    ref_v, rec_v = packet_md5s(ref, "v"), packet_md5s(out, "v")
    print("reference %d video packets, recorded %d" % (len(ref_v), len(rec_v)))
    start = contiguous_at(rec_v, ref_v)
    check(len(rec_v) > 0 and start >= 0, "recorded VP8 packets are the sender's, contiguous")
    check(start >= 20, "the recording joined mid-stream (at sender frame %d)" % start)
    check(len(rec_v) >= len(ref_v) - start - 2, "no frames missing up to the end (%d of %d)" %
          (len(rec_v), len(ref_v) - start))
    flags = keyframe_flags(out)
    check(flags and flags[0], "the file's first video packet is flagged key")
    ref_a, rec_a = packet_md5s(ref, "a"), packet_md5s(out, "a")
    check(len(rec_a) > 0 and contiguous_at(rec_a, ref_a) >= 0,
          "recorded Opus packets are the sender's, contiguous (%d)" % len(rec_a))

    streams = probe(out)
    v = [s for s in streams if s["codec_name"] == "vp8"]
    a = [s for s in streams if s["codec_name"] == "opus"]
    check(len(v) == 1 and len(a) == 1, "one VP8 and one Opus track")
    check(v[0]["width"] == 320 and v[0]["height"] == 240, "track size from the keyframe header (320x240)")
    check(int(a[0]["nb_read_frames"]) >= 150, "Opus frames recorded (%s)" % a[0]["nb_read_frames"])
    errs = decode_errors(out)
    check(errs == "", "decodes without errors" + ("" if not errs else ": " + errs[:200]))


def through_edgerec(tmp):
    vport, aport, pli, artcp = free_ports(4)
    ref = os.path.join(tmp, "ref3.webm")
    out = os.path.join(tmp, "rec3.webm")
    sender = gst_sender(ref, vport, aport, pli, artcp, seconds=4)
    time.sleep(1.0)
    r = subprocess.run([os.environ["EDGEREC_BIN"], "record", "--source", "rtp", "--args",
                        "video_port=%d,audio_port=%d,video_pt=96,audio_pt=97,bind=127.0.0.1,pli_to=127.0.0.1:%d,"
                        "audio_rtcp_to=127.0.0.1:%d,idle_eof_ms=1200" % (vport, aport, pli, artcp),
                        "--pause-at", "1", "--resume-at", "2", "--output", out],
                       capture_output=True, text=True, timeout=30)
    wait_sender(sender, 10)
    print("edgerec record: " + r.stdout.strip())
    check(r.returncode == 0, "edgerec record --source rtp succeeded" + ("" if r.returncode == 0 else ": " + r.stderr[-300:]))
    ref_v, rec_v = packet_md5s(ref, "v"), packet_md5s(out, "v")
    flags, ref_flags = keyframe_flags(out), keyframe_flags(ref)
    pos = subsequence_positions(rec_v, ref_v)
    check(pos is not None and len(rec_v) > 30, "recorded VP8 packets are the sender's, in order (%d)" % len(rec_v))
    check(pos[0] > 0 and flags[0], "joined mid-stream on a keyframe")
    gaps = [i for i in range(1, len(pos)) if pos[i] != pos[i - 1] + 1]
    check(len(gaps) == 1, "one gap: the pause (%d)" % len(gaps))
    g = gaps[0]
    check(flags[g] and 20 <= pos[g] - pos[g - 1] <= 45, "resumed on a keyframe after ~1 s (%d frames)" % (pos[g] - pos[g - 1]))
    check(sum(ref_flags[1:]) >= 1 and ref_flags[pos[g]], "that keyframe was made on request (no periodic keyframes)")
    check(pos[-1] >= len(ref_v) - 3, "no frames missing up to the end")
    ref_a, rec_a = packet_md5s(ref, "a"), packet_md5s(out, "a")
    check(len(rec_a) > 80 and subsequence_positions(rec_a, ref_a) is not None,
          "Opus packets are the sender's, in order, from the first keyframe on (%d)" % len(rec_a))
    errs = decode_errors(out)
    check(errs == "", "decodes without errors" + ("" if not errs else ": " + errs[:200]))


def impaired(tmp):
    vport, aport, pli, artcp, relay_v = free_ports(5)
    ref = os.path.join(tmp, "ref2.webm")
    out = os.path.join(tmp, "rec2.webm")
    relay = Relay([(relay_v, ("127.0.0.1", vport))], loss=0.03, reorder=0.05, dup=0.02, seed=7).start()
    rec = start_record("video_port=%d,audio_port=%d,video_pt=96,audio_pt=97,bind=127.0.0.1,latency_ms=100,"
                       "pli_to=127.0.0.1:%d,audio_rtcp_to=127.0.0.1:%d,idle_eof_ms=1200" % (vport, aport, pli, artcp),
                       out, 20)
    time.sleep(0.3)
    # the sender's video goes to the relay; its SR still goes to vport+1
    sender = gst_sender(ref, relay_v, aport, pli, artcp, seconds=6)
    wait_sender(sender, 10)
    time.sleep(0.3)
    relay.stop()
    st = finish_record(rec)
    print("relay: %s" % relay.counts)
    check(relay.counts["lost"] > 0 and relay.counts["reordered"] > 0 and relay.counts["dup"] > 0,
          "the relay lost, reordered and duplicated packets")
    check(st["video_lost"] > 0, "the recorder declared losses (%d)" % st["video_lost"])
    check(st["video_dup"] > 0 or st["video_late"] > 0, "duplicates/late packets were dropped")

    ref_v, rec_v = packet_md5s(ref, "v"), packet_md5s(out, "v")
    flags = keyframe_flags(out)
    pos = subsequence_positions(rec_v, ref_v)
    check(pos is not None, "every recorded VP8 packet is one of the sender's, in order")
    check(len(rec_v) >= len(ref_v) // 3, "most frames recorded despite loss (%d of %d)" % (len(rec_v), len(ref_v)))
    gaps = [i for i in range(1, len(pos)) if pos[i] != pos[i - 1] + 1]
    bad = [i for i in gaps if not flags[i]]
    check(not bad, "every gap resumes on a keyframe (%d gaps)" % len(gaps))
    check(flags[0], "first frame is a keyframe")
    check(st["keyframes"] >= 2 and st["keyframe_requests"] >= 2,
          "recovered through PLI: %d keyframes, %d requests" % (st["keyframes"], st["keyframe_requests"]))


def main():
    with TempDir() as tmp:
        clean_mid_stream(tmp)
        through_edgerec(tmp)
        impaired(tmp)
    print("all ok")


if __name__ == "__main__":
    main()
