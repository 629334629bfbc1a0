"""test_media_badinput: `edgerec record` answers bad input with a clear message
on stderr and a non-zero exit status, never a crash (a signal) and never a
silent success."""
import os
import sys

sys.path.insert(0, os.path.join(os.environ.get("EDGEREC_SOURCE_DIR", "."), "tests/fixtures/media"))
from mediacheck import check, finish, workdir, record, make_y4m, make_wav  # noqa: E402

tmp = workdir()
out = os.path.join(tmp, "out.webm")
y4m, wav = os.path.join(tmp, "in.y4m"), os.path.join(tmp, "in.wav")
make_y4m(y4m, 160, 120, 10, 2)
make_wav(wav, 1)
frame = 160 * 120 * 3 // 2
data = open(y4m, "rb").read()
cut = os.path.join(tmp, "cut.y4m")
header_len = data.index(b"\n") + 1
with open(cut, "wb") as f:  # three whole frames, then half of the fourth
    f.write(data[: header_len + 3 * (6 + frame) + 6 + frame // 2])
notwav = os.path.join(tmp, "not.wav")
with open(notwav, "wb") as f:
    f.write(b"RIFF\x00\x00\x00\x00WAVEjunk")
f8 = os.path.join(tmp, "u8.wav")
import subprocess
subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "sine", "-t", "0.2", "-c:a", "pcm_u8", f8], check=True)
afile = os.path.join(tmp, "plainfile")
open(afile, "w").write("x")

T = ["--source", "test", "--duration", "1", "--fast"]
cases = [
    ("unknown quality", T + ["--quality", "insane", "--output", out], "unknown quality"),
    ("unknown format", T + ["--format", "avi", "--output", out], "unknown format"),
    ("ultra refused", T + ["--quality", "ultra", "--output", out], "cannot be encoded in real time"),
    ("missing directory", T + ["--output", os.path.join(tmp, "no/such/dir/x.webm")], "output directory"),
    ("parent is a file", T + ["--output", os.path.join(afile, "x.webm")], "not a directory"),
    ("output is a directory", T + ["--output", tmp], "cannot create"),
    ("unknown source", ["--source", "camera9", "--duration", "1", "--output", out], "unknown source"),
    ("no output", ["--source", "test", "--duration", "1"], "required"),
    ("test without duration", ["--source", "test", "--output", out], "needs --duration"),
    ("bad duration", ["--source", "test", "--duration", "soon", "--output", out], "bad --duration"),
    ("negative duration", ["--source", "test", "--duration", "-3", "--output", out], "bad --duration"),
    ("unknown option", T + ["--output", out, "--colour", "red"], "unknown"),
    ("pause without resume", T + ["--output", out, "--pause-at", "0.5"], "--resume-at"),
    ("resume before pause", T + ["--output", out, "--pause-at", "0.5", "--resume-at", "0.2"], "must increase"),
    ("truncated Y4M", ["--source", "file", "--video", cut, "--fast", "--quality", "low", "--output", out], "truncated Y4M"),
    ("missing Y4M", ["--source", "file", "--video", os.path.join(tmp, "none.y4m"), "--output", out], "cannot open video"),
    ("WAV as Y4M", ["--source", "file", "--video", wav, "--output", out], "not a YUV4MPEG2"),
    ("broken WAV", ["--source", "file", "--audio", notwav, "--output", out], "no data chunk"),
    ("8-bit WAV", ["--source", "file", "--audio", f8, "--output", out], "16-bit PCM"),
    ("file source without files", ["--source", "file", "--output", out], "video=PATH"),
    ("mp4 from a VP8 sender", ["--source", "test", "--args", "encoded=1", "--format", "mp4", "--duration", "1",
                               "--fast", "--output", out], "records VP9"),
    ("bad skew", ["--source", "test", "--args", "skew=900", "--duration", "1", "--output", out], "skew"),
    ("probe missing file", ["--probe", os.path.join(tmp, "none.webm")], "cannot open"),
    ("probe non-Matroska", ["--probe", wav], "not a Matroska"),
]
for name, args, needle in cases:
    rc, so, se = record(*args)
    check(rc > 0, f"{name}: non-zero exit without a signal (exit {rc})")
    check(needle in se, f"{name}: stderr says '{needle}' ({se.strip().splitlines()[-1] if se.strip() else ''})")
    check(not so.strip().startswith("{"), f"{name}: no success summary")

finish()
