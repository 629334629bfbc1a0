"""test_whip_browser: WebRTC publishers straight into edgerec over WHIP.

Debian's chromium (headless, fake camera and microphone, driven by
playwright-core through tests/support/browser/whip.mjs from a page on
another origin, so CORS is exercised) publishes VP8 + Opus to
POST /api/webrtc/rooms/{room}/whip on 127.0.0.1 and ends with DELETE on
the Location. Checks: 201 with an SDP answer, the recording completes, the
file decodes cleanly (ffmpeg), holds VP8 and Opus (ffprobe), its video
covers the publishing time and holds about the frames the browser says it
encoded; RTCP reached the browser (its PLI count, REMB bitrate cap).

A second, independent stack publishes too: GStreamer's webrtcbin
(tests/support/whip_gst_publisher.py: libnice, OpenSSL DTLS, no trickle).

Then what must not work: a browser whose offer names another DTLS
fingerprint gets its session ended and nothing recorded; STUN with
credentials of no session, or a bad MESSAGE-INTEGRITY, is ignored while a
correct binding request (built here independently: HMAC-SHA1, CRC-32) is
answered with the sender's address; bad SDP, an offer without VP8 for
webm, mp4 with VP8, a wrong content type, an oversize body and a missing
token get 400/400/400/415/413/401 with a JSON detail; more publishers than
the concurrency limit get start's refusal.

Loss: through a relay that loses 2 % of the browser's SRTP (seeded; ICE
and DTLS untouched), the share of the encoded frames that reach the file
whole, with generic NACK (webrtc.nack = true, the default) and without.

EDGEREC_WHIP_RUNS=N repeats the browser publish N times (default 1)."""

import hashlib
import hmac
import json
import os
import re
import socket
import struct
import subprocess
import zlib

from edgerec_harness import Edgerec, browser_dir, run_tests
from proc_stat import cpu_seconds
from rtp_impair import PeerRelay

SRC = os.environ.get("EDGEREC_SOURCE_DIR") or os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
BROWSER_DIR = os.path.abspath(os.path.join(SRC, "tests", "support", "browser"))
PUBLISH_SECONDS = 6


class Ctx:
    pass


def free_udp_port():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def setup(extra=None):
    browser_dir()
    c = Ctx()
    c.udp = free_udp_port()
    config = {
        "default_quality": "low",
        "webrtc.udp_port": c.udp,
        "webrtc.host_addresses": "127.0.0.1",
        "webrtc.consent_timeout": "8s",
        "max_concurrent_recordings": 3,
    }
    config.update(extra or {})
    c.node = Edgerec(name="whip", config=config).start()
    c.nodes = [c.node]
    return c


def teardown(c):
    if c is not None and c.node.alive():
        assert c.node.stop() == 0


def whip_path(room, fmt="webm"):
    return "/api/webrtc/rooms/%s/whip?recording_format=%s" % (room, fmt)


def publish(c, room, fmt="webm", seconds=PUBLISH_SECONDS, mode="", codec="vp8"):
    args = ["node", os.path.join(BROWSER_DIR, "whip.mjs"), c.node.url + whip_path(room, fmt),
            c.node.token("alice"), str(seconds), codec]
    if mode:
        args.append(mode)
    out = subprocess.run(args, capture_output=True, text=True, timeout=120, cwd=BROWSER_DIR)
    lines = [l for l in out.stdout.splitlines() if l.startswith("{")]
    assert lines, (out.returncode, out.stdout, out.stderr[-2000:])
    res = json.loads(lines[-1])
    print("publisher: %s" % json.dumps(res), flush=True)
    return out.returncode, res


def ffprobe(path):
    out = subprocess.run(["ffprobe", "-v", "error", "-count_frames", "-show_streams", "-show_format", "-of", "json",
                          path], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def file_of(rec):
    return os.path.join(rec["local_path"], rec["file_name"])


def metric(c, name, labels=""):
    try:
        return c.node.metric(name, labels)
    except AssertionError:
        return 0.0


def check_browser_recording(c, room, fmt, codec="vp8", only=False):
    """The browser publishes 'codec' (vp8 or h264; first in its offer, or
    with 'only' its one video codec) + Opus into a 'fmt' recording; checks
    the file as the module's docstring says."""
    cpu0 = cpu_seconds([c.node.proc.pid])
    code, res = publish(c, room, fmt, codec=codec + ("-only" if only else ""))
    cpu = cpu_seconds([c.node.proc.pid]) - cpu0
    assert code == 0 and res.get("status") == 201, res
    assert res["video"]["codec"].lower() == "video/" + codec and res["audio"]["codec"].lower() == "audio/opus", res
    assert res["delete_status"] == 200, res
    rid = res["recording_id"]
    assert res["location"] == "/api/webrtc/rooms/%s/whip/%s" % (room, rid), res
    rec = c.node.wait_status(room, rid, ("completed", "failed"), timeout=60)
    assert rec["status"] == "completed", rec
    md = rec["metadata"]
    assert md["whip"]["video_codec"] == codec and md["whip"]["audio_codec"] == "opus", md
    assert rec.get("stop_reason", md.get("stop_reason", "requested")) in ("requested", None), rec
    path = file_of(rec)
    # passthrough: the frames keep the file's timestamps, else ffmpeg's null
    # muxer may put two on one 1/fps slot where the RTP clock mapping slews
    # (core/media/README.md, timestamps) and note its own muxing; a few
    # such notes are still allowed, they are not decoding errors.
    dec = subprocess.run(["ffmpeg", "-v", "error", "-i", path, "-fps_mode", "passthrough", "-f", "null", "-"],
                         capture_output=True, text=True, timeout=120)
    errors = [l for l in dec.stderr.splitlines() if l.strip() and "non monotonically increasing dts" not in l]
    slots = len(dec.stderr.splitlines()) - len(errors)
    assert dec.returncode == 0 and not errors and slots <= 3, dec.stderr[-2000:]
    info = ffprobe(path)
    codecs = sorted(s["codec_name"] for s in info["streams"])
    assert codecs == sorted(["opus", codec]), codecs
    video = [s for s in info["streams"] if s["codec_type"] == "video"][0]
    audio = [s for s in info["streams"] if s["codec_type"] == "audio"][0]
    frames = int(video["nb_read_frames"])
    duration = float(info["format"]["duration"])
    published = res["published_ms"] / 1000.0
    print("file: %.2f s, %d video frames (%sx%s), %s audio frames; browser encoded %d frames in %.2f s, "
          "PLIs %d, NACKs %d, target bitrate %s" % (duration, frames, video["width"], video["height"],
                                                   audio["nb_read_frames"], res["video"]["framesEncoded"],
                                                   published, res["video"]["pliCount"],
                                                   res["video"]["nackCount"], res["video"]["targetBitrate"]),
          flush=True)
    # The file covers the publishing time: from connection to DELETE,
    # less the first keyframe's wait, plus what was sent before the timer.
    assert published - 1.5 <= duration <= published + 3.0, (duration, published)
    # A figure, not a check: edgerec's CPU from the browser's start to DELETE (ICE, DTLS,
    # SRTP, jitter buffer, muxing; the idle server's own share included).
    print("edgerec CPU over the publish: %.2f s for %.2f s published (%.1f %% of a core)"
          % (cpu, published, 100 * cpu / published), flush=True)
    # Every frame the browser encoded reached the file (loopback: no loss),
    # less those before the first keyframe.
    assert frames >= 0.9 * res["video"]["framesEncoded"] - 15, (frames, res["video"])
    assert frames <= res["video_frames_at_delete"], (frames, res)
    assert int(audio["nb_read_frames"]) >= 40 * (published - 1.5), audio
    # edgerec asked for a keyframe at the start (the browser counts PLIs).
    assert res["video"]["pliCount"] >= 1, res["video"]
    return rec, res


def test_browser_publishes_vp8_opus(c):
    runs = int(os.environ.get("EDGEREC_WHIP_RUNS", "1"))
    before = metric(c, "edgerec_whip_packets_total", '{kind="rtcp_out"}')
    for i in range(runs):
        check_browser_recording(c, "whip-webm-%d" % i, "webm")
        print("run %d/%d ok" % (i + 1, runs), flush=True)
    assert metric(c, "edgerec_whip_packets_total", '{kind="rtcp_out"}') > before
    assert metric(c, "edgerec_whip_sessions_active") == 0


def test_browser_publishes_into_mkv(c):
    # mkv takes H.264 when offered (test_whip_h264.py), VP8 from an offer without it.
    rec, _ = check_browser_recording(c, "whip-mkv", "mkv", only=True)
    assert rec["file_name"].endswith(".mkv")


def test_gstreamer_webrtcbin_publishes(c):
    # Longer than the node's consent timeout (8 s): libnice sends no consent
    # checks once connected, only a binding indication every 25 s, so the
    # media it sends must keep the session alive.
    seconds = 12
    video, info = gst_publish(c, "whip-gst", "127.0.0.1", seconds)
    assert (int(video["width"]), int(video["height"])) == (320, 240), video


def gst_publish(c, room, local_ip, seconds):
    """GStreamer's webrtcbin (tests/support/whip_gst_publisher.py) publishes
    'seconds' from 'local_ip' into 'room' of c.node; checks the answer, the
    DELETE, the completed recording, its codecs, frames (30 fps for the
    publishing time; a loaded box may encode fewer) and duration. Returns
    (ffprobe's video stream, the whole ffprobe result)."""
    out = subprocess.run(["/usr/bin/python3", os.path.join(SRC, "tests", "support", "whip_gst_publisher.py"),
                          "--url", c.node.url + whip_path(room), "--token", c.node.token("alice"),
                          "--local-ip", local_ip, "--seconds", str(seconds)],
                         capture_output=True, text=True, timeout=120)
    lines = [l for l in out.stdout.splitlines() if l.startswith("{")]
    assert out.returncode == 0 and lines, (out.returncode, out.stdout, out.stderr[-2000:])
    res = json.loads(lines[-1])
    print("webrtcbin: %s" % json.dumps(res), flush=True)
    assert res["status"] == 201 and res["delete_status"] == 200, res
    rec = c.node.wait_status(room, res["recording_id"], ("completed", "failed"), timeout=60)
    assert rec["status"] == "completed", rec
    info = ffprobe(file_of(rec))
    assert sorted(s["codec_name"] for s in info["streams"]) == ["opus", "vp8"], info["streams"]
    video = [s for s in info["streams"] if s["codec_type"] == "video"][0]
    assert int(video["nb_read_frames"]) >= 0.6 * 30 * seconds, video
    assert float(info["format"]["duration"]) >= seconds - 1.0, info["format"]
    return video, info


def lossy_publish(nack, seconds=8):
    """A node that listens on 127.0.0.1 and announces 127.0.0.2, where a
    relay losing 2 % of the media forwards to it."""
    udp = free_udp_port()
    node = Edgerec(name="whip-loss-%s" % ("nack" if nack else "plain"), config={
        "default_quality": "low", "webrtc.udp_port": udp, "webrtc.bind": "127.0.0.1",
        "webrtc.host_addresses": "127.0.0.2", "webrtc.nack": "true" if nack else "false",
    }).start()
    relay = PeerRelay("127.0.0.2", udp, ("127.0.0.1", udp), loss=0.02, seed=7).start()
    try:
        out = subprocess.run(["node", os.path.join(BROWSER_DIR, "whip.mjs"), node.url + whip_path("lossy"),
                              node.token("alice"), str(seconds), "vp8"],
                             capture_output=True, text=True, timeout=120, cwd=BROWSER_DIR)
        res = json.loads([l for l in out.stdout.splitlines() if l.startswith("{")][-1])
        print("publisher (nack=%s): %s" % (nack, json.dumps(res)), flush=True)
        assert out.returncode == 0 and res["status"] == 201, (res, out.stderr[-1500:])
        rec = node.wait_status("lossy", res["recording_id"], ("completed", "failed"), timeout=60)
        assert rec["status"] == "completed", rec
        info = ffprobe(file_of(rec))
        frames = int([s for s in info["streams"] if s["codec_type"] == "video"][0]["nb_read_frames"])
        share = frames / float(res["video"]["framesEncoded"])
        net = rec["metadata"].get("network", {})
        print("metadata.network (nack=%s): %s" % (nack, json.dumps(net)), flush=True)
        if nack:
            assert net.get("nack_requested", 0) > 0 and net.get("nack_recovered", 0) > 0, net
            # Chromium offers RTX: its repairs come on their own payload
            # type and SSRC and must be put back in place (RFC 4588).
            whip = rec["metadata"]["whip"]
            assert whip.get("nack") is True and isinstance(whip.get("rtx_pt"), int), whip
            assert node.metric("edgerec_whip_rtx_total", '{kind="repair"}') > 0
        print("nack=%s: %d of %d encoded frames in the file (%.1f %%); relay %s; browser NACKs received %d, "
              "retransmitted %d" % (nack, frames, res["video"]["framesEncoded"], 100 * share, relay.counts,
                                    res["video"]["nackCount"], res["video"]["retransmittedPacketsSent"]),
              flush=True)
        return share, res
    finally:
        relay.stop()
        node.stop()


def test_loss_recovered_by_nack(c):
    with_nack, res = lossy_publish(True)
    without, _ = lossy_publish(False)
    print("share of encoded frames in the file at 2 %% media loss: %.1f %% with NACK, %.1f %% without"
          % (100 * with_nack, 100 * without), flush=True)
    assert res["video"]["nackCount"] > 0, res
    assert with_nack >= 0.9, with_nack
    assert with_nack > without, (with_nack, without)


def test_wrong_fingerprint_gets_no_media(c):
    ended = metric(c, "edgerec_whip_sessions_ended_total", '{reason="fingerprint_mismatch"}')
    rtp = metric(c, "edgerec_whip_packets_total", '{kind="rtp_in"}')
    code, res = publish(c, "whip-badfp", "webm", seconds=2, mode="badfp")
    assert res.get("status") == 201, res
    rid = res["recording_id"]
    rec = c.node.wait_status("whip-badfp", rid, ("failed", "completed"), timeout=40)
    assert rec["status"] == "failed", rec
    assert "fingerprint" in (rec.get("error") or ""), rec
    assert metric(c, "edgerec_whip_sessions_ended_total", '{reason="fingerprint_mismatch"}') == ended + 1
    assert metric(c, "edgerec_whip_packets_total", '{kind="rtp_in"}') == rtp
    assert not os.path.exists(file_of(rec)) or os.path.getsize(file_of(rec)) == 0


# ---- without a browser --------------------------------------------------------------

FP = ":".join("%02X" % b for b in hashlib.sha256(b"not a certificate").digest())


def offer(video="a=rtpmap:96 VP8/90000", ufrag="pubU", pwd="pubPassword0123456789xyz"):
    return ("v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0 1\r\n"
            "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\na=sendonly\r\na=rtcp-mux\r\n"
            "a=ice-ufrag:%s\r\na=ice-pwd:%s\r\na=fingerprint:sha-256 %s\r\na=setup:actpass\r\n"
            "a=rtpmap:111 opus/48000/2\r\n"
            "m=video 9 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 0.0.0.0\r\na=mid:1\r\na=sendonly\r\na=rtcp-mux\r\n"
            "a=ice-ufrag:%s\r\na=ice-pwd:%s\r\na=fingerprint:sha-256 %s\r\na=setup:actpass\r\n%s\r\n"
            % (ufrag, pwd, FP, ufrag, pwd, FP, video))


def post(c, body, room="whip-bad", fmt="webm", token="alice", ctype="application/sdp"):
    hdrs = {"Content-Type": ctype} if ctype else {}
    return c.node.request("POST", whip_path(room, fmt), token=token, headers=hdrs,
                          body=body.encode() if isinstance(body, str) else body)


def stun_request(ufrag, pwd, txid, use_candidate=True):
    """A binding request as RFC 8489 and RFC 8445 build it."""
    user = ufrag.encode()
    attrs = struct.pack("!HH", 0x0006, len(user)) + user + b"\0" * ((4 - len(user) % 4) % 4)
    attrs += struct.pack("!HHI", 0x0024, 4, 0x6e0001ff)
    attrs += struct.pack("!HHQ", 0x802A, 8, 0x1234)
    if use_candidate:
        attrs += struct.pack("!HH", 0x0025, 0)
    head = struct.pack("!HHI", 0x0001, len(attrs) + 24, 0x2112A442) + txid
    mac = hmac.new(pwd.encode(), head + attrs, hashlib.sha1).digest()
    msg = struct.pack("!HHI", 0x0001, len(attrs) + 24 + 8, 0x2112A442) + txid + attrs + \
        struct.pack("!HH", 0x0008, 20) + mac
    crc = (zlib.crc32(msg) ^ 0x5354554E) & 0xffffffff
    return msg + struct.pack("!HHI", 0x8028, 4, crc)


def parse_stun_response(data, pwd):
    typ, length, cookie = struct.unpack("!HHI", data[:8])
    assert typ == 0x0101 and cookie == 0x2112A442 and length + 20 == len(data), data
    at, attrs = 20, {}
    while at < len(data):
        t, l = struct.unpack("!HH", data[at:at + 4])
        attrs[t] = (at, data[at + 4:at + 4 + l])
        at += 4 + l + ((4 - l % 4) % 4)
    # FINGERPRINT over everything before it
    fp_at, fp = attrs[0x8028]
    assert struct.unpack("!I", fp)[0] == (zlib.crc32(data[:fp_at]) ^ 0x5354554E) & 0xffffffff
    # MESSAGE-INTEGRITY with the length ending after it
    mi_at, mi = attrs[0x0008]
    head = struct.pack("!HHI", 0x0101, mi_at + 24 - 20, 0x2112A442) + data[8:20]
    assert hmac.new(pwd.encode(), head + data[20:mi_at], hashlib.sha1).digest() == mi
    _, xma = attrs[0x0020]
    port = struct.unpack("!H", xma[2:4])[0] ^ 0x2112
    addr = socket.inet_ntoa(struct.pack("!I", struct.unpack("!I", xma[4:8])[0] ^ 0x2112A442))
    return addr, port


def answer_creds(sdp):
    ufrag = re.search(r"a=ice-ufrag:(\S+)", sdp).group(1)
    pwd = re.search(r"a=ice-pwd:(\S+)", sdp).group(1)
    return ufrag, pwd


def test_bad_requests(c):
    r = post(c, offer(), token=None)
    assert r.status == 401 and r.json.get("detail"), r
    r = post(c, "hello, not SDP")
    assert r.status == 400 and r.json["code"] == "invalid_sdp" and r.json["detail"], r
    r = post(c, offer().replace("a=fingerprint", "a=x-fingerprint"))
    assert r.status == 400 and "fingerprint" in r.json["detail"], r
    r = post(c, offer(video="a=rtpmap:102 H264/90000\r\na=fmtp:102 packetization-mode=1;profile-level-id=42e01f")
             .replace("UDP/TLS/RTP/SAVPF 96", "UDP/TLS/RTP/SAVPF 102"))
    assert r.status == 400 and r.json["code"] == "unsupported_codec" and "VP8" in r.json["detail"], r
    r = post(c, offer(), fmt="mp4")
    assert r.status == 400 and r.json["code"] == "unsupported_codec" and "H.264" in r.json["detail"], r
    r = post(c, offer(), ctype="application/json")
    assert r.status == 415 and r.json["detail"], r
    r = post(c, offer() + "a=x-pad:" + "x" * 70000 + "\r\n")
    assert r.status == 413 and r.json["detail"], r
    r = c.node.request("DELETE", "/api/webrtc/rooms/whip-bad/whip/00000000-0000-4000-8000-000000000000")
    assert r.status == 404, r
    r = c.node.request("OPTIONS", "/api/webrtc/rooms/whip-bad/whip", token=None)
    assert r.status == 204 and r.headers.get("access-control-allow-origin") == "*", r
    assert "POST" in r.headers.get("access-control-allow-methods", ""), r.headers
    assert metric(c, "edgerec_whip_sessions_active") == 0


def test_stun_credentials(c):
    r = post(c, offer(), room="whip-stun")
    assert r.status == 201 and r.headers["content-type"] == "application/sdp", r
    sdp = r.body.decode()
    assert "a=ice-lite" in sdp and "a=setup:passive" in sdp and "a=recvonly" in sdp, sdp
    assert "a=candidate:1 1 udp 2130706431 127.0.0.1 %d typ host" % c.udp in sdp, sdp
    ufrag, pwd = answer_creds(sdp)
    rid = r.headers["x-recording-id"]
    assert r.headers["location"].endswith("/whip/" + rid)
    # Pending until a keyframe reaches the file.
    assert c.node.op("status", "whip-stun", rid).json["status"] == "pending"
    # Trickle (RFC 8840 sdpfrag): accepted, nothing needed by a lite agent;
    # new credentials would be an ICE restart: 422.
    loc = r.headers["location"]
    frag = "a=ice-ufrag:pubU\r\na=ice-pwd:pubPassword0123456789xyz\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0\r\na=mid:0\r\n" \
           "a=candidate:1 1 udp 2130706431 127.0.0.1 50000 typ host\r\n"
    p = c.node.request("PATCH", loc, headers={"Content-Type": "application/trickle-ice-sdpfrag"}, body=frag)
    assert p.status == 204, p
    p = c.node.request("PATCH", loc, headers={"Content-Type": "application/trickle-ice-sdpfrag"},
                       body=frag.replace("pubU", "newU"))
    assert p.status == 422 and p.json["detail"], p
    p = c.node.request("PATCH", loc, headers={"Content-Type": "application/sdp"}, body=frag)
    assert p.status == 415, p
    assert c.node.request("PATCH", loc, token=None, headers={"Content-Type": "application/trickle-ice-sdpfrag"},
                          body=frag).status == 401
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    s.settimeout(1.0)
    try:
        unknown = metric(c, "edgerec_whip_dropped_total", '{reason="stun_unknown_credentials"}')
        bad = metric(c, "edgerec_whip_dropped_total", '{reason="stun_bad_integrity"}')
        # Credentials of no session: ignored.
        s.sendto(stun_request("nosuchuf:pubU", pwd, os.urandom(12)), ("127.0.0.1", c.udp))
        # Our ufrag, wrong password: ignored.
        s.sendto(stun_request(ufrag + ":pubU", "x" * 24, os.urandom(12)), ("127.0.0.1", c.udp))
        try:
            data = s.recv(2048)
            raise AssertionError("answered a STUN request it should have ignored: %r" % data)
        except socket.timeout:
            pass
        assert metric(c, "edgerec_whip_dropped_total", '{reason="stun_unknown_credentials"}') == unknown + 1
        assert metric(c, "edgerec_whip_dropped_total", '{reason="stun_bad_integrity"}') == bad + 1
        # DTLS from an address no check validated: dropped.
        s2 = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s2.bind(("127.0.0.1", 0))
        unval = metric(c, "edgerec_whip_dropped_total", '{reason="unvalidated_address"}')
        s2.sendto(b"\x16\xfe\xfd" + b"\0" * 40, ("127.0.0.1", c.udp))
        s2.close()
        # The right credentials: answered, with our address.
        txid = os.urandom(12)
        s.sendto(stun_request(ufrag + ":pubU", pwd, txid), ("127.0.0.1", c.udp))
        data = s.recv(2048)
        assert data[8:20] == txid
        assert parse_stun_response(data, pwd) == s.getsockname()
        assert metric(c, "edgerec_whip_dropped_total", '{reason="unvalidated_address"}') == unval + 1
    finally:
        s.close()
    # Nothing follows the checks: no DTLS; after the consent timeout (8 s
    # here) the session ends and its recording fails (nothing recorded).
    rec = c.node.wait_status("whip-stun", rid, ("failed", "completed"), timeout=30)
    assert rec["status"] == "failed" and "no DTLS handshake" in (rec.get("error") or ""), rec
    r = c.node.request("DELETE", "/api/webrtc/rooms/whip-stun/whip/" + rid)
    assert r.status == 200, r


def test_ice_servers_in_link_headers(c):
    """webrtc.ice_servers reaches publishers as RFC 9725 Link headers on the
    201 (TURN with the configured credentials); an entry that is not a
    STUN/TURN URI or would break the header is left out; none on the
    unauthenticated OPTIONS; none configured, none sent."""
    node = Edgerec(name="whip-ice", config={
        "default_quality": "low", "webrtc.udp_port": free_udp_port(), "webrtc.host_addresses": "127.0.0.1",
        "webrtc.ice_servers": "stun:stun.example.net:3478, turn:turn.example.net?transport=udp,"
                              "http://not.ice, turn:bad<uri>",
        "webrtc.ice_username": "box1", "webrtc.ice_credential": "s3cret",
    }).start()
    try:
        r = node.request("POST", whip_path("ice-links"), headers={"Content-Type": "application/sdp"},
                         body=offer().encode())
        assert r.status == 201, r
        links = [v for k, v in r.header_list if k.lower() == "link"]
        assert links == ['<stun:stun.example.net:3478>; rel="ice-server"',
                         '<turn:turn.example.net?transport=udp>; rel="ice-server"; username="box1"; '
                         'credential="s3cret"; credential-type="password"'], links
        assert "link" in r.headers.get("access-control-expose-headers", "").lower(), r.headers
        assert node.request("DELETE", r.headers["location"]).status == 200
        r = node.request("OPTIONS", whip_path("ice-links"), token=None)
        assert r.status == 204 and not [k for k, _ in r.header_list if k.lower() == "link"], r.header_list
    finally:
        assert node.stop() == 0


def test_no_link_headers_by_default(c):
    r = post(c, offer(), room="whip-nolink")
    assert r.status == 201, r
    assert not [k for k, _ in r.header_list if k.lower() == "link"], r.header_list
    assert c.node.request("DELETE", r.headers["location"]).status == 200


def test_concurrency_limit_refuses_like_start(c):
    rids = []
    try:
        for i in range(3):
            r = post(c, offer(), room="whip-limit-%d" % i)
            assert r.status == 201, r
            rids.append(("whip-limit-%d" % i, r.headers["x-recording-id"]))
        r = post(c, offer(), room="whip-limit-x")
        s = c.node.start_recording("whip-limit-y")
        assert r.status == s.status and r.json["code"] == s.json["code"], (r, s)
        assert r.status in (400, 429, 503), r
        assert metric(c, "edgerec_whip_sessions_active") == 3
    finally:
        for room, rid in rids:
            c.node.request("DELETE", "/api/webrtc/rooms/%s/whip/%s" % (room, rid))
    assert metric(c, "edgerec_whip_sessions_active") == 0


if __name__ == "__main__":
    run_tests(globals(), setup=setup, teardown=teardown)
