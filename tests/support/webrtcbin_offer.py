"""webrtcbin_offer: the GStreamer webrtcbin publisher the WebRTC tests share
(tests/support/rtp_janus_publisher.py into Janus, whip_gst_publisher.py
into edgerec's WHIP endpoint).

    pipe, wb, frames, keep = publisher(local_ip, width=320, height=240, keyframe_max_dist=100000)
    sdp = gathered_offer(wb)   # after PLAYING; ICE gathered (no trickle)

A moving test pattern as VP8 (pt 96) and a tone as Opus (pt 111), bundled.
'frames' is a list whose only item counts video frames out of the encoder,
'frame_times' the wall-clock time of each; 'keep' holds the ICE agent,
which must live as long as webrtcbin. libnice leaves loopback (and other
addresses) out when it gathers, so 'local_ip' is added to the agent.
"""

import sys
import threading
import time

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstWebRTC", "1.0")
gi.require_version("GstSdp", "1.0")
gi.require_version("Nice", "0.1")
from gi.repository import Gst, GstSdp, GstWebRTC, Nice  # noqa: E402


def die(msg):
    print("publisher: " + msg, file=sys.stderr)
    sys.exit(1)


def publisher(local_ip, width=320, height=240, keyframe_max_dist=100000, frame_times=None):
    Gst.init(None)
    pipe = Gst.parse_launch(
        "webrtcbin name=wb bundle-policy=max-bundle "
        "videotestsrc is-live=true pattern=ball ! video/x-raw,width=%d,height=%d,framerate=30/1 ! "
        "vp8enc name=venc deadline=1 cpu-used=8 target-bitrate=500000 keyframe-max-dist=%d ! "
        "rtpvp8pay pt=96 picture-id-mode=15-bit ! application/x-rtp,media=video,encoding-name=VP8,payload=96,clock-rate=90000 ! wb. "
        "audiotestsrc is-live=true wave=sine freq=440 ! audioconvert ! audioresample ! opusenc ! "
        "rtpopuspay pt=111 ! application/x-rtp,media=audio,encoding-name=OPUS,payload=111,clock-rate=48000 ! wb."
        % (width, height, keyframe_max_dist))
    wb = pipe.get_by_name("wb")
    frames = [0]

    def on_frame(pad, info):
        frames[0] += 1
        if frame_times is not None:
            frame_times.append(time.time())
        return Gst.PadProbeReturn.OK
    pipe.get_by_name("venc").get_static_pad("src").add_probe(Gst.PadProbeType.BUFFER, on_frame)
    ice = wb.get_property("ice-agent")   # keep the reference: the agent lives as long as it does
    agent = ice.get_property("agent")
    agent.set_property("upnp", False)
    addr = Nice.Address()
    addr.set_from_string(local_ip)
    agent.add_local_address(addr)
    return pipe, wb, frames, ice


def gathered_offer(pipe, wb, sendonly=False):
    """Starts the pipeline, makes the offer, sets it and waits for ICE
    gathering; returns the offer's SDP text (with its candidates)."""
    negotiate = threading.Event()
    wb.connect("on-negotiation-needed", lambda *_: negotiate.set())
    pipe.set_state(Gst.State.PLAYING)
    if not negotiate.wait(10):
        die("webrtcbin never asked for negotiation")
    # Both sink pads link at about the same time; let the second one settle.
    time.sleep(0.5)
    if sendonly:
        for i in range(2):
            t = wb.emit("get-transceiver", i)
            if t:
                t.set_property("direction", GstWebRTC.WebRTCRTPTransceiverDirection.SENDONLY)
    offered = threading.Event()
    result = {}

    def on_offer(promise):
        # The reply (and the offer in it) belongs to the promise: take the text now.
        reply = promise.get_reply()
        offer = reply.get_value("offer") if reply else None
        result["sdp"] = offer.sdp.as_text() if offer and offer.sdp else None
        offered.set()
    wb.emit("create-offer", None, Gst.Promise.new_with_change_func(on_offer))
    if not offered.wait(10) or not result.get("sdp"):
        die("webrtcbin made no offer")
    ok, msg = GstSdp.SDPMessage.new_from_text(result["sdp"])
    wb.emit("set-local-description",
            GstWebRTC.WebRTCSessionDescription.new(GstWebRTC.WebRTCSDPType.OFFER, msg), None)
    deadline = time.monotonic() + 10
    while wb.get_property("ice-gathering-state") != GstWebRTC.WebRTCICEGatheringState.COMPLETE:
        if time.monotonic() > deadline:
            die("ICE gathering did not complete")
        time.sleep(0.05)
    return wb.get_property("local-description").sdp.as_text()


def set_answer(wb, sdp):
    ok, msg = GstSdp.SDPMessage.new_from_text(sdp)
    wb.emit("set-remote-description", GstWebRTC.WebRTCSessionDescription.new(GstWebRTC.WebRTCSDPType.ANSWER, msg),
            None)
