-- time: ISO-8601 timestamps of the state object <-> seconds since the epoch,
-- computed in UTC whatever the appliance's time zone.
local M = {}

-- Days from 1970-01-01 to the given civil date (proleptic Gregorian).
local function days_from_civil(y, m, d)
  if m <= 2 then
    y = y - 1
  end
  local era = (y >= 0 and y or y - 399) // 400
  local yoe = y - era * 400
  local mp = (m + 9) % 12
  local doy = (153 * mp + 2) // 5 + d - 1
  local doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
  return era * 146097 + doe - 719468
end

-- "2026-11-24T19:36:40.123Z" -> 1795541800.123; nil for anything else.
function M.parse(text)
  if type(text) ~= "string" then
    return nil
  end
  local y, mo, d, h, mi, s = text:match("^(%d%d%d%d)%-(%d%d)%-(%d%d)T(%d%d):(%d%d):(%d%d%.?%d*)Z$")
  if not y then
    return nil
  end
  y, mo, d, h, mi, s = tonumber(y), tonumber(mo), tonumber(d), tonumber(h), tonumber(mi), tonumber(s)
  if mo < 1 or mo > 12 or d < 1 or d > 31 or h > 23 or mi > 59 or s >= 61 then
    return nil
  end
  return days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + s
end

-- The UTC day ("2026-11-24") of 'seconds' since the epoch.
function M.day(seconds)
  return os.date("!%Y-%m-%d", math.floor(seconds))
end

-- Seconds recorded today (UTC day of 'now') by the given recordings: the
-- active duration of finished ones, and the time since the start for live
-- ones whose duration is not final yet.
function M.seconds_today(recordings, now)
  local today = M.day(now)
  local total = 0
  for _, rec in ipairs(recordings or {}) do
    local started = M.parse(rec.started_at)
    if started and M.day(started) == today then
      local d = tonumber(rec.duration_seconds) or 0
      if rec.status == "recording" or rec.status == "pending" then
        d = math.max(d, now - started)
      end
      total = total + d
    end
  end
  return total
end

return M
