"""test_ops_config: the configuration as an operator meets it before the
server starts: `edgerec --version` names the project version and the build,
--print-config never shows a secret (jwt_secret, s3.secret_key, a password
in redis_url), an enumeration with a value outside its set (storage_backend
= s4) is refused with the option and the allowed values named and exit
status 2 (for --print-config and serve alike, before anything starts), a
semantic error (an S3 backend without a bucket) too, and an EDGEREC_*
variable that sets no option is reported by name."""

import os
import re
import subprocess

from edgerec_harness import Ctx, Edgerec, mktemp, run_tests, source_dir


def setup():
    c = Ctx()
    c.bin = Edgerec().bin
    c.dir = mktemp("opscfg")
    return c


def run(c, args, conf=None, env=None):
    argv = [c.bin] + args
    if conf is not None:
        path = os.path.join(c.dir, "edgerec.conf")
        with open(path, "w") as f:
            f.write("state_dir = %s/state\n" % c.dir + conf)
        argv += ["--config", path]
    e = {k: v for k, v in os.environ.items() if not k.startswith("EDGEREC_")}
    e.update(env or {})
    return subprocess.run(argv, capture_output=True, text=True, timeout=30, env=e)


def test_version(c):
    out = run(c, ["--version"])
    assert out.returncode == 0, out
    src = source_dir()
    with open(os.path.join(src, "CMakeLists.txt")) as f:
        want = re.search(r"project\(edgerec VERSION ([0-9.]+)", f.read()).group(1)
    line = out.stdout.strip()
    assert line.startswith("edgerec %s" % want), line
    if os.path.isdir(os.path.join(src, ".git")) or os.path.isfile(os.path.join(src, ".git")):
        # The build names a commit of this checkout (the one it was built
        # from, which may be older than HEAD now).
        m = re.search(r"\((?:.*-g)?([0-9a-f]{7,40})(-dirty)?\)$", line)
        assert m, line
        known = subprocess.run(["git", "-C", src, "cat-file", "-e", m.group(1) + "^{commit}"],
                               capture_output=True)
        assert known.returncode == 0, (line, "not a commit of this checkout")


def test_print_config_redacts(c):
    conf = ('jwt_secret = "jwt-hunter2-secret"\nredis_url = "redis://:redis-pw-42@127.0.0.1:6390/0"\n'
            '[s3]\nsecret_key = "s3-hunter2-secret"\naccess_key = "AKIDPLAIN"\n')
    out = run(c, ["serve", "--print-config"], conf)
    assert out.returncode == 0, out.stderr
    for secret in ("jwt-hunter2-secret", "redis-pw-42", "s3-hunter2-secret"):
        assert secret not in out.stdout and secret not in out.stderr, secret
    lines = {l.split()[0]: l for l in out.stdout.splitlines() if l.strip()}
    assert "(redacted)" in lines["jwt_secret"] and "(redacted)" in lines["s3.secret_key"], lines
    assert "redis://:***@127.0.0.1:6390/0" in lines["redis_url"], lines["redis_url"]
    assert "AKIDPLAIN" in lines["s3.access_key"], lines["s3.access_key"]


def test_enumerations_refused(c):
    for conf, words in [("storage_backend = s4\n", ["storage_backend", "'s4'", "local, s3"]),
                        ("default_format = avi\n", ["default_format", "webm, mkv, mp4"]),
                        ("default_quality = best\n", ["default_quality", "low, medium, high, ultra"]),
                        ("log_level = verbose\n", ["log_level", "trace"])]:
        for args in (["serve", "--print-config"], ["serve"]):
            out = run(c, args, conf)
            assert out.returncode == 2, (conf, args, out.returncode, out.stderr)
            for w in words:
                assert w in out.stderr, (conf, w, out.stderr)
            assert "edgerec.conf:2" in out.stderr, out.stderr
            assert "listening" not in out.stdout, out.stdout
    out = run(c, ["serve"], env={"EDGEREC_STORAGE_BACKEND": "s4"})
    assert out.returncode == 2 and "EDGEREC_STORAGE_BACKEND" in out.stderr and "local, s3" in out.stderr, out


def test_semantics_checked_before_start(c):
    out = run(c, ["serve"], "storage_backend = s3\nlisten_https = 127.0.0.1:0\n")
    assert out.returncode == 2 and "s3_bucket" in out.stderr, out
    assert not os.path.exists(os.path.join(c.dir, "state", "redis")), "something started"
    out = run(c, ["serve"], "max_concurrent_recordings = 0\n")
    assert out.returncode == 2 and "max_concurrent_recordings" in out.stderr, out


def test_unknown_environment_named(c):
    out = run(c, ["serve", "--print-config"], "", env={"EDGEREC_REDIS_ULR": "redis://x", "EDGEREC_LOG": "info",
                                                       "EDGEREC_ROOM_lobby_SOURCE": "test"})
    assert out.returncode == 0, out.stderr
    warn = [l for l in out.stderr.splitlines() if "EDGEREC_REDIS_ULR" in l]
    assert len(warn) == 1 and "warn" in warn[0], out.stderr
    assert "EDGEREC_LOG" not in warn[0] and "EDGEREC_ROOM_lobby_SOURCE" not in warn[0], warn


run_tests(globals(), setup=setup)
