"""test_state_nodes: the state module seen from outside, through real
`edgerec serve` processes.

- Two nodes share one redis-server with max_concurrent_recordings = 10; 100
  starts race in parallel (50 threads per node, one HTTPS connection each):
  exactly 10 get 200, the other 90 a 400 limit_reached, and the active set
  holds exactly the 10 admitted ids (redis-cli).
- A node without redis_url runs its own redis-server on state_dir/redis.sock
  with an append-only file; killing the node with SIGKILL takes that server
  down too (no orphan), and the next start on the same state_dir finds the
  recording it left, reconciled (no phantom live recording).
"""

import json
import os
import socket
import subprocess
import threading
import time

from edgerec_harness import Edgerec, Redis, https_post, run_tests, wait_until


class Ctx:
    nodes = []


def test_race_two_nodes(ctx):
    redis = Redis(appendonly=False).start()
    # The shared global limit is under test, not each node's encode budget.
    a = Edgerec(redis=redis, name="race-a", config={"max_concurrent_recordings": 10,
                                                     "node_id": "race-a",
                                                     "recorder.encode_budget": 100000})
    b = Edgerec(redis=redis, name="race-b", config={"max_concurrent_recordings": 10,
                                                     "node_id": "race-b",
                                                     "recorder.encode_budget": 100000})
    ctx.nodes = [a, b]
    a.start()
    b.start()
    results = []
    lock = threading.Lock()
    go = threading.Event()

    def racer(node, i):
        go.wait()
        try:
            status, body = https_post(node, "/api/webrtc/rooms/race-%d/recording/start?quality=low" % (i % 7),
                                      "racer%d" % i)
        except OSError as e:
            status, body = -1, str(e).encode()
        with lock:
            results.append((status, body, node.name))

    threads = [threading.Thread(target=racer, args=(a if i % 2 == 0 else b, i)) for i in range(100)]
    for t in threads:
        t.start()
    time.sleep(0.3)
    go.set()
    for t in threads:
        t.join(90)

    ok = [r for r in results if r[0] == 200]
    refused = [r for r in results if r[0] == 400 and b'"limit_reached"' in r[1]]
    other = [r for r in results if r not in ok and r not in refused]
    assert len(results) == 100, len(results)
    assert not other, other[:3]
    assert len(ok) == 10, (len(ok), [r[2] for r in ok])
    assert len(refused) == 90
    active = set(redis.cli("SMEMBERS", "webrtc:recording:active").split())
    admitted = {json.loads(r[1])["recording_id"] for r in ok}
    assert active == admitted, (active, admitted)
    print("admitted per node: a=%d b=%d" % (sum(r[2] == "race-a" for r in ok),
                                            sum(r[2] == "race-b" for r in ok)))

    # Cancel them all; the active set empties and a new start is admitted.
    for r in ok:
        rec = json.loads(r[1])
        node = a if r[2] == "race-a" else b
        resp = node.op("cancel", rec["room_id"], rec["recording_id"], user=rec["user_id"])
        assert resp.status == 200, resp
    assert redis.cli("SCARD", "webrtc:recording:active") == "0"
    r = a.start_recording("race-after", user="late", quality="low")
    assert r.status == 200, r
    a.op("cancel", "race-after", r.json["recording_id"], user="late")
    a.stop()
    b.stop()
    redis.stop()


def redis_sock_answers(path):
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(0.5)
            s.connect(path)
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def sock_cli(path, *args):
    out = subprocess.run(["redis-cli", "-s", path, "--raw"] + list(args),
                         capture_output=True, text=True, timeout=10)
    return out.stdout.rstrip("\n")


def test_embedded_redis_crash(ctx):
    node = Edgerec(redis=None, name="embedded", config={"node_id": "emb-1"})
    ctx.nodes = [node]
    node.start()
    sock = os.path.join(node.state_dir, "redis.sock")
    assert redis_sock_answers(sock), "no embedded redis on %s" % sock
    assert sock_cli(sock, "CONFIG", "GET", "appendonly").split() == ["appendonly", "yes"]
    assert sock_cli(sock, "CONFIG", "GET", "dir").split()[1] == os.path.realpath(node.state_dir)

    r = node.start_recording("emb-room", user="alice", quality="low")
    assert r.status == 200, r
    rid = r.json["recording_id"]
    node.wait_status("emb-room", rid, "recording", timeout=20)
    assert sock_cli(sock, "SISMEMBER", "webrtc:recording:node:emb-1", rid) == "1"
    time.sleep(1.0)

    node.kill()
    # The embedded server follows its owner down: no orphan keeps the socket.
    wait_until(lambda: not redis_sock_answers(sock), timeout=10, what="embedded redis gone after kill -9")

    node.start()
    assert redis_sock_answers(sock)
    rec = node.wait_status("emb-room", rid, ("completed", "failed"), timeout=30)
    assert rec["status"] in ("completed", "failed"), rec
    assert sock_cli(sock, "SISMEMBER", "webrtc:recording:active", rid) == "0"
    assert sock_cli(sock, "SISMEMBER", "webrtc:recording:node:emb-1", rid) == "0"
    listed = node.request("GET", "/api/webrtc/rooms/emb-room/recordings")
    assert listed.status == 200 and listed.json["count"] == 1, listed
    node.stop()
    # A clean stop stops the embedded server as well.
    assert not redis_sock_answers(sock)


run_tests(globals(), setup=Ctx)
