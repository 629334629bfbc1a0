"""test_ws_isolation: one slow WebSocket subscriber affects only itself.

Four subscribers of room A that never read (receive buffers of 2 KiB), one
subscriber of A that reads and one of room B; 4000 events for A and 40 for
B are published on the rooms' Redis channels (the path every node's events
take). B's events arrive with bounded latency, A's reading subscriber gets
all 4000 in order, and each slow one, once it reads again, accounts for
every event: those it got plus the counts of the `lagged` events it was
sent. A second node with a short write deadline shows that a subscriber
whose socket stays full is cut off and its connection closed."""

import json
import threading
import time
import uuid

import websocket

from edgerec_harness import Edgerec, run_tests, start_node, stop_nodes, wait_until

CHANNEL = "webrtc:recording:events:"
EVENTS_A = 4000
BATCH = 100            # events of A per batch; one event of B per batch
PAUSE = 0.1            # seconds between batches: about 1000 events/s
QUEUE = 1000           # http.ws_queue of the node under test
B_LATENCY_MAX = 2.0    # seconds; the unisolated hub took more than 10
SLOW = 4


def setup():
    return start_node("ws-iso", {"http.ws_queue": QUEUE})


# A recording's state object, the usual payload, is some 600 bytes.
PAD = "x" * 500


def event(room, seq, **data):
    data["seq"] = seq
    data.setdefault("pad", PAD)
    return json.dumps({"type": "test_event", "room_id": room, "data": data, "timestamp": ""})


def reader(ws, want, out, deadline_s):
    """Reads frames into 'out' (parsed) until 'want' test events or the
    deadline; records the arrival time of each."""
    deadline = time.monotonic() + deadline_s
    n = 0
    while n < want and time.monotonic() < deadline:
        ws.settimeout(max(0.1, deadline - time.monotonic()))
        try:
            ev = json.loads(ws.recv())
        except websocket.WebSocketTimeoutException:
            continue
        out.append((time.monotonic(), ev))
        if ev["type"] == "test_event":
            n += 1


def test_slow_subscribers_affect_only_themselves(c):
    room_a = "iso-a-" + uuid.uuid4().hex[:8]
    room_b = "iso-b-" + uuid.uuid4().hex[:8]
    slow = [c.node.ws(room_a, user="watcher", rcvbuf=2048) for _ in range(SLOW)]
    fast_a = c.node.ws(room_a, user="watcher")
    fast_b = c.node.ws(room_b, user="watcher")
    got_a, got_b = [], []
    batches = EVENTS_A // BATCH
    ta = threading.Thread(target=reader, args=(fast_a, EVENTS_A, got_a, 120))
    tb = threading.Thread(target=reader, args=(fast_b, batches, got_b, 120))
    ta.start()
    tb.start()

    sent_b = {}
    for b in range(batches):
        pairs = [(CHANNEL + room_a, event(room_a, b * BATCH + i)) for i in range(BATCH)]
        sent_b[b] = time.monotonic()
        pairs.insert(BATCH // 2, (CHANNEL + room_b, event(room_b, b)))
        c.redis.pipeline([("PUBLISH", ch, text) for ch, text in pairs])
        time.sleep(PAUSE)
    ta.join()
    tb.join()

    # B: every event, none late.
    seqs_b = [ev["data"]["seq"] for _, ev in got_b if ev["type"] == "test_event"]
    assert seqs_b == list(range(batches)), seqs_b
    lat = sorted(t - sent_b[ev["data"]["seq"]] for t, ev in got_b if ev["type"] == "test_event")
    print("  room B latency: median %.1f ms, max %.1f ms" % (lat[len(lat) // 2] * 1e3, lat[-1] * 1e3))
    assert lat[-1] < B_LATENCY_MAX, lat[-5:]

    # A's reader: all 4000, in order, no lagged notice.
    types_a = {ev["type"] for _, ev in got_a}
    seqs_a = [ev["data"]["seq"] for _, ev in got_a if ev["type"] == "test_event"]
    assert types_a == {"test_event"}, types_a
    assert seqs_a == list(range(EVENTS_A)), (len(seqs_a), seqs_a[:5])

    # The slow ones: what they got plus what `lagged` said they lost is
    # every event; the loss is announced, in order, where it happened.
    assert c.node.healthz_status() == 200
    losses = []
    for ws in slow:
        got, dropped, last, pending = 0, 0, -1, 0
        deadline = time.monotonic() + 60
        while got + dropped < EVENTS_A and time.monotonic() < deadline:
            ws.settimeout(max(0.1, deadline - time.monotonic()))
            ev = json.loads(ws.recv())
            if ev["type"] == "lagged":
                assert ev["room_id"] == room_a and ev["data"]["dropped"] > 0, ev
                dropped += ev["data"]["dropped"]
                pending += ev["data"]["dropped"]
                continue
            seq = ev["data"]["seq"]
            assert seq == last + 1 + pending, (seq, last, pending)
            got, last, pending = got + 1, seq, 0
        assert got + dropped == EVENTS_A and last == EVENTS_A - 1, (got, dropped, last)
        assert dropped > 0
        losses.append(dropped)
        ws.close()
    print("  slow subscribers: dropped %s events, each announced by `lagged`" % losses)
    assert c.node.metric("edgerec_ws_lagged_total") >= SLOW
    assert c.node.metric("edgerec_ws_write_failures_total") == 0
    fast_a.close()
    fast_b.close()


def test_stuck_subscriber_is_closed(c):
    """A subscriber whose socket takes nothing for longer than the write
    deadline (http.request_timeout) is cut off and its connection closed;
    a reading subscriber of the same room is not affected."""
    node = Edgerec(redis=c.redis, config={"http.ws_queue": 50, "http.request_timeout": "2s"},
                   name="ws-deadline").start()
    c.nodes.append(node)
    room = "iso-d-" + uuid.uuid4().hex[:8]
    stuck = node.ws(room, user="watcher", rcvbuf=2048)
    steady = node.ws(room, user="watcher")
    got = []
    t = threading.Thread(target=reader, args=(steady, 400, got, 60))
    t.start()
    for b in range(8):
        c.redis.pipeline([("PUBLISH", CHANNEL + room, event(room, b * 50 + i)) for i in range(50)])
        time.sleep(0.05)
    wait_until(lambda: node.metric("edgerec_ws_write_failures_total") == 1, timeout=30,
               what="the stuck subscriber's write to fail")
    wait_until(lambda: node.metric("edgerec_ws_subscribers") == 1, timeout=30,
               what="the stuck subscriber's connection to close")
    t.join()
    seqs = [ev["data"]["seq"] for _, ev in got if ev["type"] == "test_event"]
    assert seqs == list(range(400)), len(seqs)
    # The stuck client finds its connection closed once it reads what was
    # buffered.
    stuck.settimeout(10)
    closed = False
    try:
        for _ in range(1000):
            if not stuck.recv():
                closed = True
                break
    except (websocket.WebSocketConnectionClosedException, ConnectionError, OSError,
            websocket.WebSocketProtocolException, ValueError):
        closed = True
    assert closed
    steady.close()
    assert node.healthz_status() == 200
    assert node.stop() == 0, node.log_tail()


if __name__ == "__main__":
    run_tests(globals(), setup=setup, teardown=stop_nodes)
