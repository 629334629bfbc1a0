"""test_disk_full: the recordings directory fills up mid-recording (a small
tmpfs mounted for the test; once the recording runs, a filler file leaves
it about 512 KB). The recording stops (event recording_stopped with reason
disk_full), its state says why (metadata.stop_reason), processing
completes (without a thumbnail when there is no room for one:
metadata.thumbnail_error), and the file is finalized in place: ffprobe
reads a duration and ffmpeg decodes it to the end without "ended
prematurely" or any other error."""

import atexit
import errno
import os
import subprocess
import uuid

from edgerec_harness import mktemp, run_tests, start_node, stop_nodes, ws_next

TMPFS_SIZE = "64m"
LEFT = 512 * 1024  # bytes left free once the recording runs


def setup():
    mnt = mktemp("diskfull")
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=%s,mode=0755" % TMPFS_SIZE, "tmpfs", mnt], check=True)
    # Also on SIGTERM (the harness exits through atexit), not only in teardown.
    atexit.register(subprocess.run, ["umount", "-l", mnt], stderr=subprocess.DEVNULL)
    c = start_node("disk-full", {"recorder.disk_reserve": "0", "recorder.disk_low_water": "0",
                                 "default_quality": "low", "max_recording_duration": 400},
                   storage=mnt)
    c.mnt = mnt
    return c


def teardown(c):
    try:
        stop_nodes(c)
    finally:
        if c:
            subprocess.run(["umount", "-l", c.mnt], stderr=subprocess.DEVNULL)


def test_disk_full_finalizes_and_says_why(c):
    room = "full-" + uuid.uuid4().hex[:8]
    ws = c.node.ws(room)
    r = c.node.start_recording(room, "alice", fmt="webm")
    assert r.status == 200, r
    rid = r.json["recording_id"]
    # The recording writes meanwhile: fill in steps, down to LEFT.
    with open(os.path.join(c.mnt, "filler"), "wb", buffering=0) as f:
        while True:
            vs = os.statvfs(c.mnt)
            free = vs.f_bavail * vs.f_frsize
            if free <= LEFT:
                break
            try:
                f.write(b"\0" * min(free - LEFT, 1 << 20))
            except OSError as e:
                assert e.errno == errno.ENOSPC, e
                break
    stopped = ws_next(ws, "recording_stopped", timeout=300)
    ws.close()
    assert stopped["data"]["recording_id"] == rid
    assert stopped["data"]["reason"] == "disk_full", stopped

    rec = c.node.wait_status(room, rid, ("completed", "failed"), timeout=120)
    md = rec["metadata"]
    assert md.get("stop_reason") == "disk_full", md
    assert "No space left" in md.get("stop_detail", ""), md
    # Processing completes: the file is the recording. A thumbnail needs
    # room the disk may not have; then metadata says why there is none.
    assert rec["status"] == "completed", rec
    assert md.get("thumbnail") or "No space left" in md.get("thumbnail_error", ""), md
    print("  status %s, duration_seconds %s, thumbnail_error %r" %
          (rec["status"], rec["duration_seconds"], md.get("thumbnail_error")))

    path = os.path.join(c.mnt, rid, "recording_%s.webm" % rid)
    st = os.stat(path)
    assert st.st_size > LEFT // 2, st.st_size
    assert st.st_mode & 0o777 == 0o640, oct(st.st_mode)
    out = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0", path],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and not out.stderr.strip(), out.stderr
    dur = float(out.stdout.strip())
    assert dur > 1.0, out.stdout
    dec = subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-i", path, "-f", "null", "-"],
                         capture_output=True, text=True, timeout=120)
    assert dec.returncode == 0 and not dec.stderr.strip(), dec.stderr
    # The state's duration is the file's.
    assert abs(dur - rec["duration_seconds"]) < 0.5, (dur, rec["duration_seconds"])
    print("  file %d bytes, ffprobe duration %.2f s, decodes cleanly" % (st.st_size, dur))


if __name__ == "__main__":
    run_tests(globals(), setup=setup, teardown=teardown)
