"""test_ws_events: room events over WebSocket (SPEC §7) with two edgerec
nodes sharing one redis-server: what a client does on node A reaches a
subscriber of node B, in order, one JSON text frame per event with type,
room_id, data (the state object) and timestamp; subscribers of other rooms
get nothing; upgrades without a valid token or room are refused."""

import json
import os
import re
import time
import uuid

import websocket

from edgerec_harness import Edgerec, Redis, mint_token, run_tests, ws_next, TEST_SECRET

ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")


class Ctx:
    pass


def setup():
    c = Ctx()
    c.redis = Redis().start()
    # A room whose source breaks a third of a second in (a truncated Y4M).
    y4m = os.path.join(c.redis.dir, "truncated.y4m")
    with open(y4m, "wb") as f:
        f.write(b"YUV4MPEG2 W64 H48 F30:1 Ip C420jpeg\n")
        for i in range(10):
            f.write(b"FRAME\n" + bytes([i * 20]) * (64 * 48 * 3 // 2))
        f.write(b"FRAME\n" + b"\x10" * 100)
    cfg = {"default_quality": "low", "max_concurrent_recordings": 4,
           "room.broken.source": "file", "room.broken.args": "video=" + y4m}
    c.a = Edgerec(redis=c.redis, config=cfg, name="node-a").start()
    c.b = Edgerec(redis=c.redis, config=cfg, name="node-b").start()
    c.nodes = [c.a, c.b]
    return c


def teardown(c):
    for n in (c.a, c.b) if c else ():
        if n.alive():
            assert n.stop() == 0


def check_event(ev, typ, room, rid):
    assert set(ev) >= {"type", "room_id", "data", "timestamp"}, ev
    assert ev["type"] == typ and ev["room_id"] == room, ev
    assert isinstance(ev["data"], dict) and ev["data"].get("recording_id") == rid, ev
    assert ISO.match(ev["timestamp"]), ev["timestamp"]


def test_events_cross_node(c):
    room = "ws-" + uuid.uuid4().hex[:8]
    on_b = c.b.ws(room, user="watcher-b", via="query")
    on_a = c.a.ws(room, user="watcher-a", via="header")
    other = c.b.ws("elsewhere-" + room, user="watcher-c")
    try:
        r = c.a.start_recording(room, "alice")
        assert r.status == 200, r
        rid = r.json["recording_id"]
        ev = ws_next(on_b, "recording_started")
        check_event(ev, "recording_started", room, rid)
        check_event(ws_next(on_a, "recording_started"), "recording_started", room, rid)
        c.a.wait_status(room, rid, "recording")
        assert c.a.op("pause", room, rid).status == 200
        check_event(ws_next(on_b, "recording_paused"), "recording_paused", room, rid)
        # Node B reads the state node A wrote.
        r = c.b.op("status", room, rid)
        assert r.status == 200 and r.json["status"] == "paused", r
        # Node B cannot control a capture that runs on node A.
        r = c.b.op("resume", room, rid)
        assert r.status == 409 and r.json["code"] == "wrong_node", r
        assert c.a.op("resume", room, rid).status == 200
        check_event(ws_next(on_a, "recording_resumed"), "recording_resumed", room, rid)
        check_event(ws_next(on_b, "recording_resumed"), "recording_resumed", room, rid)
        time.sleep(0.5)
        assert c.a.op("stop", room, rid).status == 200
        ev = ws_next(on_b, "recording_stopped")
        check_event(ev, "recording_stopped", room, rid)
        assert isinstance(ev["data"].get("duration"), (int, float)) and ev["data"]["duration"] > 0, ev
        check_event(ws_next(on_b, "recording_completed", timeout=20), "recording_completed", room, rid)

        r = c.b.start_recording(room, "bob")
        assert r.status == 200, r
        rid2 = r.json["recording_id"]
        check_event(ws_next(on_a, "recording_started"), "recording_started", room, rid2)
        assert c.b.op("cancel", room, rid2, user="bob").status == 200
        check_event(ws_next(on_a, "recording_cancelled"), "recording_cancelled", room, rid2)
        check_event(ws_next(on_b, "recording_cancelled"), "recording_cancelled", room, rid2)

        # The other room's subscriber heard none of it.
        other.settimeout(1.0)
        try:
            frame = other.recv()
            raise AssertionError("subscriber of another room got %s" % frame)
        except websocket.WebSocketTimeoutException:
            pass
    finally:
        for w in (on_a, on_b, other):
            w.close()


def test_event_order_on_one_subscriber(c):
    room = "order-" + uuid.uuid4().hex[:8]
    w = c.b.ws(room)
    try:
        rid = c.a.start_recording(room, "alice").json["recording_id"]
        c.a.wait_status(room, rid, "recording")
        for op in ("pause", "resume", "pause", "resume", "stop"):
            assert c.a.op(op, room, rid).status == 200, op
        want = ["recording_started", "recording_paused", "recording_resumed", "recording_paused",
                "recording_resumed", "recording_stopped", "recording_completed"]
        got = []
        deadline = time.monotonic() + 20
        while len(got) < len(want) and time.monotonic() < deadline:
            ev = ws_next(w, None, timeout=deadline - time.monotonic())
            if ev["data"].get("recording_id") == rid:
                got.append(ev["type"])
        assert got == want, got
    finally:
        w.close()


def test_failed_event(c):
    w = c.b.ws("broken")
    try:
        r = c.a.start_recording("broken", "alice")
        assert r.status == 200, r
        rid = r.json["recording_id"]
        check_event(ws_next(w, "recording_started"), "recording_started", "broken", rid)
        ev = ws_next(w, "recording_failed")
        check_event(ev, "recording_failed", "broken", rid)
        assert ev["data"]["status"] == "failed" and "truncated" in ev["data"]["error"], ev
    finally:
        w.close()


def handshake_status(node, query, headers=None):
    u = node.url.replace("https://", "wss://") + "/api/webrtc/ws" + query
    try:
        w = websocket.create_connection(u, header=headers or [], timeout=5,
                                        sslopt={"ca_certs": node.cert_path})
        w.close()
        return 101
    except websocket.WebSocketBadStatusException as e:
        return e.status_code


def test_upgrade_refusals(c):
    good = mint_token(TEST_SECRET, "alice")
    assert handshake_status(c.a, "?room_id=lobby") == 401
    assert handshake_status(c.a, "?room_id=lobby&access_token=garbage") == 401
    assert handshake_status(c.a, "?room_id=lobby&access_token=" + mint_token(TEST_SECRET, "a", alg="none")) == 401
    assert handshake_status(c.a, "?room_id=lobby&access_token=" + mint_token(TEST_SECRET, "a", ttl=-3600)) == 401
    assert handshake_status(c.a, "?room_id=lobby", ["Authorization: Bearer " + mint_token("x" * 40, "a")]) == 401
    assert handshake_status(c.a, "?access_token=" + good) == 400
    assert handshake_status(c.a, "?room_id=bad$room&access_token=" + good) == 400
    assert handshake_status(c.a, "?room_id=" + "r" * 300 + "&access_token=" + good) == 400
    assert handshake_status(c.a, "?room_id=lobby&access_token=" + good) == 101
    m = c.a.request("GET", "/metrics", token=None).body.decode()
    assert re.search(r"^edgerec_ws_rejected_total ([1-9]\d*)$", m, re.M), m
    assert 'edgerec_http_requests_total{route="websocket",code="101"}' in m


def test_subscriber_count_and_close(c):
    ws = [c.a.ws("count-room", user="u%d" % i) for i in range(3)]

    def gauge():
        m = c.a.request("GET", "/metrics", token=None).body.decode()
        return int(re.search(r"^edgerec_ws_subscribers (\d+)$", m, re.M).group(1))
    assert gauge() == 3, gauge()
    for w in ws:
        w.close()
    deadline = time.monotonic() + 5
    while gauge() != 0 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert gauge() == 0
    assert c.a.healthz_status() == 200


def test_subscriber_limit(c):
    n = Edgerec(redis=c.redis, config={"http.ws_max_subscribers": 2, "http.threads": 8}, name="ws-limit").start()
    c.nodes.append(n)
    try:
        a, b = n.ws("lim"), n.ws("lim")
        good = mint_token(TEST_SECRET, "alice")
        assert handshake_status(n, "?room_id=lim&access_token=" + good) == 503
        # REST still has its threads.
        assert n.request("GET", "/api/webrtc/recordings").status == 200
        a.close()
        deadline = time.monotonic() + 5
        while handshake_status(n, "?room_id=lim&access_token=" + good) != 101:
            assert time.monotonic() < deadline, "slot not given back after close"
            time.sleep(0.1)
        b.close()
    finally:
        assert n.stop() == 0


if __name__ == "__main__":
    run_tests(globals(), setup=setup, teardown=teardown)
