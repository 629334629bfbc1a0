"""test_finish_policy: what auth.lua decides reaches the client as it said.

The server's policy_dir holds the shipped policies with auth.lua replaced by
one that: lets the user "ops" (no admin role) see /api/system/policies and
refuses the admin "root" with its own reason; refuses "guest" the list of
its own recordings (action list_user) but not a room's list (list_room);
hides other users' recordings with 404 and a reason; lets "auditor"
download (action download) and read any recording. Each refusal must come
back with the policy's status and its reason as the detail."""

import os
import shutil
import time

from edgerec_harness import Edgerec, mktemp, run_tests

SRC = os.environ.get("EDGEREC_SOURCE_DIR", ".")

AUTH = r'''
local M = {}
function M.authorize(action, caller, recording, room_id)
  local uid = caller.user_id
  if action == "admin" then
    if uid == "ops" then return true end
    return false, "only ops may look at the policies"
  end
  if action == "list_user" then
    if uid == "guest" then return false, "guests have no recordings to list" end
    return true
  end
  if action == "list_room" or action == "start" then return true end
  if recording then
    if recording.user_id == uid then return true end
    if uid == "auditor" and (action == "download" or action == "read") then return true end
    return false, "recording hidden from " .. uid, 404
  end
  return false, "unknown action " .. action
end
return M
'''


class Ctx:
    pass


def setup():
    c = Ctx()
    c.dir = mktemp("policies")
    shutil.copytree(os.path.join(SRC, "policies"), c.dir, dirs_exist_ok=True)
    with open(os.path.join(c.dir, "auth.lua"), "w") as f:
        f.write(AUTH)
    c.node = Edgerec(config={"policy_dir": c.dir, "default_quality": "low"}, name="finpolicy")
    c.nodes = [c.node]
    c.node.start()
    return c


def teardown(c):
    if c is not None and c.node.alive():
        assert c.node.stop() == 0


def test_admin_is_asked_of_the_policy(c):
    r = c.node.request("GET", "/api/system/policies", token="ops")
    assert r.status == 200, r
    names = [p["name"] for p in r.json["policies"]] if isinstance(r.json, dict) else [p["name"] for p in r.json]
    assert any("auth" in n for n in names), r.json
    root = c.node.token("root", claims={"roles": ["admin"]})
    r = c.node.request("GET", "/api/system/policies", token=root)
    assert r.status == 403 and r.json["detail"] == "only ops may look at the policies", r


def test_list_user_is_its_own_action(c):
    r = c.node.request("GET", "/api/webrtc/recordings", token="guest")
    assert r.status == 403 and r.json["detail"] == "guests have no recordings to list", r
    r = c.node.request("GET", "/api/webrtc/rooms/lobby/recordings", token="guest")
    assert r.status == 200, r
    r = c.node.request("GET", "/api/webrtc/recordings", token="alice")
    assert r.status == 200, r


def test_verdict_status_and_reason_reach_the_client(c):
    r = c.node.start_recording("pol-room", "alice", "webm", "low")
    assert r.status == 200, r
    rid = r.json["recording_id"]
    time.sleep(1.0)
    assert c.node.op("stop", "pol-room", rid).status == 200
    rec = c.node.wait_status("pol-room", rid, ("completed", "failed"), timeout=60)
    assert rec["status"] == "completed", rec
    base = "/api/webrtc/rooms/pol-room/recording/%s" % rid

    r = c.node.request("GET", base + "/status", token="mallory")
    assert r.status == 404 and r.json["code"] == "not_found", r
    assert r.json["detail"] == "recording hidden from mallory", r
    r = c.node.request("DELETE", base, token="mallory")
    assert r.status == 404 and r.json["detail"] == "recording hidden from mallory", r
    r = c.node.request("GET", base + "/download", token="mallory")
    assert r.status == 404 and r.json["detail"] == "recording hidden from mallory", r

    # The policy widens download to the auditor; the file comes whole.
    r = c.node.request("GET", base + "/download", token="auditor")
    assert r.status == 200 and len(r.body) == rec["file_size_bytes"], r
    r = c.node.request("GET", base + "/thumbnail", token="auditor")
    assert r.status == 200 and r.headers["content-type"] == "image/jpeg", r
    r = c.node.request("GET", base + "/download", token="alice")
    assert r.status == 200, r


if __name__ == "__main__":
    run_tests(globals(), setup=setup, teardown=teardown)
