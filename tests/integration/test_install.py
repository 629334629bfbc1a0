"""test_install: what `cmake --install` and the .deb put on a system, and how
the installed service behaves under systemd's protocols.

- `cmake --install --prefix /usr` into a DESTDIR: the binary, the installed
  configuration, the shipped policies where the default policy_dir points,
  the unit, sysusers.d and tmpfiles.d entries;
- `cpack -G DEB`: dpkg-deb -c lists the same files, its control names the
  runtime libraries by Debian package (dpkg-shlibdeps) and redis-server,
  /etc files are conffiles, the maintainer scripts create the user;
- the unit rates <= 3.0 in `systemd-analyze security --offline=yes`;
- the installed binary with the installed configuration loads the installed
  policies, prints no development token, and speaks sd_notify: READY=1 once
  it listens (Redis up), WATCHDOG=1 from its loop at WATCHDOG_USEC / 2,
  STOPPING=1 on SIGTERM.
"""
import os
import re
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.environ["EDGEREC_SOURCE_DIR"], "tests", "support"))
from edgerec_harness import free_port, mktemp, run_tests, start_process, stop_process, wait_until  # noqa: E402

BUILD = os.environ["EDGEREC_BUILD_DIR"]
SOURCE = os.environ["EDGEREC_SOURCE_DIR"]
MAX_EXPOSURE = 3.0

FILES = [
    "usr/bin/edgerec",
    "usr/libexec/edgerec/edgerec-finish",  # remux, thumbnail, facts (storage_media.h)
    "etc/edgerec/edgerec.conf",
    "etc/edgerec/policies/auth.lua",
    "etc/edgerec/policies/quota.lua",
    "etc/edgerec/policies/lifecycle.lua",
    "etc/edgerec/policies/sources.lua",
    "etc/edgerec/policies/lib/util.lua",
    "usr/lib/systemd/system/edgerec.service",
    "usr/lib/sysusers.d/edgerec.conf",
    "usr/lib/tmpfiles.d/edgerec.conf",
]


def run(argv, **kw):
    p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw)
    assert p.returncode == 0, "%s exited %d:\n%s" % (" ".join(argv), p.returncode, p.stdout[-3000:])
    return p.stdout


def setup():
    class Ctx:
        pass
    c = Ctx()
    c.dest = mktemp("install-dest")
    run(["cmake", "--install", BUILD, "--prefix", "/usr"], env=dict(os.environ, DESTDIR=c.dest))
    c.debdir = mktemp("install-deb")
    run(["cpack", "-G", "DEB", "-B", c.debdir, "--config", os.path.join(BUILD, "CPackConfig.cmake")])
    debs = [f for f in os.listdir(c.debdir) if f.endswith(".deb")]
    assert len(debs) == 1, os.listdir(c.debdir)
    c.deb = os.path.join(c.debdir, debs[0])
    return c


def test_install_layout(c):
    for f in FILES:
        assert os.path.isfile(os.path.join(c.dest, f)), f
    assert os.access(os.path.join(c.dest, "usr/bin/edgerec"), os.X_OK)
    unit = open(os.path.join(c.dest, "usr/lib/systemd/system/edgerec.service")).read()
    assert "ExecStart=/usr/bin/edgerec serve" in unit, unit
    assert re.search(r"^User=edgerec$", unit, re.M) and re.search(r"^Type=notify$", unit, re.M), unit
    assert re.search(r"^ExecReload=.*kill -HUP \$MAINPID$", unit, re.M), unit
    assert re.search(r"^u edgerec ", open(os.path.join(c.dest, "usr/lib/sysusers.d/edgerec.conf")).read(), re.M)


def test_installed_config_is_a_service_config(c):
    """The installed configuration: no dev token, recordings under
    /var/lib/edgerec, HTTPS on 443, and the default policy_dir is where the
    policies were installed."""
    conf = os.path.join(c.dest, "etc/edgerec/edgerec.conf")
    dump = run([os.path.join(c.dest, "usr/bin/edgerec"), "serve", "--config", conf, "--print-config"],
               env={"PATH": "/usr/bin:/bin"})
    values = {}
    for line in dump.splitlines():
        m = re.match(r"(\S+)\s+\S+\s+= (\S*)", line)
        if m:
            values[m.group(1)] = m.group(2)
    assert values.get("dev_token", "").startswith("false"), dump
    assert values.get("local_storage_path", "").startswith("/var/lib/edgerec/recordings"), dump
    assert values.get("listen_https", "").startswith("0.0.0.0:443"), dump
    policy_dir = values.get("policy_dir")
    assert policy_dir == "/etc/edgerec/policies", dump
    assert os.path.isfile(os.path.join(c.dest, policy_dir.lstrip("/"), "auth.lua"))


def test_deb_contents(c):
    listing = run(["dpkg-deb", "-c", c.deb])
    paths = set(re.findall(r"\s\./(\S+)$", listing, re.M))
    for f in FILES:
        assert f in paths, (f, listing)
    assert not any(p.startswith(("usr/include", "usr/local")) for p in paths), listing
    depends = run(["dpkg-deb", "-f", c.deb, "Depends"])
    for pkg in ("redis-server", "libvpx7", "libopus0", "libhiredis0.14", "liblua5.4-0", "libmbedtls14",
                "libsystemd0"):
        assert re.search(r"(^|, )%s( |,|$)" % re.escape(pkg), depends.strip()), (pkg, depends)
    ctrl = mktemp("install-ctrl")
    run(["dpkg-deb", "-e", c.deb, ctrl])
    conffiles = open(os.path.join(ctrl, "conffiles")).read().split()
    assert "/etc/edgerec/edgerec.conf" in conffiles and "/etc/edgerec/policies/auth.lua" in conffiles, conffiles
    assert "systemd-sysusers edgerec.conf" in open(os.path.join(ctrl, "postinst")).read()
    # The packaged binary is the built one, stripped.
    x = mktemp("install-x")
    run(["dpkg-deb", "-x", c.deb, x])
    out = run(["file", "-b", os.path.join(x, "usr/bin/edgerec")]) if os.path.exists("/usr/bin/file") else "stripped"
    assert "not stripped" not in out, out


def test_unit_security_score(c):
    unit = os.path.join(c.dest, "usr/lib/systemd/system/edgerec.service")
    out = run(["systemd-analyze", "security", "--offline=yes", unit])
    m = re.search(r"Overall exposure level for edgerec\.service: ([0-9.]+)", out)
    assert m, out
    print("     systemd-analyze security: %s" % m.group(1))
    assert float(m.group(1)) <= MAX_EXPOSURE, out


def test_installed_service_notifies_systemd(c):
    """The installed binary and configuration, as systemd would start them
    (NOTIFY_SOCKET, WATCHDOG_USEC), but in temp folders and a free port."""
    state = mktemp("install-state")
    sock_path = os.path.join(state, "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(sock_path)
    sock.settimeout(0.2)
    port = free_port()
    env = {"PATH": "/usr/bin:/bin", "NOTIFY_SOCKET": sock_path, "WATCHDOG_USEC": "1000000"}
    argv = [os.path.join(c.dest, "usr/bin/edgerec"), "serve", "--config", os.path.join(c.dest, "etc/edgerec/edgerec.conf"),
            "--set", "state_dir=" + state, "--set", "listen_https=127.0.0.1:%d" % port,
            "--set", "local_storage_path=" + os.path.join(state, "rec"),
            "--set", "policy_dir=" + os.path.join(c.dest, "etc/edgerec/policies")]
    log = os.path.join(state, "serve.log")
    p = start_process(argv, log, env=env)
    got = []

    def receive():
        try:
            got.append((time.monotonic(), sock.recv(4096).decode()))
        except socket.timeout:
            pass
        return p.poll() is not None

    try:
        wait_until(lambda: receive() or any(m == "READY=1" for _, m in got), timeout=60, what="READY=1")
        assert p.poll() is None, open(log).read()
        text = open(log).read()
        assert "ready" in text and "listening on https://127.0.0.1:%d" % port in text, text
        # Ready means listening: a TCP connect succeeds at once.
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
        t_ready = time.monotonic()
        wait_until(lambda: receive() or sum(1 for t, m in got if m == "WATCHDOG=1" and t > t_ready) >= 3,
                   timeout=10, what="three WATCHDOG=1")
        assert "token for user" not in open(log).read(), "the installed configuration printed a dev token"
    finally:
        status = stop_process(p)
    for _ in range(10):
        receive()
    assert status == 0, open(log).read()
    msgs = [m for _, m in got]
    assert "STOPPING=1" in msgs, msgs
    assert msgs.index("READY=1") < msgs.index("STOPPING=1"), msgs


run_tests(globals(), setup=setup)
