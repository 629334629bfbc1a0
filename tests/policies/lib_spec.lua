-- lib_spec: the helpers in policies/lib.
package.path = "tests/policies/?.lua;" .. package.path
local fake = require("fake_edge")

-- A throwaway policy that hands back the helpers it loaded.
local function helpers()
  local dir = os.tmpname()
  os.remove(dir)
  assert(os.execute("mkdir -p " .. dir .. " && ln -s " .. os.getenv("PWD") .. "/policies/lib " .. dir .. "/lib"))
  local f = assert(io.open(dir .. "/probe.lua", "w"))
  f:write("return { util = lib('util'), time = lib('time') }\n")
  f:close()
  local h = fake.load_policy("probe", (fake.new()), dir)
  os.execute("rm -rf " .. dir)
  return h.util, h.time
end

describe("policies/lib", function()
  local util, time = helpers()

  it("parses the state object's timestamps in UTC", function()
    assert.are.equal(0, time.parse("1970-01-01T00:00:00Z"))
    assert.are.equal(86400.5, time.parse("1970-01-02T00:00:00.500Z"))
    assert.are.equal(951782400, time.parse("2000-02-29T00:00:00Z"))
    assert.are.equal(1795541800, time.parse("2026-11-24T17:36:40Z"))
    assert.is_nil(time.parse("2026-11-24 14:16:40"))
    assert.is_nil(time.parse("2026-13-01T00:00:00Z"))
    assert.is_nil(time.parse(nil))
  end)

  it("names the UTC day", function()
    assert.are.equal("2026-11-24", time.day(1795541800))
  end)

  it("adds up today's recorded seconds", function()
    local now = time.parse("2026-11-24T12:00:00Z")
    local recs = {
      { status = "completed", started_at = "2026-11-24T01:00:00Z", duration_seconds = 100 },
      { status = "recording", started_at = "2026-11-24T11:50:00Z", duration_seconds = 0 },
      { status = "paused", started_at = "2026-11-24T11:00:00Z", duration_seconds = 30 },
      { status = "completed", started_at = "2026-11-23T23:00:00Z", duration_seconds = 999 },
    }
    assert.are.equal(100 + 600 + 30, time.seconds_today(recs, now))
  end)

  it("reads roles as a list or a single name", function()
    assert.is_true(util.has_role({ roles = { "a", "admin" } }, "admin"))
    assert.is_true(util.has_role({ roles = "admin" }, "admin"))
    assert.is_false(util.has_role({ roles = { "adminx" } }, "admin"))
    assert.is_false(util.has_role({}, "admin"))
    assert.is_false(util.has_role(nil, "admin"))
  end)

  it("counts and converts", function()
    assert.are.equal(2, util.count({ 1, 2, 3, 4 }, function(x) return x % 2 == 0 end))
    assert.are.equal(0, util.count(nil, function() return true end))
    assert.are.equal(5, util.number_or("5", 1))
    assert.are.equal(1, util.number_or("five", 1))
    assert.is_true(util.is_live({ status = "paused" }))
    assert.is_false(util.is_live({ status = "completed" }))
  end)
end)
