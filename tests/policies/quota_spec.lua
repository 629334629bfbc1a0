-- quota_spec: policies/quota.lua against the fake edge.
package.path = "tests/policies/?.lua;" .. package.path
local fake = require("fake_edge")

local presets = {
  low = { video_bps = 1000000, audio_bps = 96000, bps = 1096000 },
  medium = { video_bps = 2500000, audio_bps = 128000, bps = 2628000 },
  high = { video_bps = 5000000, audio_bps = 192000, bps = 5192000 },
  ultra = { video_bps = 15000000, audio_bps = 256000, bps = 15256000 },
}

local NOW = 1795541800 -- 2026-11-24T17:36:40Z
local TODAY = os.date("!%Y-%m-%d", NOW)

local function facts(over)
  local f = {
    user_id = "alice", claims = {}, room_id = "room1", quality = "medium",
    format = "webm", max_duration = 7200, disk_free = 100 * 2 ^ 30, presets = presets,
  }
  for k, v in pairs(over or {}) do
    f[k] = v
  end
  return f
end

local function rec(user, status, started, duration)
  return { recording_id = user .. status .. started, user_id = user, room_id = "room1",
           status = status, started_at = started, duration_seconds = duration or 0 }
end

describe("quota.lua", function()
  local edge, state, quota

  before_each(function()
    edge, state = fake.new({ now = NOW })
    quota = fake.load_policy("quota", edge)
  end)

  it("allows by default when the disk has room", function()
    local a = quota.admit(facts())
    assert.are.equal("allow", a.decision)
    assert.is_nil(a.user_limit)
  end)

  it("refuses with 507 when the disk cannot hold bitrate x duration", function()
    -- medium for 7200 s: 2628000 / 8 * 7200 = 2365200000 bytes
    local a = quota.admit(facts({ disk_free = 2365199999 }))
    assert.are.equal("refuse", a.decision)
    assert.are.equal(507, a.status)
    assert.matches("disk", a.reason)
    assert.are.equal("allow", quota.admit(facts({ disk_free = 2365200000 })).decision)
  end)

  it("skips the disk check when the free space is unknown", function()
    local f = facts({ max_duration = 10 ^ 9 })
    f.disk_free = nil
    assert.are.equal("allow", quota.admit(f).decision)
  end)

  it("lowers the quality instead when degrading is enabled", function()
    state.config["policy.param.degrade_on_low_disk"] = "true"
    local a = quota.admit(facts({ quality = "ultra", disk_free = 5000000000 }))
    assert.are.equal("grant", a.decision)
    assert.are.equal("high", a.quality)
    local b = quota.admit(facts({ quality = "medium", disk_free = 10 }))
    assert.are.equal("refuse", b.decision)
    assert.are.equal(507, b.status)
  end)

  it("lowers the quality when the node's encoders are full and downgrade_when_busy is set", function()
    local busy = {
      low = { video_bps = 1000000, audio_bps = 96000, bps = 1096000, pixel_rate = 9838080 },
      medium = { video_bps = 2500000, audio_bps = 128000, bps = 2628000, pixel_rate = 27648000 },
      high = { video_bps = 5000000, audio_bps = 192000, bps = 5192000, pixel_rate = 62208000 },
    }
    -- 290 of 306 Mpx/s in use: medium (27.6) does not fit, low (9.8) does.
    local f = facts({ presets = busy, encode_budget = 306000000, encode_used = 290000000 })
    assert.are.equal("allow", quota.admit(f).decision) -- off: the recorder answers 503
    state.config["policy.param.downgrade_when_busy"] = "true"
    local a = quota.admit(f)
    assert.are.equal("grant", a.decision)
    assert.are.equal("low", a.quality)
    -- Room left for medium: nothing lowered.
    assert.are.equal("allow", quota.admit(facts({ presets = busy, encode_budget = 306000000,
                                                  encode_used = 200000000 })).decision)
    -- Nothing fits: allowed as asked, the recorder refuses it with 503.
    assert.are.equal("allow", quota.admit(facts({ presets = busy, encode_budget = 306000000,
                                                  encode_used = 300000000 })).decision)
    -- A passthrough room encodes nothing: never lowered.
    local rtp = { medium = { video_bps = 2500000, audio_bps = 128000, bps = 2628000, pixel_rate = 0 } }
    assert.are.equal("allow", quota.admit(facts({ presets = rtp, encode_budget = 306000000,
                                                  encode_used = 306000000 })).decision)
  end)

  it("enforces a per-user concurrent limit with 400", function()
    quota.limits.user_concurrent = 2
    state.recordings = {
      rec("alice", "recording", "2026-01-01T00:00:00Z"),
      rec("alice", "completed", "2026-01-01T00:00:00Z", 10),
      rec("bob", "recording", "2026-01-01T00:00:00Z"),
    }
    local a = quota.admit(facts())
    assert.are.equal("allow", a.decision)
    assert.are.equal(2, a.user_limit)
    state.recordings[#state.recordings + 1] = rec("alice", "paused", "2026-01-01T00:00:00Z")
    local b = quota.admit(facts())
    assert.are.equal("refuse", b.decision)
    assert.are.equal(400, b.status)
    assert.matches("concurrent limit", b.reason)
  end)

  it("reads its limits from the configuration too", function()
    state.config["policy.param.user_concurrent"] = "1"
    state.recordings = { rec("alice", "pending", "2026-01-01T00:00:00Z") }
    assert.are.equal("refuse", quota.admit(facts()).decision)
  end)

  it("grants what is left of the daily minutes, then refuses with 403", function()
    quota.limits.user_minutes_per_day = 60
    state.recordings = {
      rec("alice", "completed", TODAY .. "T08:00:00.000Z", 1200),
      rec("alice", "completed", "2026-11-23T08:00:00Z", 3600), -- yesterday: not counted
      rec("bob", "completed", TODAY .. "T08:00:00Z", 3600),    -- someone else
    }
    local a = quota.admit(facts())
    assert.are.equal("grant", a.decision)
    assert.are.equal(2400, a.max_duration)
    -- a live recording counts for the time since its start
    state.recordings[#state.recordings + 1] = rec("alice", "recording", os.date("!%Y-%m-%dT%H:%M:%SZ", NOW - 2400), 0)
    local b = quota.admit(facts())
    assert.are.equal("refuse", b.decision)
    assert.are.equal(403, b.status)
  end)

  it("does not grant more than was asked", function()
    quota.limits.user_minutes_per_day = 1000
    local a = quota.admit(facts({ max_duration = 600 }))
    assert.are.equal("allow", a.decision)
  end)

  it("checks the disk for the granted duration", function()
    quota.limits.user_minutes_per_day = 10 -- 600 s left
    -- medium for 600 s needs 197100000 bytes
    local a = quota.admit(facts({ disk_free = 200000000 }))
    assert.are.equal("grant", a.decision)
    assert.are.equal(600, a.max_duration)
  end)

  it("counts from the per-user indexes, never the user's whole history", function()
    quota.limits.user_concurrent = 2
    quota.limits.user_minutes_per_day = 60
    for i = 1, 3000 do
      state.recordings[i] = rec("alice", "completed", "2026-01-01T00:00:00Z", 60 + i)
    end
    local listed = 0
    local real = edge.user_recordings
    edge.user_recordings = function(...) listed = listed + 1; return real(...) end
    local a = quota.admit(facts())
    assert.are.equal("grant", a.decision) -- the past days do not count: 60 min left
    assert.are.equal(3600, a.max_duration)
    assert.are.equal(2, a.user_limit)
    assert.are.equal(0, listed)
  end)

  it("passes its self test", function()
    assert.is_true(quota.self_test())
  end)
end)
