"""test_console_delete_s3: deleting a finished recording stored in S3 (a real
s3rver) as lifecycle.lua decides.

With the shipped lifecycle.lua (on_deleted answers delete_s3 = true) a
DELETE on a completed recording removes the object from the bucket, the
record, and says s3_object "deleted". While S3 cannot be reached the DELETE
answers 502 s3_delete_failed and nothing is lost: the record is still
there, the object too; once S3 is back the same DELETE finishes. After
lifecycle.lua is edited to answer delete_s3 = false (hot reload), a DELETE
keeps the object (s3_object "kept") and removes the rest."""

import os
import shutil

from edgerec_harness import (Ctx, Edgerec, Redis, free_port, mktemp, run_tests, s3_config, start_s3rver,
                             stop_nodes, stop_process, wait_until, write_file)

BUCKET = "edgerec-delete"
SRC = os.environ.get("EDGEREC_SOURCE_DIR") or os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")


def setup():
    c = Ctx()
    c.redis = Redis().start()
    c.s3_dir = mktemp("s3rver")
    c.s3_port = free_port()
    c.s3 = start_s3rver(c.s3_port, c.s3_dir, BUCKET)
    c.policy_dir = os.path.join(c.redis.dir, "policies")
    shutil.copytree(os.path.join(SRC, "policies"), c.policy_dir)
    c.node = Edgerec(redis=c.redis, name="delete-s3", config=s3_config(c.s3_port, BUCKET, {
        "default_quality": "low", "policy_dir": c.policy_dir, "s3.retries": "2", "s3.backoff": "100ms"})).start()
    c.nodes = [c.node]
    return c


def teardown(c):
    stop_nodes(c)
    if c is not None:
        stop_process(c.s3)


def objects(c):
    found = []
    for root, dirs, files in os.walk(os.path.join(c.s3_dir, BUCKET)):
        dirs[:] = [d for d in dirs if d != "._S3rver_uploads"]
        found += [os.path.relpath(os.path.join(root, f), os.path.join(c.s3_dir, BUCKET))
                  for f in files if f.endswith("._S3rver_object")]
    return found


def record(c, room):
    rec = c.node.record_clip(room, timeout=90)
    rid = rec["recording_id"]
    assert rec["s3_key"] and any(rid in o for o in objects(c)), (rec, objects(c))
    return rid, rec


def test_delete_removes_the_object(c):
    rid, rec = record(c, "s3-del")
    r = c.node.op("cancel", "s3-del", rid)
    assert r.status == 200, r
    assert r.json["metadata"]["deleted"]["s3_object"] == "deleted", r.json
    assert not any(rid in o for o in objects(c)), objects(c)
    assert c.node.op("status", "s3-del", rid).status == 404


def test_s3_down_loses_nothing(c):
    rid, rec = record(c, "s3-down")
    stop_process(c.s3)
    r = c.node.op("cancel", "s3-down", rid)
    assert r.status == 502 and r.json["code"] == "s3_delete_failed", r
    st = c.node.op("status", "s3-down", rid)
    assert st.status == 200 and st.json["status"] == "completed" and st.json["s3_key"], st
    assert any(rid in o for o in objects(c)), objects(c)
    c.s3 = start_s3rver(c.s3_port, c.s3_dir, BUCKET)
    r = c.node.op("cancel", "s3-down", rid)
    assert r.status == 200 and r.json["metadata"]["deleted"]["s3_object"] == "deleted", r
    assert not any(rid in o for o in objects(c)), objects(c)


def test_policy_keeps_the_object(c):
    path = os.path.join(c.policy_dir, "lifecycle.lua")
    text = open(path).read().replace("M.delete_s3 = true", "M.delete_s3 = false")
    assert "M.delete_s3 = false" in text
    admin = c.node.token("root", claims={"roles": ["admin"]})
    before = c.node.request("GET", "/api/system/policies", token=admin).json
    sha = {p["name"]: p["sha256"] for p in before["policies"]}["lifecycle"]
    write_file(path, text)
    wait_until(lambda: {p["name"]: p["sha256"] for p in
                        c.node.request("GET", "/api/system/policies", token=admin).json["policies"]}["lifecycle"] != sha,
               timeout=10, what="lifecycle.lua reloaded")
    rid, rec = record(c, "s3-keep")
    r = c.node.op("cancel", "s3-keep", rid)
    assert r.status == 200 and r.json["metadata"]["deleted"]["s3_object"] == "kept", r
    assert any(rid in o for o in objects(c)), objects(c)
    assert c.node.op("status", "s3-keep", rid).status == 404
    assert not os.path.exists(os.path.join(c.node.storage, rid))


if __name__ == "__main__":
    run_tests(globals(), setup=setup, teardown=teardown)
