"""test_ops_reload: SIGHUP reloads the configuration and the policies and
never ends the server; SIGTERM stays the clean stop.

- A live recording survives several SIGHUPs intact: its file's duration
  (ffprobe) matches the time it was recording (wall clock between the start
  and stop replies), and every frame of it is in the file or counted in its
  metadata (frames a busy box skips are counted, none go missing).
- Live options take effect: max_concurrent_recordings lowered to 1 makes
  the next start fail with limit_reached; log_level debug shows debug lines.
- Options that need a restart (http.threads) are named as such in the log.
- A configuration that does not pass (storage_backend = s4) is refused with
  the reason; the running one stays and the server keeps serving.
- A policy edited on disk is in force right after the SIGHUP."""

import json
import os
import signal
import subprocess
import time
import uuid

from edgerec_harness import Ctx, Edgerec, Redis, run_tests, wait_until, write_file


def setup():
    c = Ctx()
    c.redis = Redis().start()
    c.policy_dir = os.path.join(c.redis.dir, "policies")
    os.makedirs(c.policy_dir)
    c.node = Edgerec(redis=c.redis, name="reload", config={"policy_dir": c.policy_dir, "log_level": "info"})
    # The level comes from log_level: EDGEREC_LOG (which would win) is
    # left empty.
    saved = os.environ.get("EDGEREC_LOG")
    os.environ["EDGEREC_LOG"] = ""
    try:
        c.node.start()
    finally:
        if saved is None:
            os.environ.pop("EDGEREC_LOG")
        else:
            os.environ["EDGEREC_LOG"] = saved
    c.nodes = [c.node]
    c.conf = os.path.join(c.node.dir, "edgerec.conf")
    return c


def teardown(c):
    if c and c.node.alive():
        assert c.node.stop() == 0, c.node.log_tail()


def rewrite_config(c, **extra):
    """The node's config file with 'extra' options added (names with '.'
    passed as dict keys)."""
    c.node.extra.update(extra)
    write_file(c.conf, c.node.config_text())


def sighup_and_wait(c, count=1):
    """Sends SIGHUP and waits for the reload's summary line (or refusal)."""
    before = c.node.log_text(since_start=True).count("SIGHUP: reloading")
    done_before = count_done(c)
    c.node.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: count_done(c) > done_before, timeout=10, what="the reload to finish")
    assert c.node.alive(), c.node.log_tail()
    assert c.node.log_text(since_start=True).count("SIGHUP: reloading") == before + 1


def count_done(c):
    return c.node.log_text(since_start=True).count("[serve] reload: done")


def ffprobe_duration(path):
    out = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "json", path],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    return float(json.loads(out.stdout)["format"]["duration"])


def test_recording_survives_sighups(c):
    room = "hup-" + uuid.uuid4().hex[:6]
    t0 = time.monotonic()
    r = c.node.start_recording(room, "alice", "webm", "low")
    t1 = time.monotonic()
    assert r.status == 200, r
    rid = r.json["recording_id"]
    for i in range(5):
        time.sleep(0.8)
        rewrite_config(c, max_recording_duration=str(3600 + i))
        sighup_and_wait(c)
    time.sleep(0.5)
    s0 = time.monotonic()
    assert c.node.op("stop", room, rid).status == 200
    s1 = time.monotonic()
    rec = c.node.wait_status(room, rid, "completed", timeout=60)
    # The recording ran from (t0..t1) to (s0..s1).
    longest, shortest = s1 - t0, s0 - t1
    dur = ffprobe_duration(os.path.join(rec["local_path"], rec["file_name"]))
    assert shortest - 0.6 <= dur <= longest + 0.3, (dur, shortest, longest)
    media = rec["metadata"].get("media", {})
    assert not rec["metadata"].get("recovered"), rec["metadata"]
    # Every frame of the clip is in the file or counted as left out (a box
    # short of CPU skips frames and says so; a reload must lose none).
    accounted = sum(media.get(k, 0) for k in ("video_frames_encoded", "video_frames_dropped",
                                              "video_frames_skipped"))
    assert accounted >= int(24 * (dur - 0.5)), media
    log = c.node.log_text(since_start=True)
    assert log.count("reload: max_recording_duration: ") == 5, log[-3000:]
    print("  recording %.2f s, wall %.2f..%.2f s, 5 SIGHUPs, frames %s dropped %s" % (
        dur, shortest, longest, media.get("video_frames_encoded"), media.get("video_frames_dropped")))


def test_live_limit_and_restart_named(c):
    rewrite_config(c, max_concurrent_recordings="1", **{"http.threads": "40", "log_level": "debug"})
    sighup_and_wait(c)
    log = c.node.log_text(since_start=True)
    assert "reload: max_concurrent_recordings: 10 -> 1 (applied)" in log, log[-3000:]
    assert "reload: http.threads: 48 -> 40 (needs a restart)" in log, log[-3000:]
    assert "reload: log_level: info -> debug (applied)" in log, log[-3000:]
    room = "lim-" + uuid.uuid4().hex[:6]
    a = c.node.start_recording(room, "u1", "webm", "low")
    assert a.status == 200, a
    b = c.node.start_recording(room, "u2", "webm", "low")
    assert b.status == 400 and b.json["code"] == "limit_reached", b
    assert c.node.op("cancel", room, a.json["recording_id"], user="u1").status == 200
    # debug lines appear now (the probe's access line is at debug).
    assert c.node.request("GET", "/healthz", token=None, headers={"X-Request-Id": "dbg-probe"}).status == 200
    wait_until(lambda: "req=dbg-probe " in c.node.log_text(since_start=True), timeout=5, what="debug line")
    rewrite_config(c, max_concurrent_recordings="10", **{"http.threads": "48", "log_level": "info"})
    sighup_and_wait(c)


def test_bad_config_refused(c):
    rewrite_config(c, storage_backend="s4")
    sighup_and_wait(c)
    log = c.node.log_text(since_start=True)
    assert "reload refused, the running configuration stays" in log and "'s4' is not one of local, s3" in log, \
        log[-2000:]
    room = "after-" + uuid.uuid4().hex[:6]
    r = c.node.start_recording(room, "alice", "webm", "low")
    assert r.status == 200 and r.json["storage_backend"] == "local", r
    assert c.node.op("cancel", room, r.json["recording_id"]).status == 200
    c.node.extra.pop("storage_backend")
    rewrite_config(c)
    sighup_and_wait(c)


def test_policy_reloaded(c):
    room = "pol-" + uuid.uuid4().hex[:6]
    write_file(os.path.join(c.policy_dir, "auth.lua"),
               "return { authorize = function(action, caller)\n"
               "  if caller.user_id == 'blocked' then return false, 'blocked here' end\n"
               "  return true\nend }\n")
    sighup_and_wait(c)
    r = c.node.start_recording(room, "blocked", "webm", "low")
    assert r.status == 403, r
    r = c.node.start_recording(room, "alice", "webm", "low")
    assert r.status == 200, r
    assert c.node.op("cancel", room, r.json["recording_id"]).status == 200


def test_sigterm_still_stops(c):
    assert c.node.stop() == 0, c.node.log_tail()
    assert "shutting down" in c.node.log_text(since_start=True)


run_tests(globals(), setup=setup, teardown=teardown)
