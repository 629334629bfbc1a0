"""End to end with a real SFU, driven through edgerec's REST API: a WebRTC
publisher (GStreamer webrtcbin) joins a Janus 1.1.2 VideoRoom; `edgerec serve`
has a room whose source is rtp; the recording is started over HTTPS (it
answers pending with the ports in metadata.rtp), then Janus is asked to
rtp_forward the publisher to those ports with `pt` pinned to metadata's
video_pt/audio_pt (not the publisher's 96/111) and `rtcp_port` set to
video_rtcp_port, so the recorder learns where PLIs go from Janus's latch
packets.

Everything runs inside a network namespace this test creates (Janus and
libnice refuse loopback for ICE, so a veth pair carries it) and deletes: the
script sets it up, then runs itself again inside it. Needs root, janus, and
the GStreamer WebRTC/Nice introspection packages (scripts/bootstrap).

The publisher sends no periodic keyframes and the room has fir_freq = 0.
The forward starts mid-GOP, so the first keyframe comes from the recorder's
PLI. The recording is paused for 1 s over REST; on resume the pipeline asks
for a keyframe, which only the recorder's PLI, relayed by Janus to the
publisher, can produce. Checks: pending with ports, then recording with
metadata.time_to_first_keyframe_ms and video_resolution; after stop,
completed; the file has VP8 and Opus, starts on a keyframe, has a keyframe
right at the resume and none elsewhere, holds about the frames forwarded
outside the pause, lasts about the active time, and decodes without errors.
"""

import datetime
import json
import os
import select
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "support"))

from rtp_testlib import check, decode_errors, fail, probe  # noqa: E402

NS_ENV = "EDGEREC_JANUS_NETNS"
ROOM = "janus-room"
BASE = "/api/webrtc/rooms/%s/recording" % ROOM
VIDEO_PT, AUDIO_PT = 100, 101        # pinned in rtp_forward; the publisher uses 96/111
BEFORE_PAUSE, PAUSED, AFTER_RESUME = 2.0, 1.0, 2.0


def sh(ns, *cmd, check_rc=True):
    full = (["ip", "netns", "exec", ns] if ns else []) + list(cmd)
    r = subprocess.run(full, capture_output=True, text=True)
    if check_rc and r.returncode != 0:
        fail("%s: %s" % (" ".join(full), r.stderr.strip()))
    return r


def setup_ns(ns):
    sh(None, "ip", "netns", "add", ns)
    sh(ns, "ip", "link", "set", "lo", "up")
    sh(ns, "ip", "link", "add", "vr0", "type", "veth", "peer", "name", "vr1")
    sh(ns, "ip", "addr", "add", "10.77.0.1/24", "dev", "vr0")
    sh(ns, "ip", "addr", "add", "10.77.0.2/24", "dev", "vr1")
    sh(ns, "ip", "link", "set", "vr0", "up")
    sh(ns, "ip", "link", "set", "vr1", "up")
    for dev in ("all", "vr0", "vr1"):
        sh(ns, "sysctl", "-q", "-w", "net.ipv4.conf.%s.accept_local=1" % dev)


def janus_config(d):
    plugins = "/usr/lib/x86_64-linux-gnu/janus/plugins"
    transports = "/usr/lib/x86_64-linux-gnu/janus/transports"
    off_plugins = ",".join(f for f in sorted(os.listdir(plugins))
                           if f.endswith(".so") and f != "libjanus_videoroom.so")
    off_transports = ",".join(f for f in sorted(os.listdir(transports))
                              if f.endswith(".so") and f != "libjanus_http.so")
    with open(os.path.join(d, "janus.jcfg"), "w") as f:
        f.write('general: {\n configs_folder = "%s"\n plugins_folder = "%s"\n transports_folder = "%s"\n'
                ' debug_level = 3\n}\n'
                'plugins: {\n disable = "%s"\n}\ntransports: {\n disable = "%s"\n}\n'
                'loggers: {\n disable = "libjanus_jsonlog.so"\n}\n'
                'events: {\n broadcast = false\n}\n'
                'media: {\n rtp_port_range = "40000-40200"\n}\n'
                'nat: {\n ice_enforce_list = "vr0"\n}\n' % (d, plugins, transports, off_plugins, off_transports))
    with open(os.path.join(d, "janus.transport.http.jcfg"), "w") as f:
        f.write('general: {\n json = "indented"\n base_path = "/janus"\n http = true\n port = 8088\n'
                ' ip = "127.0.0.1"\n https = false\n}\nadmin: {\n admin_http = false\n}\n')
    with open(os.path.join(d, "janus.plugin.videoroom.jcfg"), "w") as f:
        f.write('general: {\n}\nroom-1234: {\n description = "edgerec"\n publishers = 2\n bitrate = 800000\n'
                ' fir_freq = 0\n videocodec = "vp8"\n audiocodec = "opus"\n}\n')


def packets(path):
    """(pts seconds, keyframe) of every video packet, in file order."""
    r = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries",
                        "packet=pts_time,flags", "-of", "csv=p=0", path], capture_output=True, text=True)
    out = []
    for line in r.stdout.split():
        f = line.split(",")
        out.append((float(f[0]), "K" in f[1]))
    return out


def wall(iso):
    """Seconds since the epoch of an ISO-8601 UTC time with milliseconds."""
    return datetime.datetime.strptime(iso, "%Y-%m-%dT%H:%M:%S.%fZ").replace(
        tzinfo=datetime.timezone.utc).timestamp()


def read_line(proc, want, timeout):
    """The first stdout line of 'proc' that starts with 'want'."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], 0.2)
        if ready:
            line = proc.stdout.readline()
            if not line:
                break
            if line.startswith(want):
                return line
        elif proc.poll() is not None:
            break
    err = proc.stderr.read() if proc.poll() is not None else ""
    fail("publisher never said '%s' (exit %s): %s" % (want, proc.poll(), err[-800:]))


def inside():
    from edgerec_harness import Edgerec, mktemp, start_process, wait_until

    tmp = mktemp("janus")
    janus_config(tmp)
    start_process(["janus", "-F", tmp, "-C", os.path.join(tmp, "janus.jcfg"), "-o", "-E", "vr0"],
                  os.path.join(tmp, "janus.log"))
    node = Edgerec(config={
        "room.%s.source" % ROOM: "rtp",
        "room.%s.args" % ROOM: "bind=127.0.0.1,video_pt=%d,audio_pt=%d" % (VIDEO_PT, AUDIO_PT),
        "rtp.port_min": 21000,
        "rtp.port_max": 21015,
        "recorder.first_frame_timeout": "30s",
    })
    node.start()

    def state(rid):
        r = node.request("GET", "%s/%s/status" % (BASE, rid))
        if r.status != 200:
            fail("status: %r" % r)
        return r.json

    def op(name, rid):
        r = node.request("POST", "%s/%s/%s" % (BASE, rid, name))
        check(r.status == 200, "%s over REST" % name + ("" if r.status == 200 else ": %r" % r))
        return r.json

    r = node.request("POST", BASE + "/start?recording_format=webm")
    check(r.status == 200 and r.json["status"] == "pending",
          "start over HTTPS answers pending before anyone sends: %r" % r)
    rid = r.json["recording_id"]
    rtp = r.json["metadata"]["rtp"]
    check(rtp.get("video_pt") == VIDEO_PT and rtp.get("audio_pt") == AUDIO_PT and
          21000 <= rtp["video_port"] <= 21015 and 21000 <= rtp["audio_port"] <= 21015,
          "metadata.rtp: %s" % rtp)

    pub = subprocess.Popen([sys.executable, os.path.join(HERE, "..", "support", "rtp_janus_publisher.py"),
                            "--janus", "http://127.0.0.1:8088/janus", "--local-ip", "10.77.0.2",
                            "--video-port", str(rtp["video_port"]),
                            "--video-rtcp-port", str(rtp["video_rtcp_port"]),
                            "--audio-port", str(rtp["audio_port"]),
                            "--video-pt", str(rtp["video_pt"]), "--audio-pt", str(rtp["audio_pt"]), "--hold"],
                           stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        fwd = read_line(pub, "forwarding", 25)
        t_fwd = time.monotonic()
        print("publisher: " + fwd.strip())
        st = wait_until(lambda: (lambda s: s if s["status"] != "pending" else None)(state(rid)),
                        timeout=5, what="the first keyframe")
        t_rec = time.monotonic()
        check(st["status"] == "recording", "status recording %.2f s after the forward began" % (t_rec - t_fwd))
        ttfk = st["metadata"].get("time_to_first_keyframe_ms")
        check(isinstance(ttfk, (int, float)) and ttfk > 0,
              "metadata.time_to_first_keyframe_ms = %s" % ttfk)
        check(st["metadata"].get("video_resolution") == "320x240",
              "metadata.video_resolution = %s" % st["metadata"].get("video_resolution"))
        time.sleep(BEFORE_PAUSE)
        op("pause", rid)
        time.sleep(PAUSED)
        op("resume", rid)
        time.sleep(AFTER_RESUME)
        op("stop", rid)
        pout, perr = pub.communicate(input="", timeout=15)
    finally:
        if pub.poll() is None:
            pub.kill()
            pub.wait()
    if pub.returncode != 0:
        fail("publisher failed (exit %d): %s" % (pub.returncode, perr[-800:]))
    st = wait_until(lambda: (lambda s: s if s["status"] in ("completed", "failed") else None)(state(rid)),
                    timeout=20, what="processing")
    check(st["status"] == "completed", "completed" + ("" if st["status"] == "completed" else ": %s" % st))
    print("state: %s" % json.dumps({k: st[k] for k in ("started_at", "paused_at", "resumed_at", "stopped_at",
                                                         "duration_seconds")}))
    print("metadata: %s" % json.dumps(st["metadata"]))
    path = os.path.join(st["local_path"], st["file_name"])
    streams = probe(path)
    v = [s for s in streams if s["codec_name"] == "vp8"]
    a = [s for s in streams if s["codec_name"] == "opus"]
    check(len(v) == 1 and len(a) == 1, "the recording has VP8 and Opus: %s" % streams)
    # The file starts at the first keyframe and its clock leaves the pause
    # out: where the resume falls in it, and how long it was active, follow
    # from the state's times (wall clock, ms).
    t = {k: wall(st[k]) for k in ("started_at", "paused_at", "resumed_at", "stopped_at")}
    first_key = t["started_at"] + st["metadata"]["time_to_first_keyframe_ms"] / 1e3
    resume_pos = t["paused_at"] - first_key
    active = resume_pos + (t["stopped_at"] - t["resumed_at"])
    frames = int(v[0]["nb_read_frames"])
    # What the publisher encoded while the file was open and not paused (on
    # a loaded box it may fall below 30 fps).
    sent = [x for x in json.loads(pout.strip().splitlines()[-1]).get("frame_times", [])
            if first_key <= x <= t["paused_at"] or t["resumed_at"] <= x <= t["stopped_at"]]
    check(len(sent) - 15 <= frames <= len(sent) + 15,
          "video frames recorded: %d of %d sent outside the pause (%.0f at 30 fps)" % (frames, len(sent), active * 30))
    check(int(a[0]["nb_read_frames"]) >= (active - 0.5) * 50, "Opus frames recorded: %s" % a[0]["nb_read_frames"])
    check(active - 0.5 <= st["duration_seconds"] <= active + 0.7,
          "duration_seconds %.2f, about the %.2f s active" % (st["duration_seconds"], active))
    check(st["metadata"].get("source_stalled") is False, "the source is not stalled at the end")
    pk = packets(path)
    check(pk and pk[0][1], "the first video packet is a keyframe")
    keys = [t - pk[0][0] for t, k in pk if k]
    print("keyframes at %s s of the file" % ["%.2f" % k for k in keys])
    near = [k for k in keys if resume_pos - 0.1 <= k <= resume_pos + 0.6]
    other = [k for k in keys[1:] if k not in near]
    check(near and not other,
          "a keyframe right at the resume (%s s, resume at %.2f s: %.0f ms later) and none elsewhere: the "
          "recorder's PLI went through Janus to the publisher"
          % (["%.2f" % k for k in near], resume_pos, ((near or [0])[0] - resume_pos) * 1e3))
    errs = decode_errors(path)
    check(errs == "", "decodes without errors" + ("" if not errs else ": " + errs[:200]))
    node.stop()
    print("all ok")


def main():
    if os.environ.get(NS_ENV):
        inside()
        return
    if os.geteuid() != 0:
        fail("needs root (it creates a network namespace)")
    if not shutil.which("janus"):
        fail("janus is not installed (scripts/bootstrap installs it)")
    r = subprocess.run([sys.executable, "-c", "import gi; gi.require_version('GstWebRTC','1.0'); "
                        "gi.require_version('Nice','0.1'); from gi.repository import GstWebRTC, Nice"],
                       capture_output=True, text=True)
    if r.returncode != 0:
        fail("GStreamer WebRTC/Nice introspection missing: " + r.stderr.strip()[-200:])
    ns = "edgerec-rtp-%d" % os.getpid()
    setup_ns(ns)
    try:
        env = dict(os.environ)
        env[NS_ENV] = ns
        rc = subprocess.run(["ip", "netns", "exec", ns, sys.executable, os.path.abspath(__file__)],
                            env=env, timeout=120).returncode
    finally:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)
    sys.exit(rc)


if __name__ == "__main__":
    main()
