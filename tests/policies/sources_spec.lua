-- sources_spec: policies/sources.lua against the fake edge.
package.path = "tests/policies/?.lua;" .. package.path
local fake = require("fake_edge")

describe("sources.lua", function()
  local edge, state, sources

  before_each(function()
    edge, state = fake.new()
    sources = fake.load_policy("sources", edge)
  end)

  it("captures the test source by default", function()
    local src, args = sources.resolve("room1")
    assert.are.equal("test", src)
    assert.are.same({}, args)
  end)

  it("prefers the rooms table", function()
    sources.rooms.lobby = { source = "rtp", args = { video_port = 5004 } }
    local src, args = sources.resolve("lobby")
    assert.are.equal("rtp", src)
    assert.are.same({ video_port = 5004 }, args)
  end)

  it("reads room.<id>.source and room.<id>.args", function()
    state.config["room.studio.source"] = "file"
    state.config["room.studio.args"] = "video=/srv/a.webm"
    local src, args = sources.resolve("studio")
    assert.are.equal("file", src)
    assert.are.equal("video=/srv/a.webm", args)
  end)

  it("does not build configuration keys from ids with dots", function()
    state.config["room.a.b.source"] = "file"
    assert.are.equal("test", (sources.resolve("a.b")))
  end)

  it("maps rtp-<port> to an RTP listener on even ports inside the configured range", function()
    local src, args = sources.resolve("rtp-40004")
    assert.are.equal("rtp", src)
    assert.are.same({ video_port = 40004, audio_port = 40006 }, args)
    state.config["rtp.port_min"] = "5000"
    state.config["rtp.port_max"] = "5099"
    src, args = sources.resolve("rtp-5004")
    assert.are.same({ video_port = 5004, audio_port = 5006 }, args)
    -- the last pair whose RTCP port still fits
    assert.are.same({ video_port = 5094, audio_port = 5096 }, select(2, sources.resolve("rtp-5094")))
  end)

  it("never fixes ports outside the range: those rooms get allocated ones", function()
    for _, room in ipairs({ "rtp-80", "rtp-5005", "rtp-65532", "rtp-39998", "rtp-40998", "rtp-1" }) do
      local src, args = sources.resolve(room)
      assert.are.equal("rtp", src, room)
      assert.are.same({}, args, room)
    end
  end)

  it("maps cam-<n> to a V4L2 device", function()
    local src, args = sources.resolve("cam-2")
    assert.are.equal("v4l2", src)
    assert.are.same({ device = "/dev/video2" }, args)
  end)
end)
