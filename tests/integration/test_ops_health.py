"""test_ops_health: /healthz and /metrics as a monitor reads them.

- `promtool check metrics` (Debian's prometheus package) accepts /metrics,
  and every series has one # TYPE; /healthz is {"status": ok | degraded |
  down, "reasons": [...]} with the storage view.
- The metrics an operator needs are there: disk free/total, build_info with
  the version, process CPU/RSS/fds under the standard names, recordings by
  status as gauges read from the state store (they survive a restart of the
  node: not counts since start).
- A disk too full to start (recorder.disk_reserve raised past the free
  space by a SIGHUP) is "degraded" with a 200 and the reason, which says
  nothing local-only is deleted; a start gets 507 and the room a
  storage_full event saying the same; edgerec_disk_starts_refused is 1.
- A broken policy with a last good version is "degraded", 200.
- Redis away with room in the retry buffer is "degraded", 200 (the node
  keeps its live recordings); the reason says so.
- S3 uploads: a failed upload (S3 unreachable) counts under
  edgerec_s3_upload_failures_total{cause="network"} and shows in
  /healthz storage.uploads.last_failure."""

import os
import re
import shutil
import signal
import subprocess
import time
import uuid

from edgerec_harness import (Ctx, Edgerec, Redis, copy_policies, free_port, run_tests, wait_until, write_file,
                             ws_next)


def setup():
    c = Ctx()
    c.redis = Redis().start()
    c.policy_dir = copy_policies(os.path.join(c.redis.dir, "policies"))
    c.node = Edgerec(redis=c.redis, name="health", config={"policy_dir": c.policy_dir})
    c.node.start()
    c.nodes = [c.node]
    return c


def teardown(c):
    for n in (c.nodes if c else []):
        if n.alive():
            assert n.stop() == 0, n.log_tail()


def promtool_check(text):
    promtool = shutil.which("promtool")
    assert promtool, "promtool missing: scripts/bootstrap installs Debian's prometheus package"
    out = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, (out.stdout, out.stderr)
    return out.stdout + out.stderr


SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (-?[0-9.e+]+|NaN|\+Inf|-Inf)$')


def strict_check(text):
    """Each series once, each family with one TYPE before its samples."""
    types, seen = {}, set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            name = line.split()[2]
            assert name not in types, "two TYPE lines for " + name
            types[name] = line.split()[3]
            continue
        if line.startswith("#") or not line:
            continue
        m = SAMPLE.match(line)
        assert m, "malformed sample: %r" % line
        name = m.group(1)
        family = re.sub(r"_(bucket|sum|count)$", "", name) if name not in types else name
        assert family in types, "no TYPE before %r" % line
        key = name + (m.group(2) or "")
        assert key not in seen, "series twice: " + key
        seen.add(key)
    return types


def metrics(c, node=None):
    r = (node or c.node).request("GET", "/metrics", token=None)
    assert r.status == 200, r
    return r.body.decode()


def value(text, series):
    for line in text.splitlines():
        if line.startswith(series + " "):
            return float(line.split()[-1])
    raise AssertionError("%s not in /metrics" % series)


def healthz(c, node=None):
    r = (node or c.node).request("GET", "/healthz", token=None, fresh=True)
    assert r.json and r.json["status"] in ("ok", "degraded", "down"), r
    assert (r.status == 503) == (r.json["status"] == "down"), r
    return r


def test_formats(c):
    text = metrics(c)
    lint = promtool_check(text)
    types = strict_check(text)
    for name, kind in [("edgerec_disk_free_bytes", "gauge"), ("edgerec_disk_total_bytes", "gauge"),
                       ("edgerec_build_info", "gauge"), ("process_cpu_seconds_total", "counter"),
                       ("process_resident_memory_bytes", "gauge"), ("process_open_fds", "gauge"),
                       ("edgerec_recordings", "gauge")]:
        assert types.get(name) == kind, (name, types.get(name))
    assert 0 < value(text, "edgerec_disk_free_bytes") <= value(text, "edgerec_disk_total_bytes")
    st = os.statvfs(c.node.storage)
    assert abs(value(text, "edgerec_disk_total_bytes") - st.f_blocks * st.f_frsize) < 1e6
    assert value(text, "process_resident_memory_bytes") > 5e6
    assert value(text, "process_open_fds") > 5
    version = subprocess.run([c.node.bin, "--version"], capture_output=True, text=True).stdout.split()[1]
    assert re.search(r'^edgerec_build_info\{version="%s",git="[^"]*"\} 1$' % re.escape(version), text, re.M), text
    h = healthz(c)
    assert h.status == 200 and h.json["status"] == "ok" and h.json["reasons"] == [], h
    assert h.json["storage"]["disk"]["starts_refused"] is False, h
    assert h.json["storage"]["disk"]["local_only_deleted"] is False, h
    print("  promtool: %s" % (lint.strip() or "no remarks"))


def test_recordings_gauges_from_state(c):
    c.node.record_for(1.0)
    want = int(c.redis.cli("EVAL", "local n = 0 for _, k in ipairs(redis.call('KEYS', 'webrtc:recording:state:*')) do "
                           "if cjson.decode(redis.call('GET', k)).status == 'completed' then n = n + 1 end end "
                           "return n", "0"))
    assert want >= 1
    wait_until(lambda: value(metrics(c), 'edgerec_recordings{status="completed"}') == want, timeout=15,
               what="the completed gauge to reach %d" % want)
    # A new process counts the same (gauges of the state, not counters).
    c.node.restart()
    assert value(metrics(c), 'edgerec_recordings{status="completed"}') == want
    assert value(metrics(c), "edgerec_recordings_completed_total") == 0


def rewrite_and_hup(c, node, **extra):
    node.extra.update(extra)
    write_file(os.path.join(node.dir, "edgerec.conf"), node.config_text())
    done = node.log_text(since_start=True).count("reload: done")
    node.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: node.log_text(since_start=True).count("reload: done") > done, timeout=10, what="reload")


def test_disk_too_full_is_degraded(c):
    room = "full-" + uuid.uuid4().hex[:6]
    ws = c.node.ws(room)
    rewrite_and_hup(c, c.node, **{"recorder.disk_reserve": "100T"})
    h = healthz(c)
    assert h.status == 200 and h.json["status"] == "degraded", h
    reason = [x for x in h.json["reasons"] if x.startswith("storage: ")]
    assert len(reason) == 1 and "not enough free disk" in reason[0] and "507" in reason[0], h.json
    assert "nothing that exists only on this node is deleted" in reason[0], reason
    assert h.json["storage"]["disk"]["starts_refused"] is True, h
    assert value(metrics(c), "edgerec_disk_starts_refused") == 1
    r = c.node.start_recording(room, "alice", "webm", "low")
    assert r.status == 507 and r.json["code"] == "insufficient_storage", r
    ev = ws_next(ws, "storage_full")
    assert ev["room_id"] == room and ev["data"]["code"] == "insufficient_storage", ev
    assert ev["data"]["local_only_deleted"] is False and "nothing that exists only" in ev["data"]["detail"], ev
    ws.close()
    c.node.extra.pop("recorder.disk_reserve")
    rewrite_and_hup(c, c.node)
    assert healthz(c).json["status"] == "ok"


def test_broken_policy_is_degraded(c):
    path = os.path.join(c.policy_dir, "quota.lua")
    good = open(path).read()
    write_file(path, good + "\nthis is not lua (\n")
    try:
        wait_until(lambda: healthz(c).json["status"] == "degraded", timeout=10, what="degraded")
        h = healthz(c)
        assert h.status == 200 and any(x.startswith("policies: ") for x in h.json["reasons"]), h
    finally:
        write_file(path, good)
    wait_until(lambda: healthz(c).json["status"] == "ok", timeout=10, what="ok again")


def test_redis_away_is_degraded(c):
    c.redis.stop()
    try:
        h = wait_until(lambda: (lambda r: r if r.json["status"] != "ok" else None)(healthz(c)), timeout=10,
                       what="not ok")
        assert h.status == 200 and h.json["status"] == "degraded", h
        assert any(x.startswith("recorder: the state store (Redis) does not answer: live recordings go on")
                   for x in h.json["reasons"]), h
    finally:
        c.redis.start()
    wait_until(lambda: healthz(c).json["status"] == "ok", timeout=20, what="ok after Redis")


def test_s3_failures_by_cause(c):
    dead = free_port()
    n = Edgerec(redis=c.redis, name="s3dead", config={
        "storage_backend": "s3", "s3_bucket": "nowhere", "s3.endpoint": "http://127.0.0.1:%d" % dead,
        "s3.path_style": "true", "s3.region": "us-east-1", "s3.access_key": "K", "s3.secret_key": "S",
        "s3.retries": "2", "s3.backoff": "50ms", "s3.timeout": "2s"})
    c.nodes.append(n)
    n.start()
    text = metrics(c, n)
    promtool_check(text)
    strict_check(text)
    assert value(text, 'edgerec_s3_upload_failures_total{cause="network"}') == 0
    n.record_for(1.0, wait="failed")
    text = metrics(c, n)
    promtool_check(text)
    assert value(text, 'edgerec_s3_upload_failures_total{cause="network"}') == 1, text
    assert value(text, "edgerec_s3_uploads_total") == 0
    assert value(text, "edgerec_s3_last_failure_timestamp_seconds") > time.time() - 120
    up = healthz(c, n).json["storage"]["uploads"]
    assert up["failed"] == 1 and up["last_failure"] and up["queue"] == 0, up
    assert n.stop() == 0


run_tests(globals(), setup=setup, teardown=teardown)
