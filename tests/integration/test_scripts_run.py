"""test_scripts_run: the first command of the README works as it says.

Runs scripts/run (bootstrap, build, `edgerec serve` with an embedded Redis)
with a temp state directory and port, reads the URL and the dev token it
prints, records a short clip in an unconfigured room (the test source) with
that token over HTTPS, mints a second token with `edgerec token --config`
against the configuration scripts/run wrote, signs in to the console with
the password it printed, and stops it with SIGINT.
"""
import json
import os
import re
import signal
import ssl
import subprocess
import sys
import time
import urllib.request

sys.path.insert(0, os.path.join(os.environ["EDGEREC_SOURCE_DIR"], "tests", "support"))
from edgerec_harness import free_port, mktemp, wait_until  # noqa: E402

ROOT = os.environ["EDGEREC_SOURCE_DIR"]


def call(url, token, method="GET"):
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    req = urllib.request.Request(url, method=method, headers={"Authorization": "Bearer " + token})
    try:
        with urllib.request.urlopen(req, context=ctx, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def main():
    state = mktemp("run-state")
    storage = mktemp("run-rec")
    port = free_port()
    env = dict(os.environ, EDGEREC_STATE_DIR=state, EDGEREC_LISTEN_HTTPS="127.0.0.1:%d" % port,
               EDGEREC_LOCAL_STORAGE_PATH=storage)
    log_path = os.path.join(state, "run.log")
    log = open(log_path, "w")
    proc = subprocess.Popen([os.path.join(ROOT, "scripts", "run")], stdout=log, stderr=subprocess.STDOUT,
                            env=env, start_new_session=True)
    ok = False
    try:
        def printed():
            return re.search(r"token for user 'dev'[^:]*: (\S+)", open(log_path).read())
        wait_until(lambda: printed() or proc.poll() is not None, timeout=300, what="scripts/run ready")
        text = open(log_path).read()
        assert proc.poll() is None, "scripts/run exited:\n" + text[-3000:]
        url = re.search(r"listening on (https://\S+)", text).group(1)
        assert url.endswith(":%d" % port), url
        token = printed().group(1)

        base = url + "/api/webrtc/rooms/run-demo/recording"
        st, body = call(base + "/start?quality=low", token, "POST")
        assert st == 200 and body["status"] in ("pending", "recording"), (st, body)
        rid = body["recording_id"]
        assert body["user_id"] == "dev", body
        time.sleep(1.5)
        st, body = call("%s/%s/stop" % (base, rid), token, "POST")
        assert st == 200 and body["status"] in ("processing", "completed"), (st, body)
        assert body["duration_seconds"] > 1.0, body

        def completed():
            return call("%s/%s/status" % (base, rid), token)[1].get("status") == "completed"
        wait_until(completed, timeout=30, what="recording completed")
        path = os.path.join(storage, rid, "recording_%s.webm" % rid)
        probe = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "stream=codec_name",
                                "-of", "csv=p=0", path], capture_output=True, text=True)
        assert probe.returncode == 0 and "vp8" in probe.stdout and "opus" in probe.stdout, probe

        # A second user's token from the configuration scripts/run wrote.
        conf = os.path.join(state, "edgerec.conf")
        out = subprocess.run([os.path.join(ROOT, "build", "core", "edgerec"), "token", "--user", "alice",
                              "--config", conf], capture_output=True, text=True, env=env)
        assert out.returncode == 0, out.stderr
        st, body = call(url + "/api/webrtc/recordings", out.stdout.strip())
        assert st == 200 and body["count"] == 0, (st, body)
        st, body = call(url + "/api/webrtc/recordings", token)
        assert st == 200 and body["count"] == 1, (st, body)

        # The console password scripts/run printed signs in.
        password = re.search(r"console sign-in as 'operator' with password (\S+)", text).group(1)
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        req = urllib.request.Request(url + "/api/system/login", method="POST",
                                     data=json.dumps({"user": "operator", "password": password}).encode(),
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, context=ctx, timeout=10) as r:
            assert r.status == 200 and "edgerec_session=" in r.headers["Set-Cookie"], r.headers
        assert oct(os.stat(os.path.join(state, "console_password")).st_mode & 0o777) == "0o600"

        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(timeout=30)
        assert proc.returncode == 0, "exit status %s" % proc.returncode
        ok = True
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        if not ok:
            sys.stderr.write(open(log_path).read()[-4000:])
    print("scripts/run: ready, recorded, token minted, console signed in, clean exit")


if __name__ == "__main__":
    main()
