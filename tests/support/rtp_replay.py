"""rtp_replay: a captured 720p VP8 + Opus RTP session replayed to N receivers.

Shared by scripts/bench.d/50-rtp, scripts/bench.d/70-memory and the memory
test. The session is captured once off the wire from ffmpeg (testsrc2,
VP8 2.5 Mb/s realtime, Opus 128k) and kept in a cache directory; the C
harness's `replay` mode (itest_media_rtp, sendmmsg) sends it to N receivers
at once, each with its own ports (video base+4i, audio base+4i+2, RTCP muxed)
and SSRCs, looping with continuous sequence numbers and timestamps, paced in
real time.

  capture(cache)            path of the capture (made on first use)
  port_base(n)              a block of 4n free UDP ports
  replay(cap, n, base, s)   sends for s seconds; returns (video frames, audio
                            packets) sent to each receiver
  rtp_room_config(i, base)  the `room.<id>.*` options of an rtp room fed by
                            receiver i (for Edgerec(config=...))
"""

import os
import socket
import struct
import subprocess
import threading
import time

BUILD = os.environ.get("EDGEREC_BUILD_DIR", "build")
HARNESS = os.path.join(BUILD, "tests", "itest_media_rtp")


def capture(cache):
    """A 720p 2.5 Mb/s VP8 + Opus session captured off the wire from ffmpeg."""
    cap = os.path.join(cache, "session.rtpcap")
    if os.path.exists(cap):
        return cap
    os.makedirs(cache, exist_ok=True)
    src = os.path.join(cache, "src.webm")
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=30",
                    "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000", "-t", "6",
                    "-c:v", "libvpx", "-deadline", "realtime", "-cpu-used", "8", "-b:v", "2500k", "-minrate", "2500k",
                    "-maxrate", "2500k", "-g", "60", "-auto-alt-ref", "0", "-c:a", "libopus", "-b:a", "128k", "-ac", "2",
                    src], check=True)
    socks = []
    for _ in range(2):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        s.bind(("127.0.0.1", 0))
        s.settimeout(0.05)
        socks.append(s)
    records, stop = [], threading.Event()
    t0 = [None]

    def rx(i):
        while not stop.is_set():
            try:
                d = socks[i].recv(2048)
            except socket.timeout:
                continue
            now = time.monotonic()
            if t0[0] is None:
                t0[0] = now
            if len(d) >= 12 and not (192 <= d[1] <= 223):
                records.append((now - t0[0], i, d))
    threads = [threading.Thread(target=rx, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    subprocess.run(["ffmpeg", "-v", "error", "-re", "-i", src,
                    "-map", "0:v", "-c", "copy", "-payload_type", "96", "-f", "rtp",
                    "rtp://127.0.0.1:%d?pkt_size=1200" % socks[0].getsockname()[1],
                    "-map", "0:a", "-c", "copy", "-payload_type", "97", "-f", "rtp",
                    "rtp://127.0.0.1:%d?pkt_size=1200" % socks[1].getsockname()[1]], check=True,
                   stdout=subprocess.DEVNULL)
    time.sleep(0.3)
    stop.set()
    for t in threads:
        t.join()
    for s in socks:
        s.close()
    records.sort(key=lambda r: r[0])
    tmp = cap + ".tmp"
    with open(tmp, "wb") as f:
        for off, i, d in records:
            f.write(struct.pack("<BIH", i, int(off * 1e6), len(d)) + d)
    os.rename(tmp, cap)
    return cap


def port_base(n):
    """A block of 4n free UDP ports (checked by binding each)."""
    for _ in range(100):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("127.0.0.1", 0))
        b = s.getsockname()[1]
        s.close()
        b = 20000 + (b % 20000) // 4 * 4
        if b + 4 * n + 4 >= 65000:
            continue
        ok = True
        for port in range(b, b + 4 * n):
            t = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                t.bind(("0.0.0.0", port))
            except OSError:
                ok = False
            t.close()
            if not ok:
                break
        if ok:
            return b
    return 20000


def replay(cap, n, base, seconds):
    """Sends the capture to n receivers for 'seconds'; returns (video frames,
    audio packets) each receiver was sent."""
    r = subprocess.run([HARNESS, "replay", cap, str(n), str(base), str(seconds)], capture_output=True, text=True)
    stats = dict(kv.split("=") for kv in r.stdout.split())
    return int(stats.get("video_frames_each", 0)), int(stats.get("audio_packets_each", 0))


def rtp_room_id(i):
    return "rtp-bench-%d" % i


def rtp_room_config(i, base):
    """Options making room rtp_room_id(i) an rtp room on receiver i's ports."""
    room = rtp_room_id(i)
    return {
        "room.%s.source" % room: "rtp",
        "room.%s.args" % room: "video_port=%d,audio_port=%d,video_pt=96,audio_pt=97,bind=127.0.0.1,rtcp_mux=1" % (
            base + 4 * i, base + 4 * i + 2),
    }


def rtp_server_config(n, base):
    """Options for a server recording n rtp rooms fed from 'base' at once."""
    cfg = {"max_concurrent_recordings": n + 4, "rtp.port_min": base, "rtp.port_max": base + 4 * n + 3}
    for i in range(n):
        cfg.update(rtp_room_config(i, base))
    return cfg


def _parallel(node, fn, items, workers):
    """fn(client, item) for every item, from 'workers' threads, each with
    its own connection to 'node' (an Edgerec); returns the results in order.
    An orchestrator starting many rooms does the same."""
    from concurrent.futures import ThreadPoolExecutor
    local = threading.local()

    def call(item):
        if not hasattr(local, "client"):
            local.client = node.client()
        return fn(local.client, item)
    with ThreadPoolExecutor(max_workers=workers) as ex:
        return list(ex.map(call, items))


def start_rooms(node, n, workers=16):
    """Starts rtp rooms 0..n-1 (webm) through the API; returns one
    (room, recording_id or None, response) per room."""
    def start(c, i):
        room = rtp_room_id(i)
        r = c.request("POST", "/api/webrtc/rooms/%s/recording/start?recording_format=webm" % room)
        return room, (r.json or {}).get("recording_id") if r.status == 200 else None, r
    return _parallel(node, start, range(n), workers)


def stop_recordings(node, started, workers=16):
    """Stops (room, recording_id, ...) recordings; returns the responses."""
    def stop(c, item):
        return c.request("POST", "/api/webrtc/rooms/%s/recording/%s/stop" % (item[0], item[1]))
    return _parallel(node, stop, [s for s in started if s[1]], workers)


def wait_finished(node, started, timeout, workers=8):
    """Waits until every started recording is completed or failed; returns
    their state objects ({"status": "stuck"} for those that did not finish)."""
    def wait(c, item):
        deadline = time.monotonic() + timeout
        path = "/api/webrtc/rooms/%s/recording/%s/status" % (item[0], item[1])
        while time.monotonic() < deadline:
            r = c.request("GET", path)
            if r.status == 200 and r.json.get("status") in ("completed", "failed"):
                return r.json
            time.sleep(0.3)
        return {"status": "stuck", "error": "not finished after %.0f s" % timeout}
    return _parallel(node, wait, [s for s in started if s[1]], workers)
