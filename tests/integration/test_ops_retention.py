"""test_ops_retention: lifecycle.lua decides local retention.

- With the shipped lifecycle.lua a recording that exists only here is never
  deleted, however old (its file is dated 40 days back, past the
  metadata.retention_days = 30 the policy tagged at start); /healthz says
  local-only recordings are not deleted.
- A lifecycle.lua with delete_local_only = true (the shipped rules
  otherwise) deletes that file on the next retention pass: the record keeps
  metadata.local_copy = false, local_only_removed = true and the reason
  (retention_days), the room gets recording_local_removed, /metrics counts
  it, the download answers 404, and a younger recording stays.
- A lifecycle.lua whose local_retention raises deletes nothing."""

import os
import time

from edgerec_harness import Ctx, Edgerec, Redis, copy_policies, run_tests, source_dir, wait_until, write_file, ws_next


def setup():
    c = Ctx()
    c.redis = Redis().start()
    c.src = source_dir()
    c.policy_dir = copy_policies(os.path.join(c.redis.dir, "policies"))
    c.node = Edgerec(redis=c.redis, name="ret", config={"policy_dir": c.policy_dir, "retention.interval": "300ms"})
    c.node.start()
    c.nodes = [c.node]
    return c


def teardown(c):
    if c and c.node.alive():
        assert c.node.stop() == 0, c.node.log_tail()


def record(c, seconds=1.0):
    room, rid, rec = c.node.record_for(seconds)
    path = os.path.join(rec["local_path"], rec["file_name"])
    assert os.path.exists(path)
    return room, rid, rec, path


def age(path, days):
    t = time.time() - days * 86400
    os.utime(path, (t, t))


def passes(c, n=3):
    """Waits for 'n' more retention passes (interval 300 ms): the control
    thread runs them, so a few seconds cover n under load."""
    time.sleep(0.3 * n + 1.0)


def test_shipped_policy_keeps_local_only(c):
    room, rid, rec, path = record(c)
    assert rec["metadata"]["retention_days"] == 30, rec["metadata"]
    age(path, 40)
    passes(c)
    assert os.path.exists(path), "the shipped lifecycle.lua deleted a recording that exists only here"
    h = c.node.request("GET", "/healthz", token=None).json
    assert h["storage"]["disk"]["local_only_deleted"] is False, h
    c.old = (room, rid, path)


def test_policy_may_delete_local_only(c):
    room, rid, path = c.old
    c.ws = c.node.ws(room)
    _, yrid, _, young = record(c)
    text = open(os.path.join(c.src, "policies", "lifecycle.lua")).read()
    assert "M.delete_local_only = false" in text
    write_file(os.path.join(c.policy_dir, "lifecycle.lua"),
               text.replace("M.delete_local_only = false", "M.delete_local_only = true"))
    wait_until(lambda: not os.path.exists(path), timeout=15, what="the old local-only file to go")
    # The record is written right after the file goes.
    wait_until(lambda: "local_copy" in c.node.op("status", room, rid).json["metadata"], timeout=5,
               what="the record to say the file went")
    rec = c.node.op("status", room, rid).json
    md = rec["metadata"]
    assert md["local_copy"] is False and md["local_only_removed"] is True, md
    assert "retention_days" in md["local_removed_reason"] and md["local_removed_at"], md
    r = c.node.request("GET", "/api/webrtc/rooms/%s/recording/%s/download" % (room, rid))
    assert r.status == 404, r
    passes(c)
    assert os.path.exists(young), "a recording younger than its retention_days went"
    h = c.node.request("GET", "/healthz", token=None).json
    assert h["storage"]["disk"]["local_only_deleted"] is True, h
    assert "existed only here" in c.node.log_text(since_start=True)
    assert c.node.metric("edgerec_retention_removed_total", '{copy="local_only"}') == 1
    ev = ws_next(c.ws, "recording_local_removed")
    assert ev["data"]["recording_id"] == rid and "retention_days" in ev["data"]["reason"], ev


def test_failing_hook_keeps(c):
    _, _, _, path = record(c)
    age(path, 400)
    text = open(os.path.join(c.src, "policies", "lifecycle.lua")).read()
    text = text.replace("M.delete_local_only = false", "M.delete_local_only = true")
    text = text.replace("function M.local_retention(rec, facts)\n",
                        "function M.local_retention(rec, facts)\n  error('broken on purpose')\n")
    write_file(os.path.join(c.policy_dir, "lifecycle.lua"), text)
    wait_until(lambda: "broken on purpose" in c.node.log_text(since_start=True), timeout=15,
               what="the hook to fail")
    passes(c)
    assert os.path.exists(path), "a failing local_retention deleted a file"


run_tests(globals(), setup=setup, teardown=teardown)
