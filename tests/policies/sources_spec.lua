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

  it("maps rtp-<port> to an RTP listener on even ports", function()
    local src, args = sources.resolve("rtp-5004")
    assert.are.equal("rtp", src)
    assert.are.same({ video_port = 5004, audio_port = 5006 }, args)
    assert.are.equal("test", (sources.resolve("rtp-5005")))
    assert.are.equal("test", (sources.resolve("rtp-80")))
  end)

  it("maps cam-<n> to a V4L2 device", function()
    local src, args = sources.resolve("cam-2")
    assert.are.equal("v4l2", src)
    assert.are.same({ device = "/dev/video2" }, args)
  end)
end)
