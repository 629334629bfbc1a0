"""rtp_janus_publisher: a WebRTC publisher (GStreamer webrtcbin) into a Janus
VideoRoom, which then asks Janus to rtp_forward it to a plain-RTP recorder.

    python3 rtp_janus_publisher.py --janus http://127.0.0.1:8088/janus --local-ip 10.77.0.2 \
        --video-port 5004 --video-rtcp-port 5005 --audio-port 5002 --seconds 6 \
        [--video-pt 96 --audio-pt 111] [--hold]

The forward uses rtp_forward's per-stream syntax (the mids of the offer),
with each stream's `pt` pinned to the given payload types and the video
stream's `rtcp_port` set, so the recorder's PLIs reach the publisher. With
--hold it forwards until its stdin reaches end of file (the caller decides
how long) instead of for --seconds.

VP8 is encoded without periodic keyframes (keyframe-max-dist is huge), so
after the first one every keyframe is one somebody asked for: the room is
configured with fir_freq = 0, so only the recorder's PLI, relayed by Janus,
can cause one. Prints one JSON line: the publisher id, when (seconds since
start) the forward began, and the wall-clock time each video frame left the
encoder (frame_times). Exits non-zero on any failure. Meant to run inside
the test's network namespace (libnice skips loopback, so the veth address is
added to the ICE agent explicitly).
"""

import argparse
import faulthandler
import json
import sys
import time
import urllib.request

from webrtcbin_offer import die, gathered_offer, publisher, set_answer
from gi.repository import Gst  # noqa: E402  (versions loaded by webrtcbin_offer)


class Janus:
    def __init__(self, url):
        self.url = url
        self.n = 0

    def post(self, path, body):
        self.n += 1
        body["transaction"] = "t%d" % self.n
        req = urllib.request.Request(self.url + path, json.dumps(body).encode(),
                                     {"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.loads(r.read())

    def poll(self, session):
        with urllib.request.urlopen("%s/%d?maxev=5" % (self.url, session), timeout=35) as r:
            ev = json.loads(r.read())
        return ev if isinstance(ev, list) else [ev]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--janus", required=True)
    ap.add_argument("--local-ip", required=True)
    ap.add_argument("--room", type=int, default=1234)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--video-port", type=int, required=True)
    ap.add_argument("--video-rtcp-port", type=int, required=True)
    ap.add_argument("--audio-port", type=int, required=True)
    ap.add_argument("--seconds", type=float, default=6)
    ap.add_argument("--video-pt", type=int, default=96)
    ap.add_argument("--audio-pt", type=int, default=111)
    ap.add_argument("--hold", action="store_true")
    a = ap.parse_args()

    faulthandler.enable()
    Gst.init(None)
    t0 = time.monotonic()
    janus = Janus(a.janus)
    for _ in range(100):
        try:
            session = janus.post("", {"janus": "create"})["data"]["id"]
            break
        except OSError:
            time.sleep(0.1)
    else:
        die("Janus does not answer at " + a.janus)
    handle = janus.post("/%d" % session, {"janus": "attach", "plugin": "janus.plugin.videoroom"})["data"]["id"]

    # When each video frame left the encoder (wall clock): on a loaded box the
    # publisher may not keep 30 fps, so the caller counts what was sent.
    frame_times = []
    pipe, wb, _, ice = publisher(a.local_ip, frame_times=frame_times)
    sdp = gathered_offer(pipe, wb)
    mids, kind = {}, None
    for line in sdp.splitlines():
        if line.startswith("m="):
            kind = line[2:].split(" ", 1)[0]
        elif line.startswith("a=mid:") and kind in ("video", "audio"):
            mids[kind] = line[6:].strip()
    if set(mids) != {"video", "audio"}:
        die("the offer lacks a video or audio mid: %s" % mids)
    janus.post("/%d/%d" % (session, handle), {
        "janus": "message",
        "body": {"request": "joinandconfigure", "room": a.room, "ptype": "publisher", "display": "edgerec-test",
                 "audio": True, "video": True},
        "jsep": {"type": "offer", "sdp": sdp, "trickle": False}})
    publisher_id, answered, up = None, False, False
    deadline = time.monotonic() + 15
    while not (answered and up and publisher_id):
        if time.monotonic() > deadline:
            die("no answer / webrtcup from Janus (answered=%s up=%s id=%s)" % (answered, up, publisher_id))
        for ev in janus.poll(session):
            if ev.get("janus") == "webrtcup":
                up = True
            data = ev.get("plugindata", {}).get("data", {})
            if data.get("videoroom") == "joined":
                publisher_id = data.get("id")
            if "error" in data:
                die("Janus: %s" % data["error"])
            jsep = ev.get("jsep")
            if jsep and jsep.get("type") == "answer" and not answered:
                set_answer(wb, jsep["sdp"])
                answered = True
    # Let the publisher's first keyframe go by: from now on only a PLI makes one.
    time.sleep(1.0)
    r = janus.post("/%d/%d" % (session, handle), {
        "janus": "message",
        "body": {"request": "rtp_forward", "room": a.room, "publisher_id": publisher_id, "host": a.host,
                 "host_family": "ipv4",
                 "streams": [{"mid": mids["video"], "port": a.video_port, "rtcp_port": a.video_rtcp_port,
                              "pt": a.video_pt},
                             {"mid": mids["audio"], "port": a.audio_port, "pt": a.audio_pt}]}})
    data = r.get("plugindata", {}).get("data", {})
    if data.get("videoroom") != "rtp_forward":
        die("rtp_forward failed: %s" % json.dumps(r))
    forward_at = time.monotonic() - t0
    print("forwarding %s" % json.dumps(data), flush=True)
    if a.hold:
        sys.stdin.read()
    else:
        time.sleep(a.seconds)
    pipe.set_state(Gst.State.NULL)
    try:
        janus.post("/%d" % session, {"janus": "destroy"})
    except OSError:
        pass
    print(json.dumps({"publisher_id": publisher_id, "forward_at": forward_at, "forward": data,
                      "frame_times": [round(t, 4) for t in frame_times]}))


if __name__ == "__main__":
    main()
