"""test_ws_stress: WebSocket subscribers come and go while events flow and
REST requests run, for a few seconds: nothing is lost for a subscriber
that stays, the subscriber gauge returns to zero, the server stays healthy
and exits cleanly (under the sanitizer build this also checks for leaks
and races that corrupt memory)."""

import re
import threading
import time
import uuid

import websocket

from edgerec_harness import run_tests, start_node, stop_nodes, ws_next

SECONDS = 5.0


def setup():
    return start_node("ws-stress", {"default_quality": "low"})


def test_churn_while_events_flow(c):
    room = "churn-" + uuid.uuid4().hex[:8]
    stop = threading.Event()
    errors = []
    cycles = [0]
    started = []

    def churn():
        try:
            while not stop.is_set():
                w = c.node.ws(room, user="churner")
                w.settimeout(0.05)
                try:
                    w.recv()
                except websocket.WebSocketTimeoutException:
                    pass
                w.close()
                cycles[0] += 1
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(repr(e))

    def drive():
        node = c.node.client()
        try:
            while not stop.is_set():
                r = node.start_recording(room, "driver")
                assert r.status == 200, r
                rid = r.json["recording_id"]
                started.append(rid)
                for op in ("pause", "resume", "cancel"):
                    assert node.op(op, room, rid, user="driver").status == 200, op
        except Exception as e:  # noqa: BLE001
            errors.append(repr(e))

    def rest():
        node = c.node.client()
        try:
            while not stop.is_set():
                assert node.request("GET", "/api/webrtc/rooms/%s/recordings" % room).status == 200
                assert node.request("GET", "/metrics", token=None).status == 200
        except Exception as e:  # noqa: BLE001
            errors.append(repr(e))

    steady = c.node.ws(room, user="steady")
    threads = [threading.Thread(target=f) for f in (churn, churn, churn, drive, rest)]
    for t in threads:
        t.start()
    time.sleep(SECONDS)
    stop.set()
    for t in threads:
        t.join(timeout=30)
    assert not errors, errors
    assert cycles[0] >= 10 and started, (cycles[0], len(started))
    print("  %d subscribe/close cycles, %d recordings started and cancelled" % (cycles[0], len(started)))

    # The subscriber that stayed saw every recording start and cancel.
    seen = {"recording_started": set(), "recording_cancelled": set()}
    deadline = time.monotonic() + 10
    while (len(seen["recording_started"]) < len(started) or len(seen["recording_cancelled"]) < len(started)) \
            and time.monotonic() < deadline:
        ev = ws_next(steady, None, timeout=deadline - time.monotonic())
        if ev["type"] in seen:
            seen[ev["type"]].add(ev["data"]["recording_id"])
    assert seen["recording_started"] == set(started), (len(seen["recording_started"]), len(started))
    assert seen["recording_cancelled"] == set(started)
    steady.close()

    def gauge():
        m = c.node.request("GET", "/metrics", token=None).body.decode()
        return int(re.search(r"^edgerec_ws_subscribers (\d+)$", m, re.M).group(1))
    deadline = time.monotonic() + 5
    while gauge() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert gauge() == 0
    assert c.node.healthz_status() == 200


if __name__ == "__main__":
    run_tests(globals(), setup=setup, teardown=stop_nodes)
