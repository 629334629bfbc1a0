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
--
-- local_retention(rec, facts) is asked by the node's retention pass (every
-- retention.interval, oldest first) for each completed or failed recording
-- whose file is on this node's disk. facts: age_days, size_bytes,
-- local_only (true: no verified copy in S3, deleting the file loses the
-- recording), disk_free_bytes, disk_total_bytes, disk_free_ratio. Answer
-- { delete = true, reason = "..." } to delete the local file, nil to keep
-- it. delete_local_only tells the node (for /healthz and its events)
-- whether local-only recordings may go at all.
--
-- The shipped rules: a recording already safe in S3 loses its local copy
-- once it is older than its metadata.retention_days (tagged at start), or
-- when free disk falls below min_free_ratio; a recording that exists only
-- here is never deleted (delete_local_only = false). Set delete_local_only
-- to true to let the same rules free local-only recordings.
local M = {}

M.s3_key_template = "{prefix}{recording_id}/{file_name}"
M.keep_local = false
M.retention_days = 30
M.delete_s3 = true
M.delete_local_only = false
M.min_free_ratio = 0.05

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

local function retention_days(rec)
  local days = rec.metadata and tonumber(rec.metadata.retention_days)
  if days and days > 0 then
    return days
  end
  return nil
end

function M.local_retention(rec, facts)
  if facts.local_only and not M.delete_local_only then
    return nil
  end
  local days = retention_days(rec)
  if days and facts.age_days > days then
    return { delete = true, reason = string.format("older than its retention_days (%g)", days) }
  end
  if facts.disk_free_ratio < M.min_free_ratio then
    return { delete = true,
             reason = string.format("disk %.1f%% free, below %.1f%%", facts.disk_free_ratio * 100,
                                    M.min_free_ratio * 100) }
  end
  return nil
end

return M
