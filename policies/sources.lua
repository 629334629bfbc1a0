-- sources: what a room captures.
--
-- resolve(room_id) answers a media source name and its arguments (a table
-- { key = value } or a "k=v,k=v" string):
--   test   a generated picture and tone (tone=HZ, beep=0|1)
--   file   a recorded file played live (video=PATH, audio=PATH)
--   rtp    RTP from an SFU (video_port, audio_port, sdp=PATH, ...)
--   whip   a WHIP publisher who comes later: a REST start waits (pending)
--          for one to POST to the room's WHIP endpoint (video: VP8 for
--          webm, H.264 for mp4 and mkv; mkv: video_codec = "vp8" for VP8)
--   v4l2   a camera: device = "/dev/videoN" or a stable link
--          ("/dev/v4l/by-id/usb-...-video-index0", which survives replugging
--          into another port); audio = an ALSA capture PCM ("hw:1,0",
--          "plughw:CARD=Device,DEV=0") for the room's sound, from the same
--          clock; format = "yuyv" | "nv12" | "i420" | "mjpeg" forces one;
--          size = "640x360", fps = 15 ask the camera for a smaller or
--          slower mode than the preset's.
--          The camera's mode nearest the preset is taken; a missing camera
--          answers 503, one in use 409; an unplugged one is reopened and
--          the recording goes on (metadata.source_stalled meanwhile).
--   alsa   a microphone only (device = an ALSA capture PCM), for rooms
--          without a picture
-- GET /api/system/devices (admin) lists the cameras (with their stable
-- links, formats, sizes and rates) and microphones of the box.
-- In order: the rooms table below, then the configuration
-- (room.<id>.source and room.<id>.args), then room names that say what
-- they are ("rtp-40004" listens for video on 40004 and audio on 40006,
-- "cam-0" opens /dev/video0), and the test source for anything else.
--
-- RTP ports: rooms listen only inside rtp.port_min..rtp.port_max. The
-- appliance refuses (409) a start whose ports fall outside, whatever this
-- file answers; here an "rtp-<n>" room whose number is not an even port
-- with its pairs inside that range gets its ports allocated from the range
-- instead (they are announced in the recording's metadata.rtp). Senders
-- are filtered: the first address that sends is latched and packets from
-- any other are dropped, unless args name the sender (allow = "IP").
local M = {}

M.rooms = {
  -- lobby = { source = "rtp", args = { video_port = 5004, audio_port = 5006 } },
  -- A room wired to the box's camera and microphone:
  -- cam1 = { source = "v4l2", args = {
  --   device = "/dev/v4l/by-id/usb-046d_HD_Pro_Webcam_C920-video-index0",
  --   audio = "plughw:CARD=C920,DEV=0" } },
  -- A room that records a microphone only:
  -- podium = { source = "alsa", args = { device = "hw:1,0" } },
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
  local digits = room_id:match("^rtp%-(%d+)$")
  if digits then
    local port = tonumber(digits)
    local min = tonumber(edge.config("rtp.port_min") or "") or 40000
    local max = tonumber(edge.config("rtp.port_max") or "") or 40999
    -- video on port, audio on port + 2, each with its RTCP port after it
    if port and port % 2 == 0 and port >= min and port + 3 <= max then
      return "rtp", { video_port = port, audio_port = port + 2 }
    end
    return "rtp", {}
  end
  local cam = room_id:match("^cam%-(%d+)$")
  if cam then
    return "v4l2", { device = "/dev/video" .. cam }
  end
  return "test", {}
end

return M
