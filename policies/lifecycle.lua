-- lifecycle: what happens around a recording's life.
--
-- on_started, on_stopped, on_completed and on_failed receive the state
-- object and may answer (or return nil for the defaults):
--   tags            a table of strings, numbers and booleans merged into the
--                   recording's "metadata"
--   keep_local      keep the local file after a successful S3 upload
--   s3_key_template the object key; placeholders {prefix} (s3_prefix),
--                   {recording_id}, {room_id}, {user_id}, {file_name},
--                   {format}, {quality}, {date}, {year}, {month}, {day}
-- on_deleted(rec) is asked when a completed or failed recording is deleted
-- (DELETE on it, or the console's delete); it may answer
--   delete_s3       true: the S3 object goes too; false or no answer: it
--                   stays (an archive the bucket's own rules keep)
-- The shipped answers reproduce the reference's layout: the key mirrors
-- the local folder under s3_prefix and the local copy goes once uploaded;
-- a deleted recording is deleted everywhere.
local M = {}

M.s3_key_template = "{prefix}{recording_id}/{file_name}"
M.keep_local = false
M.retention_days = 30
M.delete_s3 = true

local function answer(tags)
  return { tags = tags, keep_local = M.keep_local, s3_key_template = M.s3_key_template }
end

function M.on_started(rec)
  return answer({ retention_days = M.retention_days })
end

function M.on_stopped(rec)
  return answer({})
end

function M.on_completed(rec)
  return answer({ archived = rec.storage_backend == "s3" })
end

function M.on_failed(rec)
  return answer({ needs_attention = true })
end

function M.on_deleted(rec)
  return { delete_s3 = M.delete_s3 }
end

return M
