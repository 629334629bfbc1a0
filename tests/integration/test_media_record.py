"""test_media_record: `edgerec record` writes what the presets promise, as
ffprobe, ffmpeg and mkvinfo read it: codecs, size, frame rate, bitrate,
duration (pauses excluded), keyframes first and after resume, Cues, A/V
offset from the flash/beep markers, the file source, and Matroska/VP9."""
import os
import sys

sys.path.insert(0, os.path.join(os.environ.get("EDGEREC_SOURCE_DIR", "."), "tests/fixtures/media"))
from mediacheck import (check, finish, workdir, record, streams, packets, mkvinfo,  # noqa: E402
                        flash_times, beep_times, make_y4m, make_hard_y4m, make_wav, cluster_times)

PRESETS = {"low": (854, 480, 24, 1_000_000), "medium": (1280, 720, 30, 2_500_000),
           "high": (1920, 1080, 30, 5_000_000)}
tmp = workdir()


def check_clip(name, path, quality, fmt, expect_duration, want_codec):
    width, height, fps, vbps = PRESETS[quality]
    fmt_info, v, a = streams(path)
    check(v is not None and v["codec_name"] == want_codec, f"{name}: video codec {want_codec}")
    check(a is not None and a["codec_name"] == "opus", f"{name}: audio codec opus")
    check(v and (v["width"], v["height"]) == (width, height), f"{name}: {width}x{height}")
    check(v and v["r_frame_rate"] == f"{fps}/1", f"{name}: {fps} fps (got {v and v['r_frame_rate']})")
    check(a and int(a["sample_rate"]) == 48000 and int(a["channels"]) == 2, f"{name}: 48 kHz stereo")
    dur = float(fmt_info.get("duration", 0))
    check(abs(dur - expect_duration) <= 0.05, f"{name}: duration {dur:.3f} s, expected {expect_duration} ± 0.05")
    vp = packets(path, "v")
    check(len(vp) > 0 and vp[0][2], f"{name}: first video packet is a keyframe")
    check(abs(len(vp) - expect_duration * fps) <= 1, f"{name}: {len(vp)} video frames for {expect_duration} s at {fps} fps")
    keys = [t for t, _, k in vp if k]
    gaps = [b - a for a, b in zip(keys, keys[1:])] + ([expect_duration - keys[-1]] if keys else [])
    check(keys and max(gaps) <= 2.0 + 1e-6, f"{name}: keyframe interval <= 2 s (max {max(gaps) if gaps else 0:.2f})")
    # Bitrate from the video packets, first second (buffer fill) excluded.
    steady = [s for t, s, _ in vp if t >= 1.0]
    if steady:
        rate = sum(steady) * 8 / (expect_duration - 1.0)
        check(0.7 * vbps <= rate <= 1.3 * vbps, f"{name}: video bitrate {rate / 1e6:.2f} Mb/s near {vbps / 1e6} Mb/s")
    info = mkvinfo(path)
    check("Cue point" in info and "Cue track" in info, f"{name}: mkvinfo finds Cues")
    check("Duration" in info, f"{name}: mkvinfo finds Duration")
    ct = cluster_times(path)
    steps = [b - a for a, b in zip(ct, ct[1:])] + ([expect_duration - ct[-1]] if ct else [])
    check(ct and max(steps) <= 1.05, f"{name}: clusters of about 1 s at most ({len(ct)} clusters, longest {max(steps) if steps else 0:.3f} s)")
    return vp


# 1. Each preset (fast mode): codec, size, rate, bitrate, duration, keyframes, cues.
for q, seconds in (("low", 4), ("medium", 4), ("high", 3)):
    out = os.path.join(tmp, f"{q}.webm")
    rc, so, se = record("--source", "test", "--quality", q, "--format", "webm",
                        "--duration", str(seconds), "--fast", "--output", out)
    if check(rc == 0, f"{q}: record exit 0 ({se.strip()[-200:]})"):
        check(so.strip().startswith("{") and '"duration_seconds"' in so, f"{q}: one-line JSON summary")
        check_clip(q, out, q, "webm", float(seconds), "vp8")
        d = mkvinfo(out)
        check("Document type: webm" in d, f"{q}: DocType webm")
        check("Codec-inherent delay" in d, f"{q}: Opus CodecDelay present")
        check("Seek pre-roll" in d or "SeekPreRoll" in d, f"{q}: Opus SeekPreRoll present")

# 2. Matroska and "mp4" (VP9 + Opus in Matroska).
for fmt, codec in (("mkv", "vp8"), ("mp4", "vp9")):
    out = os.path.join(tmp, f"clip.{fmt}")
    rc, so, se = record("--source", "test", "--quality", "low", "--format", fmt,
                        "--duration", "3", "--fast", "--output", out)
    if check(rc == 0, f"{fmt}: record exit 0 ({se.strip()[-200:]})"):
        check_clip(fmt, out, "low", fmt, 3.0, codec)
        check("Document type: matroska" in mkvinfo(out), f"{fmt}: DocType matroska")

# 3. Pause/resume: 6 s of source with 2..4 paused -> 4 s, keyframe on resume.
out = os.path.join(tmp, "paused.webm")
rc, so, se = record("--source", "test", "--quality", "low", "--duration", "6", "--fast",
                    "--pause-at", "2", "--resume-at", "4", "--output", out)
if check(rc == 0, f"pause: record exit 0 ({se.strip()[-200:]})"):
    vp = check_clip("pause", out, "low", "webm", 4.0, "vp8")
    after = [p for p in vp if p[0] >= 2.0 - 1e-6]
    check(after and abs(after[0][0] - 2.0) < 0.05 and after[0][2],
          f"pause: first frame after resume (t={after[0][0] if after else None}) is a keyframe")
    ts = [t for t, _, _ in vp]
    gaps = [b - a for a, b in zip(ts, ts[1:])]
    check(max(gaps) < 0.05, f"pause: no gap in video timestamps (max step {max(gaps):.3f} s)")
    ap = packets(out, "a")
    at = [t for t, _, _ in ap]
    agaps = [b - a for a, b in zip(at, at[1:])]
    check(agaps and max(agaps) < 0.05, f"pause: no gap in audio timestamps (max step {max(agaps):.3f} s)")

# 4. A/V offset: flashes (white frames) against beeps (loud 1 kHz), <= 20 ms.
out = os.path.join(tmp, "av.webm")
rc, so, se = record("--source", "test", "--quality", "low", "--duration", "5", "--fast",
                    "--output", out)
if check(rc == 0, "av: record exit 0"):
    flashes, beeps = flash_times(out), beep_times(out)
    check(len(flashes) == 5, f"av: 5 flashes found by luma ({flashes})")
    check(len(beeps) == 5, f"av: 5 beeps found by audio energy ({[round(b, 4) for b in beeps]})")
    if flashes and beeps:
        offsets = [min((b - f for b in beeps), key=abs) for f in flashes]
        worst = max(abs(o) for o in offsets)
        check(worst <= 0.020, f"av: A/V offset {worst * 1000:.1f} ms <= 20 ms ({[round(o * 1000, 1) for o in offsets]})")

# The same measurement must see a skew when there is one: the test source
# can start each beep late on purpose.
out = os.path.join(tmp, "skew.webm")
rc, so, se = record("--source", "test", "--args", "skew=40", "--quality", "low", "--duration", "3",
                    "--fast", "--output", out)
if check(rc == 0, "skew: record exit 0"):
    flashes, beeps = flash_times(out), beep_times(out)
    offsets = [min((b - f for b in beeps), key=abs) for f in flashes] if beeps else []
    check(offsets and all(abs(o - 0.040) <= 0.005 for o in offsets),
          f"skew: a 40 ms late beep is measured as such ({[round(o * 1000, 1) for o in offsets]})")

# 4b. Passthrough: the test source as a sender of VP8/Opus packets (its own
# keyframes only every 10 s). The recording copies the packets; after a
# resume it asks the sender for a keyframe and starts video on it.
out = os.path.join(tmp, "passthrough.webm")
rc, so, se = record("--source", "test", "--args", "encoded=1,gop=10", "--quality", "low",
                    "--duration", "6", "--pause-at", "2", "--resume-at", "4", "--fast", "--output", out)
if check(rc == 0, f"passthrough: record exit 0 ({se.strip()[-200:]})"):
    f, v, a = streams(out)
    check(v and v["codec_name"] == "vp8" and a and a["codec_name"] == "opus", "passthrough: vp8 + opus")
    check(abs(float(f.get("duration", 0)) - 4.0) <= 0.05, f"passthrough: duration {f.get('duration')} ≈ 4 s")
    vp = packets(out, "v")
    keys = [t for t, _, k in vp if k]
    check(vp and vp[0][2], "passthrough: starts with a keyframe")
    after = [p for p in vp if p[0] >= 2.0 - 1e-6]
    check(after and after[0][2] and after[0][0] < 2.1,
          f"passthrough: first frame after resume ({after[0][0] if after else None}) is a keyframe, on request")
    check(len(keys) == 2, f"passthrough: keyframes only at start and resume ({keys})")
    flashes, beeps = flash_times(out), beep_times(out)
    offsets = [min((b - f for b in beeps), key=abs) for f in flashes] if beeps else []
    check(len(flashes) >= 3 and offsets and max(abs(o) for o in offsets) <= 0.020,
          f"passthrough: A/V offset <= 20 ms ({[round(o * 1000, 1) for o in offsets]})")

# Joining a running sender mid-GOP: the recording asks for a keyframe and
# starts on it instead of waiting for the sender's next one (10 s away).
out = os.path.join(tmp, "joined.webm")
rc, so, se = record("--source", "test", "--args", "encoded=1,gop=10,join=0.5", "--quality", "low",
                    "--duration", "3", "--fast", "--output", out)
if check(rc == 0, "join: record exit 0"):
    vp = packets(out, "v")
    check(vp and vp[0][2] and vp[0][0] < 0.1, f"join: starts on a requested keyframe at {vp[0][0] if vp else None} s")
    check(sum(1 for p in vp if p[2]) == 1 and len(vp) >= 58, f"join: one keyframe, {len(vp)} frames")

# Late video (real time): the sender's video from 1.5 s arrives 3 s late.
# The muxer writes audio on without it; late packets are dropped (never
# written with false timestamps) and video restarts on a requested keyframe.
out = os.path.join(tmp, "late.webm")
rc, so, se = record("--source", "test", "--args", "encoded=1,gop=10,hold=1.5", "--quality", "low",
                    "--duration", "6", "--output", out)
if check(rc == 0, "late video: record exit 0"):
    vp = packets(out, "v")
    ts = [t for t, _, _ in vp]
    check(all(b > a for a, b in zip(ts, ts[1:])), "late video: video timestamps strictly increase (none clamped)")
    grid = all(abs(t * 24 - round(t * 24)) < 0.05 for t in ts)
    check(grid, "late video: every video timestamp is the sender's (on the 1/24 s grid)")
    gaps = [(a, b, i + 1) for i, (a, b) in enumerate(zip(ts, ts[1:])) if b - a > 0.05]
    check(len(gaps) == 1 and vp[gaps[0][2]][2], f"late video: one gap, video resumes on a keyframe ({[(a, b) for a, b, _ in gaps]})")
    at = [t for t, _, _ in packets(out, "a")]
    check(at and max(b - a for a, b in zip(at, at[1:])) < 0.05 and at[-1] > 5.9, "late video: audio continuous to the end")
    flashes, beeps = flash_times(out), beep_times(out)
    offsets = [min((b - f for b in beeps), key=abs) for f in flashes] if beeps else []
    check(offsets and max(abs(o) for o in offsets) <= 0.020, f"late video: A/V offset still <= 20 ms ({[round(o * 1000, 1) for o in offsets]})")

# 5. File source: Y4M + WAV in, their size and length out.
y4m, wav = os.path.join(tmp, "in.y4m"), os.path.join(tmp, "in.wav")
make_y4m(y4m, 320, 240, 25, 2)
make_wav(wav, 2)
out = os.path.join(tmp, "file.webm")
rc, so, se = record("--source", "file", "--video", y4m, "--audio", wav, "--quality", "low",
                    "--fast", "--output", out)
if check(rc == 0, f"file: record exit 0 ({se.strip()[-200:]})"):
    f, v, a = streams(out)
    check(v and (v["width"], v["height"]) == (320, 240), "file: keeps the Y4M size 320x240")
    check(v and v["r_frame_rate"] == "25/1", "file: keeps 25 fps")
    check(abs(float(f.get("duration", 0)) - 2.0) <= 0.05, f"file: duration {f.get('duration')} ≈ 2 s")
    check(len(packets(out, "v")) == 50, "file: all 50 frames")

# 5b. Honest bitrate on hard content (detail, motion, grain): the whole
# file's video bitrate within 10 % of the medium preset's 2.5 Mb/s.
hard = os.path.join(tmp, "hard.y4m")
make_hard_y4m(hard, 1280, 720, 30, 4)
out = os.path.join(tmp, "hard.webm")
rc, so, se = record("--source", "file", "--video", hard, "--quality", "medium", "--fast", "--output", out)
os.unlink(hard)
if check(rc == 0, f"hard: record exit 0 ({se.strip()[-200:]})"):
    vp = packets(out, "v")
    rate = sum(s for _, s, _ in vp) * 8 / (len(vp) / 30.0) if vp else 0
    check(len(vp) == 120, f"hard: all 120 frames ({len(vp)})")
    check(abs(rate / 2_500_000 - 1) <= 0.10, f"hard: video bitrate {rate / 1e6:.3f} Mb/s within 10 % of 2.5 Mb/s")

# 6. Real time (not --fast): a 2 s clip takes about 2 s and drops nothing.
out = os.path.join(tmp, "rt.webm")
rc, so, se = record("--source", "test", "--quality", "low", "--duration", "2", "--output", out)
if check(rc == 0, "realtime: record exit 0"):
    import json
    summary = json.loads(so.strip().splitlines()[-1])
    check(1.9 <= summary["wall_seconds"] <= 3.0, f"realtime: paced ({summary['wall_seconds']:.2f} s wall for 2 s)")
    check(summary["video_frames_dropped"] == 0, "realtime: no frame dropped at low quality")
    f, v, a = streams(out)
    check(abs(float(f["duration"]) - 2.0) <= 0.05, f"realtime: duration {f['duration']}")

finish()
