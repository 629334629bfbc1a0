"""test_file_modes: what edgerec leaves on disk is not world-readable. An
mp4 recording (live Matroska file, remuxed MP4, thumbnail) and the embedded
Redis (its append-only files and log) are checked: media 0640 in 0750
directories, Redis data 0600 in 0700 directories. A world-readable AOF left
by an older version is tightened at the next start."""

import os
import stat
import time
import uuid

from edgerec_harness import run_tests, start_node, stop_nodes


def setup():
    # The embedded Redis: its files are checked too.
    return start_node("modes", {"default_quality": "low"}, redis=False)


def mode(path):
    return stat.S_IMODE(os.lstat(path).st_mode)


def test_recording_files(c):
    room = "modes-" + uuid.uuid4().hex[:6]
    r = c.node.start_recording(room, fmt="mp4")
    assert r.status == 200, r
    rid = r.json["recording_id"]
    time.sleep(2.5)
    assert c.node.op("stop", room, rid).status == 200
    rec = c.node.wait_status(room, rid, "completed", timeout=60)
    d = os.path.join(c.node.storage, rid)
    files = sorted(os.listdir(d))
    assert any(f.endswith(".mp4") for f in files) and rec["metadata"].get("thumbnail") in files, files
    assert mode(d) == 0o750, oct(mode(d))
    for f in files:
        p = os.path.join(d, f)
        if os.path.isfile(p) and not f.startswith("."):
            assert mode(p) == 0o640, (f, oct(mode(p)))
    print("  %s: %s" % (rid, ", ".join("%s %o" % (f, mode(os.path.join(d, f))) for f in files)))


def embedded_files(state_dir):
    out = []
    for root, dirs, names in os.walk(state_dir):
        for n in dirs:
            if n == "appendonlydir":
                out.append(os.path.join(root, n))
        for n in names:
            if n.startswith(("appendonly", "dump.rdb", "redis.log")) or "appendonlydir" in root:
                out.append(os.path.join(root, n))
    return out


def test_embedded_redis_files(c):
    paths = embedded_files(c.node.state_dir)
    assert any(p.endswith(".aof") for p in paths), paths
    for p in paths:
        want = 0o700 if os.path.isdir(p) else 0o600
        assert mode(p) == want, (p, oct(mode(p)))
    # As an older edgerec left them: world-readable. The next start
    # tightens them.
    for p in paths:
        os.chmod(p, 0o755 if os.path.isdir(p) else 0o644)
    c.node.restart()
    after = embedded_files(c.node.state_dir)
    assert any(p.endswith(".aof") for p in after), after
    for p in after:
        want = 0o700 if os.path.isdir(p) else 0o600
        assert mode(p) == want, (p, oct(mode(p)))


if __name__ == "__main__":
    run_tests(globals(), setup=setup, teardown=stop_nodes)
