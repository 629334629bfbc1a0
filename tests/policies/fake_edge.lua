-- fake_edge: a stand-in for the `edge` table the policy host gives policies,
-- backed by plain tables, and a loader that runs a policy file in an
-- environment shaped like the host's sandbox. The function names of the
-- fake must be exactly those of the host's registration table
-- (core/policy/policy_edge.c); tests/unit/test_policy.c checks that.
local M = {}

local live = { pending = true, recording = true, paused = true }

-- The host computes seconds today from the state store's per-day usage with
-- the semantics of lib/time.lua's seconds_today; the fake uses that helper.
local time = assert(loadfile("policies/lib/time.lua", "t", setmetatable({}, { __index = _G })))()

-- Returns edge, state. 'state' holds what the queries answer from and may
-- be changed between calls:
--   recordings  list of state objects (user_id, room_id, status, ...)
--   config      { key = "value" } for edge.config
--   now         seconds since the epoch for edge.now
--   disk_free   bytes for edge.disk_free_bytes (nil: raises, as the host
--               does when the provider cannot answer)
--   logs        what edge.log received, as { level, message } pairs
function M.new(opts)
  opts = opts or {}
  local state = {
    recordings = opts.recordings or {},
    config = opts.config or {},
    now = opts.now or 1795541800,
    disk_free = opts.disk_free,
    logs = {},
  }
  local edge = {}

  function edge.log(level, message)
    assert(level == "error" or level == "warn" or level == "info" or level == "debug",
           "edge.log: bad level " .. tostring(level))
    state.logs[#state.logs + 1] = { level, tostring(message) }
  end

  function edge.now()
    return state.now
  end

  function edge.config(key)
    assert(type(key) == "string", "edge.config: key must be a string")
    return state.config[key]
  end

  function edge.user_recordings(user_id, status)
    assert(type(user_id) == "string" and user_id ~= "", "edge.user_recordings: bad user id")
    local out = {}
    for _, rec in ipairs(state.recordings) do
      if rec.user_id == user_id and (status == nil or rec.status == status) then
        out[#out + 1] = rec
      end
    end
    return out
  end

  function edge.room_recordings(room_id)
    assert(type(room_id) == "string" and room_id ~= "", "edge.room_recordings: bad room id")
    local out = {}
    for _, rec in ipairs(state.recordings) do
      if rec.room_id == room_id then
        out[#out + 1] = rec
      end
    end
    return out
  end

  function edge.active_count()
    local n = 0
    for _, rec in ipairs(state.recordings) do
      if live[rec.status] then
        n = n + 1
      end
    end
    return n
  end

  function edge.user_bytes_stored(user_id)
    local n = 0
    for _, rec in ipairs(state.recordings) do
      if rec.user_id == user_id and rec.status == "completed" then
        n = n + (rec.file_size_bytes or 0)
      end
    end
    return n
  end

  function edge.user_live_count(user_id)
    assert(type(user_id) == "string" and user_id ~= "", "edge.user_live_count: bad user id")
    local n = 0
    for _, rec in ipairs(state.recordings) do
      if rec.user_id == user_id and live[rec.status] then
        n = n + 1
      end
    end
    return n
  end

  function edge.user_seconds_today(user_id)
    assert(type(user_id) == "string" and user_id ~= "", "edge.user_seconds_today: bad user id")
    local mine = {}
    for _, rec in ipairs(state.recordings) do
      if rec.user_id == user_id then
        mine[#mine + 1] = rec
      end
    end
    return math.floor(time.seconds_today(mine, state.now))
  end

  function edge.disk_free_bytes()
    if state.disk_free == nil then
      error("edge.disk_free_bytes: not available")
    end
    return state.disk_free
  end

  return edge, state
end

-- Loads <dir>/<name>.lua (dir defaults to "policies") with 'edge' in an
-- environment like the host's: the allow-listed globals, lib() for
-- <dir>/lib, its own _ENV. Returns the policy's table of hooks.
function M.load_policy(name, edge, dir)
  dir = dir or "policies"
  local base = {
    assert = assert, error = error, ipairs = ipairs, next = next, pairs = pairs,
    pcall = pcall, rawequal = rawequal, rawget = rawget, rawlen = rawlen,
    select = select, tonumber = tonumber, tostring = tostring, type = type,
    xpcall = xpcall, getmetatable = getmetatable, setmetatable = setmetatable,
    _VERSION = _VERSION, string = string, table = table, math = math, utf8 = utf8,
    os = { time = os.time, clock = os.clock, date = os.date },
    print = function() end, edge = edge,
  }
  local function new_env()
    local env = setmetatable({}, { __index = base })
    env._G = env
    return env
  end
  local libs = {}
  function base.lib(lib_name)
    if libs[lib_name] == nil then
      local chunk = assert(loadfile(dir .. "/lib/" .. lib_name .. ".lua", "t", new_env()))
      libs[lib_name] = chunk() or true
    end
    return libs[lib_name]
  end
  local chunk = assert(loadfile(dir .. "/" .. name .. ".lua", "t", new_env()))
  return chunk()
end

return M
