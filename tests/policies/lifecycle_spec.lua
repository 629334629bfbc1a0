-- lifecycle_spec: policies/lifecycle.lua against the fake edge.
package.path = "tests/policies/?.lua;" .. package.path
local fake = require("fake_edge")

describe("lifecycle.lua", function()
  local life
  local rec = { recording_id = "r1", room_id = "room1", user_id = "alice",
                file_name = "recording_r1.webm", storage_backend = "s3", status = "completed" }

  before_each(function()
    life = fake.load_policy("lifecycle", (fake.new()))
  end)

  it("answers every event with the reference's key layout", function()
    for _, hook in ipairs({ "on_started", "on_stopped", "on_completed", "on_failed" }) do
      local a = life[hook](rec)
      assert.are.equal("{prefix}{recording_id}/{file_name}", a.s3_key_template)
      assert.is_false(a.keep_local)
      assert.are.equal("table", type(a.tags))
    end
  end)

  it("tags with plain values only", function()
    for _, hook in ipairs({ "on_started", "on_stopped", "on_completed", "on_failed" }) do
      for k, v in pairs(life[hook](rec).tags) do
        assert.are.equal("string", type(k))
        assert.is_true(type(v) == "string" or type(v) == "number" or type(v) == "boolean")
      end
    end
  end)

  it("marks archives and failures", function()
    assert.are.equal(30, life.on_started(rec).tags.retention_days)
    assert.is_true(life.on_completed(rec).tags.archived)
    local local_rec = { storage_backend = "local" }
    assert.is_false(life.on_completed(local_rec).tags.archived)
    assert.is_true(life.on_failed(rec).tags.needs_attention)
  end)

  it("deletes the S3 object of a deleted recording unless told not to", function()
    assert.is_true(life.on_deleted(rec).delete_s3)
    life.delete_s3 = false
    assert.is_false(life.on_deleted(rec).delete_s3)
  end)

  it("follows its knobs", function()
    life.keep_local = true
    life.s3_key_template = "{prefix}{room_id}/{date}/{file_name}"
    local a = life.on_completed(rec)
    assert.is_true(a.keep_local)
    assert.are.equal("{prefix}{room_id}/{date}/{file_name}", a.s3_key_template)
  end)

  describe("local_retention", function()
    local function facts(t)
      local f = { age_days = 1, size_bytes = 1000, local_only = false, disk_free_bytes = 50,
                  disk_total_bytes = 100, disk_free_ratio = 0.5 }
      for k, v in pairs(t or {}) do f[k] = v end
      return f
    end
    local old = { metadata = { retention_days = 30 } }

    it("never deletes a recording that exists only here", function()
      assert.is_false(life.delete_local_only)
      assert.is_nil(life.local_retention(old, facts({ local_only = true, age_days = 400 })))
      assert.is_nil(life.local_retention(old, facts({ local_only = true, disk_free_ratio = 0.001 })))
      assert.is_nil(life.local_retention({}, facts({ local_only = true, age_days = 1e6, disk_free_ratio = 0 })))
    end)

    it("acts on metadata.retention_days for recordings safe in S3", function()
      assert.is_nil(life.local_retention(old, facts({ age_days = 29.9 })))
      local a = life.local_retention(old, facts({ age_days = 30.1 }))
      assert.is_true(a.delete)
      assert.truthy(a.reason:find("retention_days"))
      assert.is_nil(life.local_retention({ metadata = {} }, facts({ age_days = 1e6 })))
      assert.is_true(life.local_retention({ metadata = { retention_days = "2" } }, facts({ age_days = 3 })).delete)
    end)

    it("frees copies safe in S3 under disk pressure", function()
      local a = life.local_retention({}, facts({ disk_free_ratio = 0.01 }))
      assert.is_true(a.delete)
      assert.truthy(a.reason:find("free"))
    end)

    it("lets local-only recordings go when told to", function()
      life.delete_local_only = true
      assert.is_true(life.local_retention(old, facts({ local_only = true, age_days = 31 })).delete)
      assert.is_nil(life.local_retention(old, facts({ local_only = true, age_days = 2 })))
    end)
  end)
end)
