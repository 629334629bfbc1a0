-- util: small helpers the shipped policies share (pure Lua, no edge calls).
local M = {}

-- True when the token's claims grant 'role': "roles" may be a list of
-- names or a single name.
function M.has_role(claims, role)
  local roles = claims and claims.roles
  if type(roles) == "string" then
    return roles == role
  end
  if type(roles) == "table" then
    for _, r in ipairs(roles) do
      if r == role then
        return true
      end
    end
  end
  return false
end

local live_status = { pending = true, recording = true, paused = true }

-- True for a recording that is still capturing (or about to).
function M.is_live(rec)
  return live_status[rec.status] == true
end

-- How many items of 'list' satisfy 'pred'.
function M.count(list, pred)
  local n = 0
  for _, item in ipairs(list or {}) do
    if pred(item) then
      n = n + 1
    end
  end
  return n
end

-- A number from a string setting, or 'default' when unset or not a number.
function M.number_or(text, default)
  local n = tonumber(text)
  if n == nil then
    return default
  end
  return n
end

return M
