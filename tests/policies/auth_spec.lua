-- auth_spec: policies/auth.lua against the fake edge.
package.path = "tests/policies/?.lua;" .. package.path
local fake = require("fake_edge")

describe("auth.lua", function()
  local auth
  local alice = { user_id = "alice", claims = { sub = "alice" } }
  local bob = { user_id = "bob", claims = {} }
  local root = { user_id = "root", claims = { roles = { "viewer", "admin" } } }
  local single_role = { user_id = "ops", claims = { roles = "admin" } }
  local bobs = { recording_id = "r1", user_id = "bob", room_id = "room1", status = "recording" }

  before_each(function()
    auth = fake.load_policy("auth", (fake.new()))
  end)

  it("lets any authenticated user start and list", function()
    assert.is_true(auth.authorize("start", alice, nil, "room1"))
    assert.is_true(auth.authorize("list_room", alice, nil, "room1"))
    assert.is_true(auth.authorize("list_user", alice))
  end)

  it("refuses callers without a user id", function()
    local ok, reason = auth.authorize("start", { claims = {} }, nil, "room1")
    assert.is_false(ok)
    assert.matches("authentication", reason)
  end)

  for _, action in ipairs({ "stop", "pause", "resume", "cancel", "read" }) do
    it("lets only the owner " .. action, function()
      assert.is_true(auth.authorize(action, bob, bobs, "room1"))
      local ok, reason = auth.authorize(action, alice, bobs, "room1")
      assert.is_false(ok)
      assert.matches("owner", reason)
    end)

    it("lets an admin " .. action .. " anyone's recording", function()
      assert.is_true(auth.authorize(action, root, bobs, "room1"))
      assert.is_true(auth.authorize(action, single_role, bobs, "room1"))
    end)
  end

  it("keeps the admin routes for admins", function()
    assert.is_true(auth.authorize("admin", root))
    assert.is_false(auth.authorize("admin", alice))
  end)

  it("refuses control when there is no recording", function()
    assert.is_false(auth.authorize("stop", alice, nil, "room1"))
  end)

  it("refuses unknown actions", function()
    local ok, reason = auth.authorize("format_disk", root, bobs, "room1")
    assert.is_false(ok)
    assert.matches("unknown action", reason)
  end)

  it("passes its self test", function()
    assert.is_true(auth.self_test())
  end)
end)
