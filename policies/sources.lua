-- sources: what a room captures.
--
-- resolve(room_id) answers a media source name and its arguments (a table
-- { key = value } or a "k=v,k=v" string):
--   test   a generated picture and tone (tone=HZ, beep=0|1)
--   file   a recorded file played live (video=PATH, audio=PATH)
--   rtp    RTP from an SFU (video_port, audio_port, sdp=PATH, ...)
--   v4l2   a camera (device=/dev/videoN), where the build has that driver
-- In order: the rooms table below, then the configuration
-- (room.<id>.source and room.<id>.args), then room names that say what
-- they are ("rtp-5004" listens for video on 5004 and audio on 5006,
-- "cam-0" opens /dev/video0), and the test source for anything else.
local M = {}

M.rooms = {
  -- lobby = { source = "rtp", args = { video_port = 5004, audio_port = 5006 } },
}

function M.resolve(room_id)
  local r = M.rooms[room_id]
  if r then
    return r.source, r.args
  end
  if not room_id:find(".", 1, true) then
    local source = edge.config("room." .. room_id .. ".source")
    if source then
      return source, edge.config("room." .. room_id .. ".args")
    end
  end
  local port = tonumber(room_id:match("^rtp%-(%d+)$"))
  if port and port >= 1024 and port <= 65533 and port % 2 == 0 then
    return "rtp", { video_port = port, audio_port = port + 2 }
  end
  local cam = room_id:match("^cam%-(%d+)$")
  if cam then
    return "v4l2", { device = "/dev/video" .. cam }
  end
  return "test", {}
end

return M
