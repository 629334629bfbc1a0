"""A/V sync over a recording whose sender's audio clock is skewed.

A real-time RTP sender (the harness's `send`: the test source as VP8 + Opus,
a white frame and a 1 kHz beep at the same instant every second) runs its
audio sample clock off its video clock, as capture cards and phones do
(100-300 ppm), here exaggerated: 1500 ppm fast without Sender Reports (a
relay such as Janus forwards none) and 1500 ppm slow with them. Both are
recorded at once through the rtp source into WebM. The flashes and beeps of
each file are found by decoding it; a beep is placed where a player presents
it (its audio frame's timestamp plus its position in the frame).

Checks: the A/V offset stays within 20 ms at every second of the recording
(start, middle, end); and the skew really is in the media: counting audio
samples instead of using timestamps, the beeps drift against the flashes by
about the skew (90 ms over 60 s), so a recorder that stamped audio by its
sample count (the RTP clock alone) would fail the first check.

Why 60 s at 1500 ppm rather than 2 min at 1000 ppm: the drift that has to
be absorbed is of the same size (90 ms against 120 ms, both far over the
20 ms allowed), at half the wall time; 1500 ppm is below the clock mapping's
slew limit (MEDIA_RTP_CLOCK_SLEW_PPM, 2000), which is what a skew has to stay
under to be followed. scripts/bench avsync runs 30 min at a real skew.
"""

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "support"))

from rtp_testlib import (TempDir, av_offsets, beep_starts, check, decode_errors, fail,  # noqa: E402
                         finish_record, flash_starts, free_ports, send_av, start_record)

RUNS = [  # (name, audio ppm, sender reports, seconds)
    ("no SR, audio 1500 ppm fast", 1500, False, 60),
    ("SR, audio 1500 ppm slow", -1500, True, 40),
]


def main():
    with TempDir() as tmp:
        ports = free_ports(4)
        procs = []
        for i, (name, ppm, sr, secs) in enumerate(RUNS):
            vp, ap = ports[2 * i], ports[2 * i + 1]
            out = os.path.join(tmp, "av%d.webm" % i)
            rec = start_record("bind=127.0.0.1,video_port=%d,audio_port=%d,idle_eof_ms=2000" % (vp, ap),
                               out, secs + 40)
            procs.append((name, ppm, secs, out, rec, send_av("127.0.0.1", vp, ap, secs, ppm, sr)))
        for name, ppm, secs, out, rec, snd in procs:
            so, se = snd.communicate(timeout=secs + 60)
            if snd.returncode != 0:
                fail("%s: sender failed: %s" % (name, se[-400:]))
            print("%s: sender %s" % (name, so.strip()))
            finish_record(rec, timeout=60)
        for name, ppm, secs, out, rec, snd in procs:
            flashes = flash_starts(out)
            pts = av_offsets(flashes, beep_starts(out))
            by_count = av_offsets(flashes, beep_starts(out, by_samples=True))
            check(len(pts) >= secs - 3, "%s: %d flashes with their beeps in %d s" % (name, len(pts), secs))
            if not pts:
                continue
            mid = len(pts) // 2
            print("%s: A/V offset (beep - flash) at %.0f s %.1f ms, at %.0f s %.1f ms, at %.0f s %.1f ms"
                  % (name, pts[0][0], pts[0][1] * 1e3, pts[mid][0], pts[mid][1] * 1e3, pts[-1][0],
                     pts[-1][1] * 1e3))
            worst = max(pts, key=lambda x: abs(x[1]))
            check(abs(worst[1]) <= 0.020, "%s: A/V offset within 20 ms over the whole recording (worst %.1f ms "
                  "at %.0f s)" % (name, worst[1] * 1e3, worst[0]))
            drift = by_count[-1][1] - by_count[0][1]
            expect = ppm * 1e-6 * (by_count[-1][0] - by_count[0][0])
            check(abs(drift - expect) <= 0.4 * abs(expect),
                  "%s: by sample count the beeps drift %.1f ms against the flashes (the skew: %.1f ms)"
                  % (name, drift * 1e3, expect * 1e3))
            errs = decode_errors(out)
            check(errs == "", "%s: decodes without errors%s" % (name, "" if not errs else ": " + errs[:200]))
    print("all ok")


if __name__ == "__main__":
    main()
