"""test_state_sentinel: edgerec on a highly available Redis behind Redis
Sentinel (redis_url = redis-sentinel://s1,s2,s3/mymaster), failed over twice
while a recording runs.

A real master and replica (redis-server) and three sentinels (Debian's
redis-sentinel, or redis-server --sentinel: the same program) on 127.0.0.1.
One `edgerec serve` finds the master through the sentinels.

- A recording starts on the first master; a WebSocket client watches its room.
- `SENTINEL failover` promotes the replica while the recording runs: every
  connection of the node follows (its room-event pattern subscription is on
  the new master, none is left on the old one), the recording's state keeps
  being written to the new master, and admission stays exact there: with
  max_concurrent_recordings = 3 and the recording still live, exactly 2 of
  8 concurrent starts are admitted and the active set holds exactly 3 ids.
- The new master is killed (SIGKILL): the sentinels elect the old master
  again and the node follows once more (writes made during the outage are
  kept and written later).
- Every recording then stops and completes: its final state is on the last
  master, the first one's duration grew on each new master and its file
  holds what its state says, and the WebSocket client, connected since
  before the first failover, receives the stop and completion events.
- A sentinel that does not know the master is skipped, and the one that
  answered is asked first from then on.
- Bad sentinel URLs and unreachable or unknowing sentinels stop `edgerec
  serve` at start with a clear message.
"""

import json
import os
import shutil
import signal
import subprocess
import threading
import time
import uuid

from edgerec_harness import (Edgerec, Redis, free_port, https_post, mktemp, run_tests, start_process, wait_until,
                             ws_next)

MASTER = "mymaster"
LIMIT = 3


class Ctx:
    nodes = []


def cli(port, *args):
    out = subprocess.run(["redis-cli", "-p", str(port), "--raw"] + [str(a) for a in args],
                         capture_output=True, text=True, timeout=10)
    return out.stdout.rstrip("\n")


def sentinel_argv(conf):
    """Debian's redis-sentinel when installed, else the same program as
    redis-server --sentinel."""
    if shutil.which("redis-sentinel"):
        return ["redis-sentinel", conf]
    return ["redis-server", conf, "--sentinel"]


def start_sentinel(master_port):
    """A sentinel watching the master on 'master_port' (None: watching
    nothing, so it answers get-master-addr-by-name with null)."""
    d = mktemp("sentinel")
    port = free_port()
    conf = os.path.join(d, "sentinel.conf")
    with open(conf, "w") as f:
        f.write("port %d\nbind 127.0.0.1\nprotected-mode no\ndir %s\nlogfile \"\"\n" % (port, d))
        if master_port:
            f.write("sentinel monitor %s 127.0.0.1 %d 2\n"
                    "sentinel down-after-milliseconds %s 1000\n"
                    "sentinel failover-timeout %s 3000\n"
                    "sentinel parallel-syncs %s 1\n" % (MASTER, master_port, MASTER, MASTER, MASTER))
    start_process(sentinel_argv(conf), os.path.join(d, "sentinel.log"))
    wait_until(lambda: cli(port, "PING") == "PONG", timeout=10, what="sentinel on %d" % port)
    return port


def master_port(c):
    """The master's port as the first sentinel that answers tells it."""
    for s in c.sentinels:
        out = cli(s, "SENTINEL", "get-master-addr-by-name", MASTER).split("\n")
        if len(out) == 2 and out[1].isdigit():
            return int(out[1])
    return None


def role(port):
    return cli(port, "ROLE").split("\n")[0]


def link_up(replica):
    return "master_link_status:up" in cli(replica, "INFO", "replication")


def known_everywhere(c, replica):
    """Every sentinel knows the replica 'replica' (healthy) and the two
    other sentinels: both failovers below need it."""
    for s in c.sentinels:
        reps = cli(s, "SENTINEL", "replicas", MASTER)
        if ("\n%d\n" % replica) not in ("\n" + reps + "\n") or "s_down" in reps or "disconnected" in reps:
            return False
        if cli(s, "SENTINEL", "sentinels", MASTER).count("\nport\n") < 2:
            return False
    return True


def state_on(port, rid):
    raw = cli(port, "GET", "webrtc:recording:state:" + rid)
    return json.loads(raw) if raw else None


def numpat(port):
    """Pattern subscriptions on a server: edgerec's room-event subscription
    is the only one (sentinels subscribe to a plain channel)."""
    out = cli(port, "PUBSUB", "NUMPAT")
    return int(out) if out.lstrip("-").isdigit() else None


def node_clients(port):
    """Connections to a server other than the sentinels' (which name
    theirs) and redis-cli's own: the node's."""
    out = []
    for line in cli(port, "CLIENT", "LIST").splitlines():
        f = dict(kv.split("=", 1) for kv in line.split() if "=" in kv)
        if not f.get("name") and f.get("cmd") != "client|list":
            out.append(line)
    return out


def setup():
    c = Ctx()
    c.a = Redis(appendonly=False).start()
    c.b = Redis(appendonly=False).start()
    c.servers = {c.a.port: c.a, c.b.port: c.b}
    assert c.b.cli("REPLICAOF", "127.0.0.1", c.a.port) == "OK"
    wait_until(lambda: link_up(c.b.port), timeout=15, what="replica in sync")
    c.sentinels = [start_sentinel(c.a.port) for _ in range(3)]
    wait_until(lambda: known_everywhere(c, c.b.port), timeout=20, what="sentinels know each other and the replica")
    c.url = "redis-sentinel://%s/%s" % (",".join("127.0.0.1:%d" % p for p in c.sentinels), MASTER)
    c.node = Edgerec(config={"redis_url": c.url, "node_id": "ha-node", "default_quality": "low",
                             "max_concurrent_recordings": LIMIT, "recorder.encode_budget": 100000},
                     name="ha-node").start()
    c.nodes = [c.node]
    c.room = "ha-" + uuid.uuid4().hex[:8]
    c.live = []  # (room, user, id) of every recording started
    return c


def teardown(c):
    for n in (c.nodes if c else []):
        if n.alive():
            assert n.stop() == 0, n.log_tail()


def test_record_on_first_master(c):
    assert master_port(c) == c.a.port
    assert numpat(c.a.port) == 1, "the node's room-event subscription is on the master"
    c.ws = c.node.ws(c.room, user="watcher")
    r = c.node.start_recording(c.room, user="owner", quality="low")
    assert r.status == 200, r
    c.rid = r.json["recording_id"]
    c.live.append((c.room, "owner", c.rid))
    c.node.wait_status(c.room, c.rid, "recording", user="owner")
    ev = ws_next(c.ws, "recording_started")
    assert ev["data"]["recording_id"] == c.rid, ev
    wait_until(lambda: (state_on(c.a.port, c.rid) or {}).get("status") == "recording", timeout=10,
               what="the record on the first master")
    assert cli(c.a.port, "SISMEMBER", "webrtc:recording:active", c.rid) == "1"


def wait_promoted(c, new, old):
    wait_until(lambda: master_port(c) == new and role(new) == "master", timeout=30,
               what="the sentinels to promote %d" % new)


def follows(c, new, old, old_alive=True):
    """The node's subscription is on 'new', no connection of the node is
    left on 'old', and the recording's state is written to 'new' again (a
    write newer than the failover)."""
    wait_until(lambda: numpat(new) == 1 and (not old_alive or (numpat(old) == 0 and not node_clients(old))),
               timeout=15, what="the node's connections to move to %d" % new)
    if old_alive:
        # Sentinel converts a replaced master that still runs some 8 s
        # after the switch, killing its clients then: the node moved
        # before, on the +switch-master announcement, while the old master
        # still took writes.
        assert role(old) == "master", "the node moved only when the old master was converted"
    before = state_on(new, c.rid)["duration_seconds"]
    wait_until(lambda: state_on(new, c.rid)["duration_seconds"] > before + 1, timeout=20,
               what="the running recording's state written to the new master")
    rec = state_on(new, c.rid)
    assert rec["status"] == "recording", rec
    c.duration_seen = rec["duration_seconds"]
    assert c.node.healthz_status() == 200


def test_manual_failover_while_recording(c):
    time.sleep(1.5)  # the recording runs a little on the first master
    before = state_on(c.a.port, c.rid)
    assert cli(c.sentinels[0], "SENTINEL", "FAILOVER", MASTER) == "OK"
    wait_promoted(c, c.b.port, c.a.port)
    # What the first master held was replicated: the record and the admission.
    assert state_on(c.b.port, c.rid)["recording_id"] == c.rid
    assert cli(c.b.port, "SISMEMBER", "webrtc:recording:active", c.rid) == "1"
    follows(c, c.b.port, c.a.port)
    assert state_on(c.b.port, c.rid)["duration_seconds"] > before["duration_seconds"]
    assert c.node.op("status", c.room, c.rid, user="owner").json["status"] == "recording"
    assert c.node.metric("edgerec_redis_master_changes_total") >= 1


def test_admission_exact_after_failover(c):
    # One recording is live, so LIMIT - 1 of these may start.
    results, lock, go = [], threading.Lock(), threading.Event()

    def racer(i):
        go.wait()
        room, user = "%s-%d" % (c.room, i), "racer%d" % i
        try:
            status, body = https_post(c.node, "/api/webrtc/rooms/%s/recording/start?quality=low" % room, user)
        except OSError as e:
            status, body = -1, str(e).encode()
        with lock:
            results.append((status, body, room, user))

    threads = [threading.Thread(target=racer, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    time.sleep(0.2)
    go.set()
    for t in threads:
        t.join(60)
    ok = [(room, user, json.loads(b)["recording_id"]) for s, b, room, user in results if s == 200]
    refused = [b for s, b, _, _ in results if s == 400 and b'"limit_reached"' in b]
    assert len(results) == 8 and len(ok) == LIMIT - 1 and len(refused) == 8 - (LIMIT - 1), results
    c.live += ok
    active = set(cli(c.b.port, "SMEMBERS", "webrtc:recording:active").split())
    assert active == set(rid for _, _, rid in c.live), (active, c.live)


def test_master_killed_while_recording(c):
    # The sentinels turn the old master into a replica of the new one (some
    # 8 s after the failover: Sentinel waits that long before it converts a
    # returning master); once in sync it can be promoted back.
    wait_until(lambda: role(c.a.port) == "slave" and link_up(c.a.port), timeout=30, what="old master resynced")
    wait_until(lambda: known_everywhere(c, c.a.port), timeout=30, what="sentinels see the old master as replica")
    wait_until(lambda: all(cli(c.a.port, "SISMEMBER", "webrtc:recording:active", rid) == "1"
                           for _, _, rid in c.live), timeout=10, what="admissions replicated")
    os.kill(c.b.proc.pid, signal.SIGKILL)
    c.b.proc.wait()
    wait_promoted(c, c.a.port, c.b.port)
    follows(c, c.a.port, c.b.port, old_alive=False)
    assert c.node.op("status", c.room, c.rid, user="owner").json["status"] == "recording"


def test_recordings_complete_on_last_master(c):
    for room, user, rid in c.live:
        r = c.node.op("stop", room, rid, user=user)
        assert r.status == 200, r
    done = c.node.wait_status(c.room, c.rid, "completed", user="owner", timeout=60)
    ev = ws_next(c.ws, "recording_stopped", timeout=20)
    assert ev["data"]["recording_id"] == c.rid, ev
    ev = ws_next(c.ws, "recording_completed", timeout=60)
    assert ev["data"]["recording_id"] == c.rid, ev
    c.ws.close()
    for room, user, rid in c.live:
        c.node.wait_status(room, rid, "completed", user=user, timeout=60)
        rec = state_on(c.a.port, rid)
        assert rec["status"] == "completed" and rec["error"] is None, rec
    assert cli(c.a.port, "SCARD", "webrtc:recording:active") == "0"
    # The recording ran on through both failovers (its duration grew on each
    # new master, see follows()), and its file holds what its state says.
    rec = state_on(c.a.port, c.rid)
    assert rec["duration_seconds"] > c.duration_seen, (rec["duration_seconds"], c.duration_seen)
    path = os.path.join(done["local_path"], done["file_name"])
    out = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0", path],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert abs(float(out.stdout.strip()) - rec["duration_seconds"]) < 1.5, (out.stdout, rec["duration_seconds"])


def start_fails(url):
    node = Edgerec(config={"redis_url": url}, name="bad-url")
    try:
        node.start(timeout=15)
    except AssertionError as e:
        return str(e)
    node.stop()
    raise AssertionError("edgerec started with redis_url %s" % url)


def test_bad_sentinel_urls_stop_the_start(c):
    assert "no master name" in start_fails("redis-sentinel://127.0.0.1:%d" % c.sentinels[0])
    assert "bad port" in start_fails("redis-sentinel://127.0.0.1:0/" + MASTER)
    out = start_fails("redis-sentinel://127.0.0.1:%d/%s" % (c.sentinels[0], "nosuchmaster"))
    assert "the redis sentinels do not know master 'nosuchmaster'" in out, out
    out = start_fails("redis-sentinel://127.0.0.1:%d,127.0.0.1:%d/%s" % (free_port(), free_port(), MASTER))
    assert "no redis sentinel answered for master 'mymaster'" in out, out


def commands_served(port):
    for line in cli(port, "INFO", "stats").splitlines():
        if line.startswith("total_commands_processed:"):
            return int(line.split(":")[1])
    raise AssertionError("no total_commands_processed from %d" % port)


def test_sentinel_that_answered_goes_first(c):
    """A sentinel that does not know the master answers null and the next
    is asked; the one that answered is asked first from then on, so the
    first is asked no more while the node opens connection after
    connection."""
    lonely = start_sentinel(None)
    url = "redis-sentinel://127.0.0.1:%d,%s/%s" % (lonely, ",".join("127.0.0.1:%d" % p for p in c.sentinels),
                                                   MASTER)
    node = Edgerec(config={"redis_url": url, "node_id": "ha-order"}, name="ha-order")
    c.nodes.append(node)
    before = commands_served(lonely) + 1  # and the INFO just sent
    node.start()
    statuses = []

    def reader(i):
        client = node.client()
        for _ in range(5):
            statuses.append(client.request("GET", "/api/webrtc/rooms/r%d/recording/%s/status" %
                                            (i, uuid.uuid4()), token="reader%d" % i, fresh=True).status)
    threads = [threading.Thread(target=reader, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert statuses == [404] * 40, statuses
    assert node.metric("edgerec_redis_up") == 1
    # Asked once at start (and perhaps once by the +switch-master watcher,
    # which looks for a sentinel that knows the master).
    asked = commands_served(lonely) - before
    assert asked <= 2, asked
    assert node.stop() == 0


run_tests(globals(), setup=setup, teardown=teardown)
