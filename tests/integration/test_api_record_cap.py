"""test_api_record_cap: recorder.max_stored_per_user caps the records one
user may have stored. At the cap a start gets 429 (too_many_records, with a
detail); other users are not affected; a record that expired (its state key
gone, as after the 7-day TTL) no longer counts. Starts racing at the cap
never pass it."""

import threading
import time
import uuid

from edgerec_harness import run_tests, start_node, stop_nodes

CAP = 3


def setup():
    return start_node("cap", {"recorder.max_stored_per_user": CAP, "default_quality": "low",
                              "max_concurrent_recordings": 20,
                              # the record cap, not the encode budget, is under test
                              "recorder.encode_budget": 100000})


def start_cancel(c, user, room):
    r = c.node.start_recording(room, user)
    if r.status == 200:
        assert c.node.op("cancel", room, r.json["recording_id"], user=user).status == 200
    return r


def test_cap(c):
    room = "cap-" + uuid.uuid4().hex[:6]
    ids = []
    for _ in range(CAP):
        r = start_cancel(c, "hoarder", room)
        assert r.status == 200, r
        ids.append(r.json["recording_id"])
    r = c.node.start_recording(room, "hoarder")
    assert r.status == 429 and r.json["code"] == "too_many_records", r
    assert "3 stored recordings (limit 3)" in r.json["detail"], r.json
    # Nothing was made for the refused start, and nothing is kept of it:
    # with every recording cancelled the node encodes nothing.
    assert c.node.metric("edgerec_encode_load_pixels_per_second") == 0
    listed = c.node.request("GET", "/api/webrtc/recordings", token="hoarder").json
    assert listed["count"] == CAP, listed
    # Another user is not affected.
    assert start_cancel(c, "other", room).status == 200
    # A record whose state expired (7 days old: its index entry is dated
    # back, its state key removed) no longer counts; one just made counts
    # even before its state is written.
    c.redis.cli("DEL", "webrtc:recording:state:" + ids[0])
    c.redis.cli("DEL", "webrtc:recording:state:" + ids[1])
    c.redis.cli("ZADD", "webrtc:recording:records:user:hoarder", "XX", int(time.time()) - 7 * 86400, ids[0])
    assert start_cancel(c, "hoarder", room).status == 200
    assert c.node.start_recording(room, "hoarder").status == 429


def test_racing_starts_stay_under_the_cap(c):
    room = "capr-" + uuid.uuid4().hex[:6]
    user = "racer"
    results = []

    def one():
        results.append(c.node.client().start_recording(room, user))
    threads = [threading.Thread(target=one) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ok = [r for r in results if r.status == 200]
    assert len(ok) == CAP, [r.status for r in results]
    assert all(r.status == 429 for r in results if r.status != 200), [r.status for r in results]
    for r in ok:
        assert c.node.op("cancel", room, r.json["recording_id"], user=user).status == 200


if __name__ == "__main__":
    run_tests(globals(), setup=setup, teardown=stop_nodes)
