"""rtp_impair: a seeded UDP relay that loses, reorders and duplicates datagrams.

Used by the RTP integration tests between a real sender and the recorder:

    relay = Relay([(6004, ("127.0.0.1", 5004))], loss=0.02, reorder=0.05, dup=0.01, seed=1)
    relay.start(); ...; relay.stop(); relay.counts  # {'in':..,'lost':..,'reordered':..,'dup':..}

A mapping may carry options as a third element: {"clean": True} relays it
untouched (RTCP beside impaired RTP), {"drop": [i, ...]} also drops exactly
those datagrams (0-based arrival index) of it.

A relay made with burst=(hold, period) also holds every datagram that
arrives in the first 'hold' seconds of each 'period' and sends them all at
once when the hold ends, as a congested path or a relay that batches does.

or from a shell:

    python3 rtp_impair.py --map 6004:5004 --loss 0.02 --reorder 0.05 --dup 0.01 --seed 1

Decisions come from one random.Random(seed) per mapping, drawn per datagram
in arrival order, so a run is reproducible up to the sender's own timing. A
reordered datagram is held back and sent after the next 1-3 datagrams of the
same mapping (or after 50 ms if none comes).
"""

import argparse
import random
import select
import socket
import threading
import time


class Relay:
    def __init__(self, maps, loss=0.0, reorder=0.0, dup=0.0, seed=1, host="127.0.0.1", burst=None):
        self.maps = maps
        self.loss, self.reorder, self.dup = loss, reorder, dup
        self.burst = burst
        self.seed = seed
        self.host = host
        self.counts = {"in": 0, "lost": 0, "reordered": 0, "dup": 0, "bursts": 0}
        self._t0 = time.monotonic()
        self._stop = threading.Event()
        self._thread = None
        self._socks = []

    def start(self):
        for i, m in enumerate(self.maps):
            port, target = m[0], m[1]
            opts = m[2] if len(m) > 2 else {}
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind((self.host, port))
            s.setblocking(False)
            out = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self._socks.append({"in": s, "out": out, "target": target,
                                "rng": random.Random(self.seed * 1000 + i), "held": [],
                                "clean": opts.get("clean", False), "drop": set(opts.get("drop", ())),
                                "n": 0, "burst": []})
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def stop(self):
        self._stop.set()
        if self._thread:
            self._thread.join(2)
        for m in self._socks:
            for data in m["burst"]:
                m["out"].sendto(data, m["target"])
            for held in m["held"]:
                m["out"].sendto(held[0], m["target"])
            m["in"].close()
            m["out"].close()

    def _forward(self, m, data):
        rng = m["rng"]
        self.counts["in"] += 1
        index = m["n"]
        m["n"] += 1
        if index in m["drop"]:
            self.counts["lost"] += 1
            return
        if m["clean"]:
            m["out"].sendto(data, m["target"])
            return
        if self._holding():
            m["burst"].append(data)
            return
        r = rng.random()
        if r < self.loss:
            self.counts["lost"] += 1
            return
        if r < self.loss + self.reorder:
            self.counts["reordered"] += 1
            m["held"].append([data, rng.randint(1, 3), time.monotonic() + 0.05])
            return
        m["out"].sendto(data, m["target"])
        if rng.random() < self.dup:
            self.counts["dup"] += 1
            m["out"].sendto(data, m["target"])
        self._release(m, sent=True)

    def _holding(self):
        if not self.burst:
            return False
        hold, period = self.burst
        return (time.monotonic() - self._t0) % period < hold

    def _release(self, m, sent=False):
        if m["burst"] and not self._holding():
            self.counts["bursts"] += 1
            held, m["burst"] = m["burst"], []
            for data in held:
                m["out"].sendto(data, m["target"])
        now = time.monotonic()
        keep = []
        for h in m["held"]:
            if sent:
                h[1] -= 1
            if h[1] <= 0 or now >= h[2]:
                m["out"].sendto(h[0], m["target"])
            else:
                keep.append(h)
        m["held"] = keep

    def _run(self):
        socks = {m["in"]: m for m in self._socks}
        while not self._stop.is_set():
            ready, _, _ = select.select(list(socks), [], [], 0.01)
            for s in ready:
                while True:
                    try:
                        data = s.recv(65536)
                    except BlockingIOError:
                        break
                    self._forward(socks[s], data)
            for m in self._socks:
                self._release(m)


class PeerRelay:
    """Between WebRTC peers on one UDP port each: the publisher sends to
    (host, port) as if it were the server; datagrams go on from one socket
    to 'server', and what the server sends back goes to the publisher's
    last address. Only SRTP/SRTCP from the publisher (first byte 128-191,
    RFC 7983) is lost, with probability 'loss' from random.Random(seed), so
    ICE and DTLS stay deterministic and the loss hits media alone.
    counts: {'in', 'lost', 'back'}."""

    def __init__(self, host, port, server, loss=0.0, seed=1):
        self.host, self.port, self.server = host, port, server
        self.loss = loss
        self.rng = random.Random(seed)
        self.counts = {"in": 0, "lost": 0, "back": 0}
        self._stop = threading.Event()
        self._thread = None

    def start(self):
        self.front = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.front.bind((self.host, self.port))
        self.back = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.back.bind((self.server[0], 0))
        self.peer = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def stop(self):
        self._stop.set()
        if self._thread:
            self._thread.join(2)
        self.front.close()
        self.back.close()

    def _run(self):
        while not self._stop.is_set():
            ready, _, _ = select.select([self.front, self.back], [], [], 0.05)
            if self.front in ready:
                data, self.peer = self.front.recvfrom(65536)
                self.counts["in"] += 1
                if 128 <= data[0] <= 191 and self.rng.random() < self.loss:
                    self.counts["lost"] += 1
                else:
                    self.back.sendto(data, self.server)
            if self.back in ready:
                data = self.back.recv(65536)
                if self.peer:
                    self.counts["back"] += 1
                    self.front.sendto(data, self.peer)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--map", action="append", required=True, help="LISTEN:TARGET_PORT or LISTEN:HOST:PORT")
    ap.add_argument("--loss", type=float, default=0.0)
    ap.add_argument("--reorder", type=float, default=0.0)
    ap.add_argument("--dup", type=float, default=0.0)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    maps = []
    for m in a.map:
        parts = m.split(":")
        if len(parts) == 2:
            maps.append((int(parts[0]), ("127.0.0.1", int(parts[1]))))
        else:
            maps.append((int(parts[0]), (parts[1], int(parts[2]))))
    relay = Relay(maps, a.loss, a.reorder, a.dup, a.seed).start()
    try:
        while True:
            time.sleep(1)
    except KeyboardInterrupt:
        pass
    relay.stop()
    print(relay.counts)


if __name__ == "__main__":
    main()
