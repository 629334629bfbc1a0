"""test_api_reference_client: the reference system's TypeScript client
snippet (tests/support/reference_client.mjs: start with quality=high, stop,
list) runs under Node 20 against edgerec over HTTPS, trusting only the
server's own certificate, and gets what the reference promised."""

import json
import os
import subprocess
import uuid

from edgerec_harness import Edgerec, Redis, run_tests


class Ctx:
    pass


def setup():
    c = Ctx()
    c.redis = Redis().start()
    c.node = Edgerec(redis=c.redis, name="refclient").start()
    c.nodes = [c.node]
    return c


def teardown(c):
    if c and c.node.alive():
        assert c.node.stop() == 0


def test_reference_snippet(c):
    room = "ref-" + uuid.uuid4().hex[:8]
    script = os.path.join(os.environ.get("EDGEREC_SOURCE_DIR", "."), "tests", "support", "reference_client.mjs")
    if not os.path.exists(script):
        script = os.path.join(os.path.dirname(__file__), "..", "support", "reference_client.mjs")
    env = dict(os.environ, EDGEREC_URL=c.node.url, EDGEREC_TOKEN=c.node.token("ref-user"),
               EDGEREC_ROOM=room, NODE_EXTRA_CA_CERTS=c.node.cert_path)
    env.pop("NODE_TLS_REJECT_UNAUTHORIZED", None)
    out = subprocess.run(["node", script], capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 0, out.stderr
    res = json.loads(out.stdout.strip().splitlines()[-1])
    calls = res["calls"]
    start = calls["POST /api/webrtc/rooms/%s/recording/start?quality=high" % room]
    assert start["status"] == 200, start
    rid = res["recording_id"]
    assert start["body"]["recording_id"] == rid and start["body"]["quality"] == "high"
    assert start["body"]["quality_settings"] == {"resolution": "1920x1080", "video_bitrate": "5M",
                                                 "audio_bitrate": "192k", "fps": 30}, start["body"]
    stop = calls["POST /api/webrtc/rooms/%s/recording/%s/stop" % (room, rid)]
    assert stop["status"] == 200 and stop["body"]["status"] in ("processing", "completed"), stop
    assert isinstance(stop["body"]["duration_seconds"], (int, float))
    lst = res["list"]
    assert lst["count"] == 1 and lst["recordings"][0]["recording_id"] == rid, lst
    done = c.node.wait_status(room, rid, ("completed", "failed"), user="ref-user")
    assert done["status"] == "completed", done


if __name__ == "__main__":
    run_tests(globals(), setup=setup, teardown=teardown)
