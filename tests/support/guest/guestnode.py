"""guestnode: `edgerec serve` running in a qemu guest (guest.py) with the
guest's vivid camera and snd-aloop loopback card, driven from the host
exactly like edgerec_harness.Edgerec (same request/ws/wait_status API).

  GuestNode(config={...})   an Edgerec whose process runs in a Guest: the
                            node's folder (config, log, recordings) is the
                            guest's writable share, at the same path on both
                            sides, so the host ffprobes recordings in place;
                            the state dir (embedded Redis, its unix socket,
                            the TLS key) stays on the guest's tmpfs. HTTPS
                            reaches the host at 127.0.0.1 through qemu's
                            forward; .guest runs commands in the guest.
  start_guest_node(name, config)  setup() for run_tests: skips (77) when the
                            guest cannot run here, else a Ctx with .node,
                            .nodes and .guest, booted and healthy.
  stop_guest_node(ctx)      teardown(): the node exits 0, the guest powers off.

Signals for the loopback card (the test plays them into hw:Loopback,0,N
with aplay; the node captures hw:Loopback,1,N):

  write_tone_wav(path, seconds, freq)          a steady sine
  write_click_wav(path, seconds, freq, every)  a 20 ms burst every 'every'
                                               seconds of samples, silence
                                               between (a clock in the audio)

and what the tests read back from a file (ffmpeg/ffprobe only):

  decode_audio(path)        (first pts, mono s16 samples at 48 kHz)
  tone_frequency(samples)   zero-crossing estimate of the main frequency
  burst_onsets(samples)     sample indexes where bursts start
  video_pts(path)           presentation times of the video packets
"""
import array
import contextlib
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, ".."))
import guest  # noqa: E402
from edgerec_harness import Ctx, Edgerec, wait_until  # noqa: E402

GUEST_HTTPS = 8443
RATE = 48000
# Under TCG a start, a stop and the serve process itself take many times
# what they take on the host.
START_TIMEOUT = 180


class GuestNode(Edgerec):
    def __init__(self, config=None, name="guest", vivid=guest.VIVID_OPTIONS, **kw):
        # Recordings are written on the guest's own RAM (as a box writes
        # its local disk), not through the 9p share, whose every write is
        # a round trip through qemu to the loaded host; fetch() copies a
        # finished one to the share for the host to read.
        super().__init__(redis=None, config=config, plain_http=False, name=name,
                         state_dir="/run/edgerec-state-" + name, storage="/run/edgerec-recordings-" + name, **kw)
        self.bin = os.path.abspath(self.bin)
        self.guest = guest.Guest(share=self.dir, forward=[GUEST_HTTPS], vivid=vivid)
        self.pid = None
        self.stdout_path = os.path.join(self.dir, "edgerec.stdout")

    def config_text(self):
        self._https_port = GUEST_HTTPS
        self._http_port = 0
        text = super().config_text()
        return text.replace('listen_https = "127.0.0.1:%d"' % GUEST_HTTPS,
                            'listen_https = "0.0.0.0:%d"' % GUEST_HTTPS)

    @property
    def cert_path(self):
        return os.path.join(self.dir, "cert.pem")

    def boot(self):
        if self.guest.proc is None or self.guest.proc.poll() is not None:
            self.guest.start()
        return self.guest

    def start(self, timeout=START_TIMEOUT, wait_healthy=True):
        g = self.boot()
        cfg = os.path.join(self.dir, "edgerec.conf")
        with open(cfg, "w") as f:
            f.write(self.config_text())
        try:
            self._log_start = os.path.getsize(self.log_path)
        except OSError:
            self._log_start = 0
        with open(self.stdout_path, "w"):
            pass
        self.pid = g.spawn("EDGEREC_LOG=${EDGEREC_LOG:-info} exec %s serve --config %s >%s 2>>%s" % (
            self.bin, cfg, self.stdout_path, self.log_path))
        deadline = time.monotonic() + timeout
        while True:
            with open(self.stdout_path, errors="replace") as f:
                self.lines = f.read().splitlines()
            if any("ready" in l for l in self.lines):
                break
            if not self.alive():
                raise AssertionError("edgerec exited during start in the guest:\n%s" % self.log_tail())
            if time.monotonic() > deadline:
                raise AssertionError("edgerec did not print 'ready' in %.0fs:\n%s" % (timeout, self.log_tail()))
            time.sleep(0.2)
        for l in self.lines:
            if "token for user" in l:
                self.dev_token = l.rsplit(" ", 1)[1].strip()
        rc, pem = g.run("cat %s/tls/cert.pem" % self.state_dir, check=True)
        with open(self.cert_path, "w") as f:
            f.write(pem)
        self.url = "https://127.0.0.1:%d" % g.port(GUEST_HTTPS)
        self._ssl = None
        self._conn = None
        if wait_healthy:
            wait_until(lambda: self.healthz_status() == 200, timeout=timeout, interval=0.5,
                       what="/healthz 200 from the guest")
        return self

    def fetch(self, rec):
        """The host path of a finished recording's file: copied from the
        guest's storage to the share (same name under .../fetched)."""
        src = os.path.join(rec["local_path"], rec["file_name"])
        dst = os.path.join(self.dir, "fetched", rec["recording_id"], rec["file_name"])
        self.guest.run("mkdir -p %s && cp %s %s" % (os.path.dirname(dst), src, dst), check=True)
        return dst

    def storage_entries(self):
        """What the guest's recordings folder holds now."""
        rc, out = self.guest.run("ls -A %s 2>/dev/null" % self.storage)
        return set(out.split())

    def alive(self):
        return self.pid is not None and self.guest.proc is not None and self.guest.proc.poll() is None \
            and self.guest.wait(self.pid, 0) is None

    def stop(self, timeout=90.0):
        self.close()
        if self.pid is None:
            return None
        self.guest.signal(self.pid, 15)
        rc = self.guest.wait(self.pid, timeout)
        if rc is None:
            self.guest.signal(self.pid, 9)
            self.guest.wait(self.pid, 10)
        self.pid = None
        return rc

    def kill(self):
        self.close()
        if self.pid is not None:
            self.guest.signal(self.pid, 9)
            rc = self.guest.wait(self.pid, 10)
            self.pid = None
            return rc
        return None

    def shutdown(self):
        """Stops the node (its exit status is returned) and the guest."""
        rc = self.stop() if self.alive() else None
        self.guest.stop()
        self.guest.kill()
        return rc


def start_guest_node(name, config, vivid=guest.VIVID_OPTIONS):
    """setup() of a capture test: exits 77 when the guest cannot run here.
    'vivid': the module's options ("n_devs=2 node_types=0x1,0x1": two
    cameras, /dev/video0 and /dev/video1)."""
    guest.skip_unless_available(name)
    c = Ctx()
    t0 = time.monotonic()
    c.node = GuestNode(config=config, vivid=vivid)
    c.guest = c.node.guest
    c.nodes = [c.node]
    c.guest_failed = False
    try:
        c.node.boot()
        print("guest: qemu start -> agent %.1fs (guest uptime %.1fs, qemu %.1f CPU s)" % (
            c.guest.boot_seconds, c.guest.guest_uptime, c.guest.qemu_cpu_seconds()), flush=True)
        c.node.start()
    except Exception:
        print("--- guest console ---\n%s" % c.guest.console_tail(), file=sys.stderr)
        c.node.shutdown()
        raise
    print("guest: edgerec healthy %.1fs after qemu start" % (time.monotonic() - t0), flush=True)
    return c


def stop_guest_node(c):
    if c is None:
        return
    rc = c.node.shutdown()
    print("guest: qemu used %.1f CPU s in all" % c.guest.qemu_cpu_seconds(), flush=True)
    assert rc in (0, None), "edgerec in the guest exited %s:\n%s" % (rc, c.node.log_tail())


# -- signals ------------------------------------------------------------------

def _write_wav(path, samples, channels=2):
    import wave
    with wave.open(path, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(RATE)
        if channels == 2:
            st = array.array("h", bytes(len(samples) * 4))
            st[0::2] = samples
            st[1::2] = samples
            samples = st
        w.writeframes(samples.tobytes())


def write_tone_wav(path, seconds, freq=1000, amplitude=0.5):
    import math
    n = int(seconds * RATE)
    period = [int(amplitude * 32767 * math.sin(2 * math.pi * freq * i / RATE)) for i in range(RATE)]
    s = array.array("h", period * (n // RATE + 1))[:n]
    _write_wav(path, s)
    return path


def write_click_wav(path, seconds, freq=1000, every=1.0, burst=0.02, amplitude=0.7):
    """Bursts of 'freq' Hz, 'burst' s long, starting at every multiple of
    'every' seconds of samples (sample k*every*RATE exactly)."""
    import math
    n = int(seconds * RATE)
    blen = int(burst * RATE)
    beep = array.array("h", (int(amplitude * 32767 * math.sin(2 * math.pi * freq * i / RATE)) for i in range(blen)))
    s = array.array("h", bytes(2 * n))
    step = int(every * RATE)
    for start in range(0, n - blen, step):
        s[start:start + blen] = beep
    _write_wav(path, s)
    return path


# -- reading a recording back --------------------------------------------------

def ffprobe(path, *args):
    p = subprocess.run(["ffprobe", "-v", "error", "-of", "json", *args, path], capture_output=True, text=True,
                       timeout=300)
    assert p.returncode == 0, "ffprobe %s: %s" % (path, p.stderr[-2000:])
    return json.loads(p.stdout)


def decode_audio(path):
    """(pts of the first audio frame, mono s16 samples at 48 kHz) of the
    file's audio, decoded by ffmpeg (nothing resampled in time: aresample
    only when the stream is not 48 kHz)."""
    first = ffprobe(path, "-select_streams", "a", "-show_entries", "frame=pts_time", "-read_intervals", "%+#1")
    start = float(first["frames"][0]["pts_time"])
    p = subprocess.run(["ffmpeg", "-v", "error", "-i", path, "-map", "0:a:0", "-ac", "1", "-ar", str(RATE),
                        "-f", "s16le", "-"], capture_output=True, timeout=600)
    assert p.returncode == 0, p.stderr[-2000:]
    s = array.array("h")
    s.frombytes(p.stdout[:len(p.stdout) // 2 * 2])
    return start, s


def tone_frequency(samples):
    """Main frequency (Hz) from zero crossings, and the RMS level (0..1)."""
    if len(samples) < 2:
        return 0.0, 0.0
    crossings = sum(1 for a, b in zip(samples, samples[1:]) if (a < 0) != (b < 0))
    rms = (sum(x * x for x in samples) / len(samples)) ** 0.5 / 32768
    return crossings / 2 / (len(samples) / RATE), rms


def burst_onsets(samples, threshold=6000, hold=0.2):
    """Sample indexes where a burst starts: the first sample above
    'threshold' after at least 'hold' seconds below it."""
    onsets, last_loud = [], -10 ** 9
    gap = int(hold * RATE)
    for i, x in enumerate(samples):
        if x > threshold or x < -threshold:
            if i - last_loud > gap:
                onsets.append(i)
            last_loud = i
    return onsets


def video_pts(path):
    info = ffprobe(path, "-select_streams", "v", "-show_entries", "packet=pts_time")
    return sorted(float(p["pts_time"]) for p in info.get("packets", []) if "pts_time" in p)


def audio_contiguous(path, after=None):
    """(largest hole or overlap in seconds between consecutive audio
    packets, packet count): 0 when each packet starts where the previous
    one ended, so sample positions in the decoded audio are file times.
    after: only packets from that time (s) on."""
    info = ffprobe(path, "-select_streams", "a", "-show_entries", "packet=pts_time,duration_time")
    pk = [(float(p["pts_time"]), float(p["duration_time"])) for p in info["packets"]
          if "pts_time" in p and "duration_time" in p]
    if after is not None:
        pk = [p for p in pk if p[0] >= after]
    return max((abs(b[0] - (a[0] + a[1])) for a, b in zip(pk, pk[1:])), default=0.0), len(pk)


def audio_end(path):
    """End time (s) of the last audio packet (its pts + duration)."""
    info = ffprobe(path, "-select_streams", "a", "-show_entries", "packet=pts_time,duration_time")
    pk = [p for p in info["packets"] if "pts_time" in p and "duration_time" in p]
    return float(pk[-1]["pts_time"]) + float(pk[-1]["duration_time"])


def streams(path):
    info = ffprobe(path, "-show_streams", "-show_format")
    v = [s for s in info["streams"] if s["codec_type"] == "video"]
    a = [s for s in info["streams"] if s["codec_type"] == "audio"]
    return info["format"], (v[0] if v else None), (a[0] if a else None)


def decodes_to_end(path):
    """ffmpeg decodes every packet of every stream to the end with no error.
    Frames keep their own times in the file's time base (-fps_mode
    passthrough, -enc_time_base:v -1, framemd5's 1/1000 stream time base):
    a camera's frames are not on a fixed grid, and two 30 ms apart are
    valid in the file, where ffmpeg's null muxer (time base 1/frame rate)
    would put them on one tick and complain about its own output."""
    p = subprocess.run(["ffmpeg", "-v", "error", "-i", path, "-map", "0", "-fps_mode", "passthrough",
                        "-enc_time_base:v", "-1", "-f", "framemd5", "-y", "/dev/null"],
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0 and not p.stderr.strip(), "ffmpeg decode of %s: %s" % (path, p.stderr[-2000:])


# -- the devices in the guest ---------------------------------------------------

CAMERA = "/dev/video0"
MIC = "hw:Loopback,1,0"          # captures what plays into hw:Loopback,0,0
SPEAKER = "plughw:Loopback,0,0"  # plug: converts to what the capture side opened
PRESET_BOX = (854, 480, 24)      # the low preset (SPEC section 5)
# The camera mode the tests ask for. From vivid the low preset alone gets
# 640x480 at 25 fps, which the guest (TCG on a shared 2-core box) encodes at
# about 10 fps: its ladder halves rate and size at once. 320x180 at 15 fps
# is a ninth of those pixels.
SMALL = "size=320x180,fps=5"


def camera_room(room, device=CAMERA, audio=MIC, mode=SMALL):
    """Configuration of a room wired to the camera (and microphone); the
    microphone goes last in the args (an ALSA name may hold commas)."""
    args = "device=" + device + ("," + mode if mode else "") + (",audio=" + audio if audio else "")
    return {"room.%s.source" % room: "v4l2", "room.%s.args" % room: args}


def play(g, wav, log_path, pcm=SPEAKER, buffer_us=2000000):
    """Starts aplay of 'wav' into the loopback in the guest (real-time
    priority, a 2 s buffer: a starved guest must not underrun it, an
    underrun would shift the signal in time); returns its pid once aplay
    has opened the device and started."""
    pid = g.spawn("exec chrt -f 20 aplay -D %s --buffer-time=%d %s" % (pcm, buffer_us, wav), log_path)

    def playing():
        with open(log_path, errors="replace") as f:
            text = f.read()
        assert g.wait(pid, 0) is None, "aplay exited: " + text
        return "Playing WAVE" in text
    wait_until(playing, timeout=60, interval=0.2, what="aplay to start")
    return pid


def underruns(log_path):
    """aplay's warnings of underruns in its log."""
    try:
        with open(log_path, errors="replace") as f:
            return [l for l in f.read().splitlines() if "underrun" in l.lower()]
    except OSError:
        return []


def camera_mode(g, device=CAMERA):
    """What the camera is set to now, read from the driver with v4l2-ctl
    (not from edgerec): {'width', 'height', 'fourcc', 'fps'}."""
    import re
    rc, out = g.run("v4l2-ctl -d %s --get-fmt-video --get-parm" % device, check=True)
    m = re.search(r"Width/Height\s*:\s*(\d+)/(\d+)", out)
    f = re.search(r"Pixel Format\s*:\s*'(\w+)", out)
    r = re.search(r"Frames per second:\s*([\d.]+)", out)
    assert m and f and r, out
    return {"width": int(m.group(1)), "height": int(m.group(2)), "fourcc": f.group(1), "fps": float(r.group(1))}


def fit_box(w, h, box_w, box_h):
    """The size a frame of w x h is recorded at in a preset's box: as it is
    when it fits, else scaled down keeping its aspect (even sizes)."""
    if w <= box_w and h <= box_h:
        return w, h
    s = min(box_w / w, box_h / h)
    return int(w * s) // 2 * 2, int(h * s) // 2 * 2


def assert_frames(n, lo, hi, media, degraded):
    """n video frames in a file against lo..hi expected (wall time x the
    camera's rate; hi None: no upper bound), within 5 %. A guest starved by
    its host (TCG shares the host's cores with whatever else runs there)
    may fall behind: then the recording must have said so (frames skipped
    or dropped in its state, 'degraded': the ladder's events or
    metadata.degradation) and every frame the camera gave is accounted
    for, at least half of them in the file. True when it fell behind."""
    lost = media["video_frames_skipped"] + media["video_frames_dropped"]
    assert n == media["video_frames_encoded"], (n, media)
    if not lost and not degraded:
        assert lo * 0.95 <= n and (hi is None or n <= hi * 1.05), (n, lo, hi)
        return False
    print("the guest was short of CPU and the recording said so: %d frames in the file, %d skipped or "
          "dropped, expected %.0f..%s" % (n, lost, lo, "" if hi is None else "%.0f" % hi), flush=True)
    assert lo * 0.95 <= n + lost and (hi is None or n + lost <= hi * 1.05), (n, lost, lo, hi)
    assert n >= lo / 2, "fewer than half the frames: %d of %.0f" % (n, lo)
    return True


def room_recordings(node, room):
    r = node.request("GET", "/api/webrtc/rooms/%s/recordings" % room)
    assert r.status == 200, r
    return r.json["recordings"]


def refused(c, room, statuses):
    """Starts a recording in 'room' that must be refused with one of
    'statuses' and a JSON detail, leaving no record in the room and no new
    folder; one that starts anyway is stopped (so the devices are free for
    what follows) before the check fails."""
    before = c.node.storage_entries()
    r = c.node.start_recording(room, quality="low")
    if r.status == 200:
        rid = r.json["recording_id"]
        c.node.op("stop", room, rid)
        c.node.wait_status(room, rid, ("completed", "failed"), timeout=300)
    assert r.status in statuses, (room, r)
    assert isinstance(r.json, dict) and isinstance(r.json.get("detail"), str) and r.json["detail"], r
    assert room_recordings(c.node, room) == [], room_recordings(c.node, room)
    after = c.node.storage_entries()
    assert after == before, after - before
    return r


@contextlib.contextmanager
def microphone_held(c):
    """The loopback microphone held open by another process (arecord)."""
    log = os.path.join(c.node.dir, "arecord.log")
    pid = c.guest.spawn("exec arecord -q -D %s -f S16_LE -r 48000 -c 2 -t raw /dev/null" % MIC, log)
    try:
        time.sleep(2)
        assert c.guest.wait(pid, 0) is None, open(log).read()
        yield
    finally:
        c.guest.signal(pid, 15)
        c.guest.wait(pid, 20)


def events_of(ws, seconds):
    """Event types read from a room subscription for up to 'seconds'."""
    import websocket
    seen, deadline = [], time.monotonic() + seconds
    while time.monotonic() < deadline:
        ws.settimeout(max(0.05, deadline - time.monotonic()))
        try:
            seen.append(json.loads(ws.recv()))
        except websocket.WebSocketTimeoutException:
            break
    return seen


def assert_tone_throughout(samples, freq, start_within=1.0):
    """The tone (freq within 1 %, RMS of a 0.5 sine after Opus) starts in
    the first 'start_within' seconds (aplay plays before the recording
    starts) and is in every whole second from then to the end."""
    secs = int(len(samples) / RATE)
    level = [tone_frequency(samples[s * RATE:(s + 1) * RATE]) for s in range(secs)]
    ok = [abs(hz - freq) <= freq / 100 and rms >= 0.25 for hz, rms in level]
    first = next((s for s, good in enumerate(ok) if good), None)
    assert first is not None and first <= start_within, "no %d Hz tone in the first %.0f s: %s" % (
        freq, start_within, [(round(h), round(r, 2)) for h, r in level[:10]])
    bad = [(s, round(level[s][0], 1), round(level[s][1], 3)) for s in range(first, secs) if not ok[s]]
    assert not bad, "seconds without the tone (second, Hz, rms): %s" % bad[:20]
    return first
