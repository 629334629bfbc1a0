"""rtp_testlib: helpers shared by the RTP integration tests: free ports, real
senders (GStreamer rtpbin, ffmpeg -f rtp), the recording harness, and the
oracles (per-packet MD5s of the encoded streams, ffprobe counts, flash/beep
times).

The recorder is driven through the rtp source driver by the harness
$EDGEREC_BUILD_DIR/tests/itest_media_rtp ("record ARGS OUT MAX_SECONDS"),
which prints "key=value" counters.
"""

import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile


def fail(msg):
    print("FAIL: " + msg)
    sys.exit(1)


def check(cond, msg):
    if not cond:
        fail(msg)
    print("ok: " + msg)


def free_ports(n, step=2):
    """n even ports p with p+1 also free, spaced by 'step' within one block."""
    for _ in range(200):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("127.0.0.1", 0))
        base = s.getsockname()[1] & ~1
        s.close()
        if base + 2 * n * step > 65000 or base < 20000:
            continue
        ok = True
        held = []
        for p in range(base, base + n * step):
            t = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                t.bind(("127.0.0.1", p))
                held.append(t)
            except OSError:
                ok = False
                t.close()
                break
        for t in held:
            t.close()
        if ok:
            return [base + i * step for i in range(n)]
    fail("no free UDP ports")


def harness():
    build = os.environ.get("EDGEREC_BUILD_DIR", "")
    path = os.path.join(build, "tests", "itest_media_rtp")
    if not os.path.exists(path):
        fail("recording harness not built: " + path)
    return path


def start_record(args, out, max_seconds):
    return subprocess.Popen([harness(), "record", args, out, str(max_seconds)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish_record(proc, timeout=60):
    out, err = proc.communicate(timeout=timeout)
    if proc.returncode != 0:
        print(err)
        fail("recorder exited with %d" % proc.returncode)
    line = out.strip().splitlines()[-1] if out.strip() else ""
    stats = {}
    for kv in line.split():
        k, _, v = kv.partition("=")
        stats[k] = float(v) if "." in v else int(v)
    print("recorder: " + line)
    return stats


def packet_md5s(path, stream):
    """MD5 of every encoded packet of stream 'v' or 'a', in file order."""
    r = subprocess.run(["ffmpeg", "-v", "error", "-i", path, "-map", "0:" + stream, "-c", "copy",
                        "-f", "framemd5", "-"], capture_output=True, text=True)
    if r.returncode != 0:
        fail("ffmpeg framemd5 failed on %s: %s" % (path, r.stderr))
    rows = []
    for line in r.stdout.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        f = [x.strip() for x in line.split(",")]
        rows.append((int(f[2]), f[5]))   # pts, md5
    return [md5 for _, md5 in rows]


def keyframe_flags(path):
    r = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries",
                        "packet=flags", "-of", "csv=p=0", path], capture_output=True, text=True)
    return [("K" in line) for line in r.stdout.split()]


def probe(path):
    r = subprocess.run(["ffprobe", "-v", "error", "-count_frames", "-show_entries",
                        "stream=codec_name,width,height,nb_read_frames,start_time", "-of", "json", path],
                       capture_output=True, text=True)
    import json
    if r.returncode != 0:
        fail("ffprobe failed on %s: %s" % (path, r.stderr))
    return json.loads(r.stdout)["streams"]


def decode_errors(path):
    r = subprocess.run(["ffmpeg", "-v", "error", "-i", path, "-f", "null", "-"], capture_output=True, text=True)
    return r.stderr.strip()


def contiguous_at(rec, ref):
    """Index of 'ref' from which 'rec' appears as one contiguous run, or -1.
    Encoded packets can repeat (a steady sine), so every start is tried."""
    for i in range(len(ref) - len(rec) + 1):
        if ref[i:i + len(rec)] == rec:
            return i
    return -1


def subsequence_positions(rec, ref):
    """Index in 'ref' of each element of 'rec', matched in order; None if
    'rec' is not an in-order subsequence of 'ref'."""
    pos, out = 0, []
    for h in rec:
        try:
            pos = ref.index(h, pos)
        except ValueError:
            return None
        out.append(pos)
        pos += 1
    return out


def flash_beep_times(path):
    """(flash starts, beep starts) in seconds, from blackdetect/silencedetect."""
    r = subprocess.run(["ffmpeg", "-v", "info", "-i", path,
                        "-vf", "blackdetect=d=0.03:pic_th=0.9:pix_th=0.2",
                        "-af", "silencedetect=n=-30dB:d=0.05", "-f", "null", "-"],
                       capture_output=True, text=True)
    flashes = [float(x) for x in re.findall(r"black_end:([0-9.]+)", r.stderr)]
    beeps = [float(x) for x in re.findall(r"silence_end: ([0-9.]+)", r.stderr)]
    return flashes, beeps


def wait_sender(proc, timeout):
    """Waits for a sender to end. rtpbin sometimes never finishes EOS on its
    RTCP branches after the media has ended (and the reference file has been
    finalized): it is then terminated."""
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        print("sender still running after %ds: terminating it" % timeout)
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class TempDir:
    def __enter__(self):
        self.path = tempfile.mkdtemp(prefix="edgerec_rtp_")
        return self.path

    def __exit__(self, *a):
        shutil.rmtree(self.path, ignore_errors=True)


def gst_sender(ref_path, vport, aport, pli_port, artcp_port, seconds, key_dist=100000, pattern="ball",
               width=320, height=240):
    """GStreamer rtpbin sender: VP8 (only keyframes on PLI when key_dist is
    large) + Opus; the encoded streams are also written to 'ref_path'. RTP goes
    to vport/aport, SR to port+1, and rtpbin reads feedback on pli_port /
    artcp_port."""
    frames = int(seconds * 30)
    bufs = int(seconds * 50)
    pipeline = (
        "rtpbin name=rb "
        "videotestsrc is-live=true num-buffers={frames} pattern={pattern} ! "
        "video/x-raw,width={w},height={h},framerate=30/1 ! "
        "vp8enc deadline=1 cpu-used=8 target-bitrate=600000 keyframe-max-dist={kd} ! tee name=t "
        "t. ! queue ! rtpvp8pay pt=96 mtu=1200 picture-id-mode=15-bit ! rb.send_rtp_sink_0 "
        "t. ! queue max-size-buffers=0 max-size-time=0 max-size-bytes=0 ! webmmux name=mux ! filesink location={ref} "
        "rb.send_rtp_src_0 ! udpsink host=127.0.0.1 port={vp} "
        "rb.send_rtcp_src_0 ! udpsink host=127.0.0.1 port={vr} sync=false async=false "
        "udpsrc address=127.0.0.1 port={pp} ! rb.recv_rtcp_sink_0 "
        "audiotestsrc is-live=true wave=sine freq=440 num-buffers={bufs} samplesperbuffer=960 ! "
        "audio/x-raw,rate=48000,channels=2 ! opusenc bitrate=64000 frame-size=20 ! tee name=ta "
        "ta. ! queue ! rtpopuspay pt=97 ! rb.send_rtp_sink_1 "
        "ta. ! queue max-size-buffers=0 max-size-time=0 max-size-bytes=0 ! mux. "
        "rb.send_rtp_src_1 ! udpsink host=127.0.0.1 port={ap} "
        "rb.send_rtcp_src_1 ! udpsink host=127.0.0.1 port={ar} sync=false async=false "
        "udpsrc address=127.0.0.1 port={arp} ! rb.recv_rtcp_sink_1"
    ).format(frames=frames, bufs=bufs, pattern=pattern, w=width, h=height, kd=key_dist, ref=ref_path,
             vp=vport, vr=vport + 1, pp=pli_port, ap=aport, ar=aport + 1, arp=artcp_port)
    return subprocess.Popen(["gst-launch-1.0", "-q", "-e"] + pipeline.split(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def flash_starts(path):
    """Presentation times (s) of the white frames that start each flash."""
    r = subprocess.run(["ffprobe", "-v", "error", "-f", "lavfi", "-i", "movie=%s,signalstats" % path,
                        "-show_entries", "frame=pts_time:frame_tags=lavfi.signalstats.YAVG", "-of", "csv=p=0"],
                       capture_output=True, text=True, timeout=3600)
    starts, was = [], False
    for line in r.stdout.split():
        f = line.split(",")
        if len(f) < 2:
            continue
        white = float(f[1]) > 200
        if white and not was:
            starts.append(float(f[0]))
        was = white
    return starts


def beep_starts(path, by_samples=False):
    """Onsets (s) of the loud beeps. By default each onset is placed by the
    file's timestamps: the pts of the decoded audio frame that holds it plus
    its position in that frame, i.e. where a player presents it. With
    by_samples, by the count of samples before it instead (what the
    sender's audio clock says), which shows a skewed sample clock."""
    import array
    r = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "a:0", "-show_entries",
                        "frame=pts_time,nb_samples", "-of", "csv=p=0", path],
                       capture_output=True, text=True, timeout=3600)
    frames = []
    for line in r.stdout.split():
        f = line.split(",")
        if len(f) >= 2 and f[0] not in ("", "N/A"):
            frames.append((float(f[0]), int(f[1])))
    pcm = subprocess.run(["ffmpeg", "-v", "error", "-i", path, "-map", "0:a:0", "-ac", "1", "-f", "s16le", "-"],
                         capture_output=True, timeout=3600).stdout
    samples = array.array("h")
    samples.frombytes(pcm[: len(pcm) // 2 * 2])
    if not frames:
        return []
    starts = []          # sample index of each decoded frame's first sample
    n = 0
    for _, ns in frames:
        starts.append(n)
        n += ns
    import bisect
    win, loud, onsets = 48, False, []
    for i in range(0, len(samples) - win, win):
        peak = max(abs(x) for x in samples[i:i + win])
        if peak > 8000 and not loud:
            j = next(k for k in range(i, i + win) if abs(samples[k]) > 2000)
            if by_samples:
                onsets.append(frames[0][0] + j / 48000.0)
            else:
                f = max(0, bisect.bisect_right(starts, j) - 1)
                onsets.append(frames[f][0] + (j - starts[f]) / 48000.0)
        loud = peak > 8000 if not loud else peak > 2000
    return onsets


def av_offsets(flashes, beeps):
    """(flash time, beep - flash) for each flash that has a beep within 0.5 s."""
    out = []
    for f in flashes:
        near = min(beeps, key=lambda b: abs(b - f)) if beeps else None
        if near is not None and abs(near - f) < 0.5:
            out.append((f, near - f))
    return out


def send_av(host, vport, aport, seconds, audio_ppm, sr):
    """The harness's flash/beep sender (itest_media_rtp send): the test
    source as VP8/Opus RTP in real time, its audio clock 'audio_ppm' fast."""
    return subprocess.Popen([harness(), "send", host, str(vport), str(aport), str(seconds), str(audio_ppm),
                             "1" if sr else "0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
