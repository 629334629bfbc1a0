"""whip_gst_publisher: a WHIP publisher built on GStreamer's webrtcbin (a
WebRTC stack nobody here wrote: libnice for ICE, OpenSSL DTLS, libsrtp).

    python3 whip_gst_publisher.py --url https://127.0.0.1:PORT/api/webrtc/rooms/R/whip \
        --token JWT --local-ip 127.0.0.1 --seconds 6

Encodes a moving test pattern (VP8, 320x240, 30 fps) and a tone (Opus),
offers them without trickle (ICE gathered first, as OBS does), POSTs the
offer, applies the 201 answer, publishes, then DELETEs the Location.
libnice leaves loopback out when it gathers, so --local-ip is added to the
ICE agent explicitly. Prints one JSON line {"status", "location",
"recording_id", "frames", "delete_status"} and exits non-zero on failure.
"""

import argparse
import faulthandler
import json
import ssl
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstWebRTC", "1.0")
gi.require_version("GstSdp", "1.0")
gi.require_version("Nice", "0.1")
from gi.repository import Gst, GstSdp, GstWebRTC, Nice  # noqa: E402


def die(msg):
    print("publisher: " + msg, file=sys.stderr)
    sys.exit(1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--token", required=True)
    ap.add_argument("--local-ip", default="127.0.0.1")
    ap.add_argument("--seconds", type=float, default=6)
    a = ap.parse_args()

    faulthandler.enable()
    Gst.init(None)
    tls = ssl.create_default_context()
    tls.check_hostname = False
    tls.verify_mode = ssl.CERT_NONE
    pipe = Gst.parse_launch(
        "webrtcbin name=wb bundle-policy=max-bundle "
        "videotestsrc is-live=true pattern=ball ! video/x-raw,width=320,height=240,framerate=30/1 ! "
        "vp8enc name=venc deadline=1 cpu-used=8 target-bitrate=500000 keyframe-max-dist=60 ! "
        "rtpvp8pay pt=96 picture-id-mode=15-bit ! application/x-rtp,media=video,encoding-name=VP8,payload=96,clock-rate=90000 ! wb. "
        "audiotestsrc is-live=true wave=sine freq=440 ! audioconvert ! audioresample ! opusenc ! "
        "rtpopuspay pt=111 ! application/x-rtp,media=audio,encoding-name=OPUS,payload=111,clock-rate=48000 ! wb.")
    wb = pipe.get_by_name("wb")
    frames = [0]

    def on_frame(pad, info):
        frames[0] += 1
        return Gst.PadProbeReturn.OK
    pipe.get_by_name("venc").get_static_pad("src").add_probe(Gst.PadProbeType.BUFFER, on_frame)
    ice = wb.get_property("ice-agent")   # keep the reference: the agent lives as long as it does
    agent = ice.get_property("agent")
    agent.set_property("upnp", False)
    addr = Nice.Address()
    addr.set_from_string(a.local_ip)
    agent.add_local_address(addr)
    negotiate = threading.Event()
    wb.connect("on-negotiation-needed", lambda *_: negotiate.set())
    pipe.set_state(Gst.State.PLAYING)
    if not negotiate.wait(10):
        die("webrtcbin never asked for negotiation")
    time.sleep(0.5)  # both sink pads link at about the same time
    for i in range(2):
        t = wb.emit("get-transceiver", i)
        if t:
            t.set_property("direction", GstWebRTC.WebRTCRTPTransceiverDirection.SENDONLY)
    offered = threading.Event()
    result = {}

    def on_offer(promise):
        reply = promise.get_reply()
        offer = reply.get_value("offer") if reply else None
        result["sdp"] = offer.sdp.as_text() if offer and offer.sdp else None
        offered.set()
    wb.emit("create-offer", None, Gst.Promise.new_with_change_func(on_offer))
    if not offered.wait(10) or not result.get("sdp"):
        die("webrtcbin made no offer")
    ok, msg = GstSdp.SDPMessage.new_from_text(result["sdp"])
    wb.emit("set-local-description", GstWebRTC.WebRTCSessionDescription.new(GstWebRTC.WebRTCSDPType.OFFER, msg),
            None)
    deadline = time.monotonic() + 10
    while wb.get_property("ice-gathering-state") != GstWebRTC.WebRTCICEGatheringState.COMPLETE:
        if time.monotonic() > deadline:
            die("ICE gathering did not complete")
        time.sleep(0.05)
    sdp = wb.get_property("local-description").sdp.as_text()
    req = urllib.request.Request(a.url, sdp.encode(), {"Content-Type": "application/sdp",
                                                       "Authorization": "Bearer " + a.token})
    out = {}
    try:
        with urllib.request.urlopen(req, timeout=15, context=tls) as r:
            out["status"] = r.status
            out["location"] = r.headers.get("Location")
            out["recording_id"] = r.headers.get("X-Recording-Id")
            answer = r.read().decode()
    except urllib.error.HTTPError as e:
        die("POST: %d %s" % (e.code, e.read()[:500]))
    ok, msg = GstSdp.SDPMessage.new_from_text(answer)
    wb.emit("set-remote-description", GstWebRTC.WebRTCSessionDescription.new(GstWebRTC.WebRTCSDPType.ANSWER, msg),
            None)
    deadline = time.monotonic() + 15
    while wb.get_property("connection-state") != GstWebRTC.WebRTCPeerConnectionState.CONNECTED:
        if time.monotonic() > deadline:
            die("not connected: %s" % wb.get_property("connection-state"))
        time.sleep(0.05)
    start = frames[0]
    time.sleep(a.seconds)
    out["frames"] = frames[0] - start
    loc = urllib.parse.urljoin(a.url, out["location"])
    req = urllib.request.Request(loc, method="DELETE", headers={"Authorization": "Bearer " + a.token})
    with urllib.request.urlopen(req, timeout=15, context=tls) as r:
        out["delete_status"] = r.status
    pipe.set_state(Gst.State.NULL)
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
