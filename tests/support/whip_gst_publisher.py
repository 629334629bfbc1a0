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
import time
import urllib.error
import urllib.parse
import urllib.request

from webrtcbin_offer import die, gathered_offer, publisher, set_answer
from gi.repository import Gst, GstWebRTC  # noqa: E402  (versions loaded by webrtcbin_offer)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--token", required=True)
    ap.add_argument("--local-ip", default="127.0.0.1")
    ap.add_argument("--seconds", type=float, default=6)
    a = ap.parse_args()

    faulthandler.enable()
    tls = ssl.create_default_context()
    tls.check_hostname = False
    tls.verify_mode = ssl.CERT_NONE
    pipe, wb, frames, ice = publisher(a.local_ip, keyframe_max_dist=60)
    sdp = gathered_offer(pipe, wb, sendonly=True)
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
    set_answer(wb, answer)
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
