"""test_api_pagination: the listings take optional limit and cursor. Without
them the body is the reference's ({"recordings": [...], "count": n}, every
record); with them the body keeps that shape and holds one page, and the
X-Next-Cursor header leads to the next one. Walking the pages gives the
full listing in its order, also when records are added meanwhile. Bad
values get 400 with a code. The records are written to Redis as another
node would (copies of one made through the API)."""

import json
import time
import uuid

from edgerec_harness import run_tests, start_node, stop_nodes

USER = "pager"
N = 250


def setup():
    c = start_node("pages", {"default_quality": "low"})
    c.room = "pages-" + uuid.uuid4().hex[:6]
    r = c.node.start_recording(c.room, USER)
    assert r.status == 200, r
    rid = r.json["recording_id"]
    assert c.node.op("cancel", c.room, rid, user=USER).status == 200
    c.template = json.loads(c.redis.cli("GET", "webrtc:recording:state:" + rid))
    c.ids = [rid]
    add_records(c, N - 1)
    return c


def add_records(c, n, base=None):
    """Stores 'n' copies of the template with new ids and started_at one
    second apart (some sharing a second, to test the id tie-break)."""
    base = base or time.time() - 10 * 86400
    cmds = []
    for i in range(n):
        rid = str(uuid.uuid4())
        rec = dict(c.template, recording_id=rid)
        rec["started_at"] = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(base + i // 3)) + ".000Z"
        cmds.append(("SET", "webrtc:recording:state:" + rid, json.dumps(rec)))
        cmds.append(("SADD", "webrtc:recording:user:" + USER, rid))
        cmds.append(("SADD", "webrtc:recording:room:" + c.room, rid))
        c.ids.append(rid)
    c.redis.pipeline(cmds)


def walk(c, path, limit):
    ids, cursor, pages = [], None, 0
    while True:
        q = "limit=%d" % limit + ("&cursor=" + cursor if cursor else "")
        r = c.node.request("GET", path + ("&" if "?" in path else "?") + q, token=USER)
        assert r.status == 200, r
        assert set(r.json) == {"recordings", "count"}, r.json.keys()
        assert r.json["count"] == len(r.json["recordings"]) <= limit
        ids += [x["recording_id"] for x in r.json["recordings"]]
        pages += 1
        cursor = r.headers.get("x-next-cursor")
        if not cursor:
            return ids, pages
        assert r.json["count"] == limit


def test_reference_shape_without_parameters(c):
    for path in ("/api/webrtc/recordings", "/api/webrtc/rooms/%s/recordings" % c.room):
        r = c.node.request("GET", path, token=USER)
        assert r.status == 200, r
        assert set(r.json) == {"recordings", "count"} and r.json["count"] == N == len(r.json["recordings"])
        assert "x-next-cursor" not in r.headers


def test_pages_walk_the_listing(c):
    for path in ("/api/webrtc/recordings", "/api/webrtc/rooms/%s/recordings" % c.room,
                 "/api/webrtc/recordings?status=cancelled"):
        full = [x["recording_id"] for x in c.node.request("GET", path, token=USER).json["recordings"]]
        for limit in (1, 7, 100, 250, 1000):
            ids, pages = walk(c, path, limit)
            assert ids == full, (path, limit)
            assert pages == max(1, -(-len(full) // limit)), (limit, pages)
    r = c.node.request("GET", "/api/webrtc/recordings?cursor=%s" % "0." + c.ids[0], token=USER)
    assert r.status == 200 and r.json["count"] <= 100


def test_records_added_between_pages(c):
    path = "/api/webrtc/recordings"
    r = c.node.request("GET", path + "?limit=50", token=USER)
    first = [x["recording_id"] for x in r.json["recordings"]]
    cursor = r.headers["x-next-cursor"]
    before = [x["recording_id"] for x in c.node.request("GET", path, token=USER).json["recordings"]]
    add_records(c, 5, base=time.time())  # newer than every page so far
    rest, cur = [], cursor
    while cur:
        r = c.node.request("GET", path + "?limit=50&cursor=" + cur, token=USER)
        rest += [x["recording_id"] for x in r.json["recordings"]]
        cur = r.headers.get("x-next-cursor")
    assert first + rest == before


def test_bad_parameters(c):
    for q in ("limit=0", "limit=-1", "limit=1001", "limit=abc", "limit=", "limit=1.5", "limit=+5"):
        r = c.node.request("GET", "/api/webrtc/recordings?" + q, token=USER)
        assert r.status == 400 and r.json["code"] == "invalid_limit", (q, r)
    for q in ("cursor=", "cursor=abc", "cursor=12", "cursor=12.not-a-uuid", "cursor=." + c.ids[0],
              "cursor=x." + c.ids[0]):
        r = c.node.request("GET", "/api/webrtc/rooms/%s/recordings?" % c.room + q, token=USER)
        assert r.status == 400 and r.json["code"] == "invalid_cursor", (q, r)


if __name__ == "__main__":
    run_tests(globals(), setup=setup, teardown=stop_nodes)
