-- quota: admission beyond the global concurrent limit.
--
-- admit(facts) is asked before a recording starts. facts holds user_id,
-- claims, room_id, quality, format, max_duration (seconds), disk_free (bytes
-- free where recordings are written; nil when unknown), presets
-- ({ low = { video_bps, audio_bps, bps, pixel_rate }, ... }; pixel_rate is
-- what this room would cost the node's encoders at that preset with the
-- encoder at its dense speed, what every start is booked at (it runs at
-- the quality speed while the node is lightly loaded), 0 for a
-- passthrough source such as rtp), encode_budget and encode_used (pixels per
-- second this node may encode and already reserves for its live
-- recordings). Answer one of
--   { decision = "allow" }
--   { decision = "refuse", status = 400 | 403 | 507, reason = "..." }
--   { decision = "grant", quality = "low", max_duration = 1800 }
-- (a grant may only lower the quality or the duration). Any answer may add
-- user_limit = n: the per-user concurrent limit the atomic admission script
-- enforces across nodes.
--
-- The limits below are the knobs; each may also be set in the configuration
-- as policy.param.<name> (for instance policy.param.user_concurrent = 2).
-- nil means no limit; the shipped values reproduce the reference, which
-- only had the global limit and refused when the disk cannot hold the
-- recording.
--
-- If a call of admit fails (raises, runs out of its time or instruction
-- budget, answers something malformed) the built-in default decides and
-- still enforces user_concurrent and user_minutes_per_day as configured
-- (policy.param.*, else M.limits below as this file declares them): a
-- broken quota policy never admits more than a working one.
--
-- The per-user figures come from the indexes the appliance keeps
-- (edge.user_live_count, edge.user_seconds_today): their cost follows the
-- user's live recordings, not the user's history.
local util = lib("util")

local M = {}

M.limits = {
  user_concurrent = nil,       -- live recordings per user
  user_minutes_per_day = nil,  -- recorded minutes per user per UTC day
  degrade_on_low_disk = false, -- on a full disk: lower the quality rather than refuse
  downgrade_when_busy = false, -- node's encoders full: lower the quality rather than refuse (503)
}

local function limit(name)
  local v = edge.config("policy.param." .. name)
  if v ~= nil then
    if v == "true" then return true end
    if v == "false" then return false end
    return util.number_or(v, M.limits[name])
  end
  return M.limits[name]
end

-- Bytes a recording of 'preset' lasting 'seconds' needs.
function M.estimate_bytes(preset, seconds)
  return (preset.video_bps + preset.audio_bps) / 8 * seconds
end

-- True when encoding 'preset' would go beyond what the node may encode.
function M.too_busy(facts, preset)
  if not facts.encode_budget or not preset.pixel_rate then return false end
  return (facts.encode_used or 0) + preset.pixel_rate > facts.encode_budget
end

-- Presets from the highest bitrate to the lowest.
local function by_bitrate(presets)
  local list = {}
  for name, p in pairs(presets) do
    list[#list + 1] = { name = name, preset = p }
  end
  table.sort(list, function(a, b) return a.preset.bps > b.preset.bps end)
  return list
end

function M.admit(facts)
  local user = facts.user_id
  local answer = { decision = "allow" }
  local duration = facts.max_duration

  local concurrent = limit("user_concurrent")
  if concurrent then
    answer.user_limit = concurrent
    local live = edge.user_live_count(user)
    if live >= concurrent then
      return {
        decision = "refuse", status = 400,
        reason = string.format("concurrent limit reached: %d live recordings for this user (limit %d)",
                               live, concurrent),
      }
    end
  end

  local per_day = limit("user_minutes_per_day")
  if per_day then
    local used = edge.user_seconds_today(user)
    local left = math.floor(per_day * 60 - used)
    if left < 1 then
      return {
        decision = "refuse", status = 403,
        reason = string.format("daily recording quota of %d minutes is used up", per_day),
      }
    end
    if left < duration then
      answer.decision = "grant"
      answer.max_duration = left
      duration = left
    end
  end

  local preset = facts.presets[facts.quality]
  -- The node's encode budget: the recorder refuses (503) a start that does
  -- not fit next to the live recordings; here it may be lowered instead.
  if preset and M.too_busy(facts, preset) and limit("downgrade_when_busy") then
    for _, p in ipairs(by_bitrate(facts.presets)) do
      if p.preset.bps < preset.bps and not M.too_busy(facts, p.preset) then
        answer.decision = "grant"
        answer.quality = p.name
        preset = p.preset
        break
      end
    end
  end

  if facts.disk_free and preset then
    local need = M.estimate_bytes(preset, duration)
    if need > facts.disk_free then
      if limit("degrade_on_low_disk") then
        for _, p in ipairs(by_bitrate(facts.presets)) do
          if p.preset.bps < preset.bps and M.estimate_bytes(p.preset, duration) <= facts.disk_free then
            answer.decision = "grant"
            answer.quality = p.name
            return answer
          end
        end
      end
      return {
        decision = "refuse", status = 507,
        reason = string.format("not enough disk space: %s at %s for %d s needs about %d MB, %d MB free",
                               facts.quality, facts.format or "?", duration,
                               need // 1000000, facts.disk_free // 1000000),
      }
    end
  end
  return answer
end

function M.self_test()
  local medium = { video_bps = 2500000, audio_bps = 128000, bps = 2628000 }
  assert(M.estimate_bytes(medium, 8) == 2628000)
  return true
end

return M
