"""test_media_crash: a recording killed with SIGKILL leaves a file that ffprobe
reads with all but the last second of media; `edgerec record --repair` then
finalizes it in place (Duration, Cues, seekable), as ffprobe/ffmpeg/mkvinfo
see it. Also: repair refuses a file with nothing usable."""
import os
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.environ.get("EDGEREC_SOURCE_DIR", "."), "tests/fixtures/media"))
from mediacheck import BIN, check, finish, workdir, record, packets, mkvinfo, ffprobe_json  # noqa: E402

tmp = workdir()

for fmt in ("webm", "mkv"):
    out = os.path.join(tmp, f"killed.{fmt}")
    t0 = time.monotonic()
    proc = subprocess.Popen([BIN, "record", "--source", "test", "--quality", "low", "--format", fmt,
                             "--duration", "60", "--output", out],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    # Kill at an arbitrary point, not on a second boundary.
    time.sleep(3.37)
    proc.send_signal(signal.SIGKILL)
    elapsed = time.monotonic() - t0
    proc.wait()
    check(proc.returncode == -signal.SIGKILL, f"{fmt}: recorder was killed with SIGKILL")
    vp = packets(out, "v")
    ap = packets(out, "a")
    last = max([p[0] for p in vp] + [0])
    check(len(vp) > 0 and vp[0][2], f"{fmt}: killed file readable by ffprobe, starts with a keyframe")
    # The recorder needs a moment to start; what it had captured is at most
    # 'elapsed', and at most 1 s of that may be missing.
    check(last >= elapsed - 1.0 - 0.3, f"{fmt}: killed file holds {last:.2f} s of video of ~{elapsed:.2f} s recorded (<= 1 s missing)")
    check(len(ap) > 0 and max(p[0] for p in ap) >= elapsed - 1.3, f"{fmt}: killed file holds audio up to {max([p[0] for p in ap] + [0]):.2f} s")
    dec = subprocess.run(["ffmpeg", "-v", "error", "-i", out, "-f", "null", "-"],
                         capture_output=True, text=True, timeout=60)
    check(dec.returncode == 0, f"{fmt}: killed file decodes with ffmpeg ({dec.stderr.strip()[:200]})")

    rc, so, se = record("--repair", out)
    check(rc == 0, f"{fmt}: repair exit 0 ({se.strip()[-200:]})")
    fmt_info = ffprobe_json(out, "-show_format")["format"]
    dur = float(fmt_info.get("duration", 0))
    vp2 = packets(out, "v")
    last2 = max([p[0] for p in vp2] + [0])
    check(len(vp2) == len(vp), f"{fmt}: repair kept every frame ({len(vp2)} of {len(vp)})")
    check(abs(dur - (last2 + 1 / 24)) <= 0.06, f"{fmt}: repaired Duration {dur:.3f} s matches the media ({last2:.3f} s + 1 frame)")
    info = mkvinfo(out)
    check("+ Duration:" in info, f"{fmt}: mkvinfo finds Duration after repair")
    check("Cue point" in info, f"{fmt}: mkvinfo finds Cues after repair")
    check(("Document type: webm" if fmt == "webm" else "Document type: matroska") in info,
          f"{fmt}: repair kept the DocType")
    seek = subprocess.run(["ffmpeg", "-v", "error", "-ss", f"{last2 / 2:.2f}", "-i", out, "-frames:v", "1",
                           "-f", "null", "-"], capture_output=True, text=True, timeout=60)
    check(seek.returncode == 0, f"{fmt}: ffmpeg seeks into the repaired file")
    check(not os.path.exists(out + ".repair"), f"{fmt}: no temp file left")

# SIGTERM is a clean stop: the summary is printed and the file is finalized.
out = os.path.join(tmp, "terminated.webm")
proc = subprocess.Popen([BIN, "record", "--source", "test", "--quality", "low", "--duration", "60",
                         "--output", out], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
time.sleep(2.2)
proc.send_signal(signal.SIGTERM)
so, _ = proc.communicate(timeout=30)
check(proc.returncode == 0 and '"interrupted":true' in so, f"SIGTERM: clean exit with a summary (exit {proc.returncode})")
dur = float(ffprobe_json(out, "-show_format")["format"].get("duration", 0))
check(1.5 <= dur <= 2.6, f"SIGTERM: finalized with Duration {dur:.3f} s")
check("Cue point" in mkvinfo(out), "SIGTERM: Cues written")

# Nothing usable: a file cut inside its headers, and a file that is not Matroska.
good = os.path.join(tmp, "killed.webm")
for name, data in (("headers.webm", open(good, "rb").read()[:60]), ("text.webm", b"hello world\n" * 10)):
    path = os.path.join(tmp, name)
    with open(path, "wb") as f:
        f.write(data)
    rc, so, se = record("--repair", path)
    check(rc != 0 and rc > 0 and "repair failed" in se, f"repair {name}: clear error, exit {rc} ({se.strip()[:120]})")
    check(open(path, "rb").read() == data, f"repair {name}: original left untouched")

finish()
