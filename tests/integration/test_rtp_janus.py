"""End to end with a real SFU: a WebRTC publisher (GStreamer webrtcbin) joins a
Janus 1.1.2 VideoRoom, Janus rtp_forwards it to `edgerec record --source rtp`.

Everything runs inside a network namespace this test creates (Janus and
libnice refuse loopback for ICE, so a veth pair carries it) and deletes.
Needs root, janus, and the GStreamer WebRTC/Nice introspection packages
(scripts/bootstrap installs them).

The publisher sends no periodic keyframes and the room has fir_freq = 0.
The recording is paused from 2 s to 3 s; on resume the pipeline asks the
source for a keyframe, which only the recorder's PLI, relayed by Janus to
the publisher, can produce. Janus sends no Sender Reports on forwards.
Checks: the recording has VP8 and Opus, starts on a keyframe, has a
keyframe right at the resume, holds close to all the frames forwarded
outside the pause, and decodes without errors.
"""

import json
import os
import shutil
import subprocess
import sys
import time

from rtp_testlib import TempDir, check, decode_errors, fail, keyframe_flags, probe

NS = "edgerec-rtp-%d" % os.getpid()
SECONDS = 6
PAUSE_AT, RESUME_AT = 2, 3


def sh(*cmd, ns=False, check_rc=True):
    full = (["ip", "netns", "exec", NS] if ns else []) + list(cmd)
    r = subprocess.run(full, capture_output=True, text=True)
    if check_rc and r.returncode != 0:
        fail("%s: %s" % (" ".join(full), r.stderr.strip()))
    return r


def setup_ns():
    sh("ip", "netns", "add", NS)
    sh("ip", "link", "set", "lo", "up", ns=True)
    sh("ip", "link", "add", "vr0", "type", "veth", "peer", "name", "vr1", ns=True)
    sh("ip", "addr", "add", "10.77.0.1/24", "dev", "vr0", ns=True)
    sh("ip", "addr", "add", "10.77.0.2/24", "dev", "vr1", ns=True)
    sh("ip", "link", "set", "vr0", "up", ns=True)
    sh("ip", "link", "set", "vr1", "up", ns=True)
    for dev in ("all", "vr0", "vr1"):
        sh("sysctl", "-q", "-w", "net.ipv4.conf.%s.accept_local=1" % dev, ns=True)


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


def main():
    if os.geteuid() != 0:
        fail("needs root (it creates a network namespace)")
    if not shutil.which("janus"):
        fail("janus is not installed (scripts/bootstrap installs it)")
    r = subprocess.run([sys.executable, "-c", "import gi; gi.require_version('GstWebRTC','1.0'); "
                        "gi.require_version('Nice','0.1'); from gi.repository import GstWebRTC, Nice"],
                       capture_output=True, text=True)
    if r.returncode != 0:
        fail("GStreamer WebRTC/Nice introspection missing: " + r.stderr.strip()[-200:])
    procs = []
    setup_ns()
    try:
        with TempDir() as tmp:
            janus_config(tmp)
            out = os.path.join(tmp, "rec.webm")
            jlog = open(os.path.join(tmp, "janus.log"), "w")
            procs.append(subprocess.Popen(["ip", "netns", "exec", NS, "janus", "-F", tmp, "-C",
                                           os.path.join(tmp, "janus.jcfg"), "-o", "-E", "vr0"],
                                          stdout=jlog, stderr=subprocess.STDOUT))
            rec = subprocess.Popen(["ip", "netns", "exec", NS, os.environ["EDGEREC_BIN"], "record", "--source", "rtp",
                                    "--args", "video_port=5004,audio_port=5002,video_pt=96,audio_pt=111,"
                                    "bind=127.0.0.1,idle_eof_ms=1500", "--pause-at", str(PAUSE_AT),
                                    "--resume-at", str(RESUME_AT), "--output", out],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            procs.append(rec)
            pub = subprocess.Popen(["ip", "netns", "exec", NS, sys.executable,
                                    os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "support",
                                                 "rtp_janus_publisher.py"),
                                    "--janus", "http://127.0.0.1:8088/janus", "--local-ip", "10.77.0.2",
                                    "--video-port", "5004", "--video-rtcp-port", "5005", "--audio-port", "5002",
                                    "--seconds", str(SECONDS)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   text=True)
            procs.append(pub)
            pout, perr = pub.communicate(timeout=30)
            if pub.returncode != 0:
                fail("publisher failed (exit %d): %s" % (pub.returncode, perr[-800:]))
            info = json.loads(pout.strip().splitlines()[-1])
            print("publisher: %s" % info)
            try:
                rout, rerr = rec.communicate(timeout=20)
            except subprocess.TimeoutExpired:
                rec.kill()
                rout, rerr = rec.communicate()
            print("edgerec record: " + rout.strip())
            check(rec.returncode == 0, "edgerec record ended by itself after the forward stopped" +
                  ("" if rec.returncode == 0 else ": " + rerr[-400:]))
            streams = probe(out)
            v = [s for s in streams if s["codec_name"] == "vp8"]
            a = [s for s in streams if s["codec_name"] == "opus"]
            check(len(v) == 1 and len(a) == 1, "the recording has VP8 and Opus")
            frames = int(v[0]["nb_read_frames"])
            expect = (SECONDS - (RESUME_AT - PAUSE_AT)) * 30
            check(expect - 20 <= frames <= expect + 5,
                  "video frames recorded: %d of about %d forwarded outside the pause" % (frames, expect))
            check(int(a[0]["nb_read_frames"]) >= (SECONDS - 2) * 50, "Opus frames recorded: %s" % a[0]["nb_read_frames"])
            flags = keyframe_flags(out)
            check(flags and flags[0], "it starts on a keyframe")
            keys = [i for i, k in enumerate(flags) if k]
            resume = PAUSE_AT * 30
            near = [k for k in keys if abs(k - resume) <= 10]
            print("keyframes at recorded frames %s" % keys)
            check(near and not [k for k in keys if 10 < k < resume - 10],
                  "a keyframe right after the resume (frame %s, pause at frame ~%d) and none before it since the "
                  "start: the recorder's PLI went through Janus to the publisher" % (near, resume))
            errs = decode_errors(out)
            check(errs == "", "decodes without errors" + ("" if not errs else ": " + errs[:200]))
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(5)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        subprocess.run(["ip", "netns", "del", NS], capture_output=True)
    print("all ok")


if __name__ == "__main__":
    main()
