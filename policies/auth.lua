-- auth: who may do what to a recording.
--
-- authorize(action, caller, recording, room_id) is asked before every
-- request. 'action' is one of start, stop, pause, resume, cancel, read
-- (a recording's status), download (its file and thumbnail), delete (a
-- completed or failed recording removed for good), list_room, list_user
-- (an admin's lists every user's recordings), admin (the /api/system
-- routes). 'caller' is { user_id = "...", claims = {...} } with
-- every claim of the caller's token. 'recording' is the state object the
-- request is about (nil for start and the lists). Answer true to allow, or
-- false and a reason (shown to the client as "detail"), optionally followed
-- by 404 to hide the recording instead of refusing with 403.
--
-- The shipped rules are the reference's: anyone authenticated may start a
-- recording and list; only its owner controls or reads a recording; a
-- token whose "roles" claim holds "admin" may do anything.
local util = lib("util")

local M = {}

local owner_actions = {
  stop = true, pause = true, resume = true, cancel = true, read = true,
  download = true, delete = true,
}

local open_actions = { start = true, list_room = true, list_user = true }

function M.authorize(action, caller, recording, room_id)
  if type(caller.user_id) ~= "string" or caller.user_id == "" then
    return false, "authentication required"
  end
  local admin = util.has_role(caller.claims, "admin")
  if open_actions[action] then
    return true
  end
  if action == "admin" then
    if admin then
      return true
    end
    return false, "the admin role is required"
  end
  if owner_actions[action] then
    if admin or (recording and recording.user_id == caller.user_id) then
      return true
    end
    return false, "only the owner of the recording may " .. action .. " it"
  end
  return false, "unknown action '" .. tostring(action) .. "'"
end

function M.self_test()
  local alice = { user_id = "alice", claims = {} }
  local root = { user_id = "root", claims = { roles = { "admin" } } }
  local rec = { user_id = "bob" }
  assert(M.authorize("start", alice, nil, "r1") == true)
  assert(M.authorize("stop", alice, rec, "r1") == false)
  assert(M.authorize("stop", { user_id = "bob", claims = {} }, rec, "r1") == true)
  assert(M.authorize("cancel", root, rec, "r1") == true)
  assert(M.authorize("admin", alice) == false)
  assert(M.authorize("download", alice, rec, "r1") == false)
  assert(M.authorize("download", root, rec, "r1") == true)
  assert(M.authorize("delete", alice, rec, "r1") == false)
  assert(M.authorize("delete", root, rec, "r1") == true)
  return true
end

return M
