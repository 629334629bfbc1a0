"""test_whip_netns: WHIP over a real (non-loopback) interface, with the host
candidates edgerec finds by itself.

The other WHIP tests run over loopback with `webrtc.host_addresses` set.
A box is installed with the default: the IPv4 addresses of its interfaces
that are up, loopback left out. This test runs itself again inside a
private network namespace with a veth pair (10.79.0.1 and 10.79.0.2, made
here; root needed, else it reports "skipped" and why), starts
`edgerec serve` there with no `webrtc.host_addresses`, and checks:

- the answer announces both veth addresses as host candidates on the one
  WHIP port, and not loopback;
- GStreamer's webrtcbin (libnice, which leaves loopback out) publishes
  from 10.79.0.2: ICE, DTLS-SRTP and media over the veth pair; the
  recording completes and its file covers the publishing time."""

import os
import re
import subprocess
import sys

from edgerec_harness import Edgerec, run_tests
from test_whip_browser import free_udp_port, gst_publish, offer, post

NS_ENV = "EDGEREC_WHIP_NETNS"
SERVER_IP, PUBLISHER_IP = "10.79.0.1", "10.79.0.2"
SKIP = 77


class Ctx:
    pass


def setup():
    c = Ctx()
    c.udp = free_udp_port()
    c.node = Edgerec(name="whip-netns", config={
        "default_quality": "low",
        "webrtc.udp_port": c.udp,
        "max_concurrent_recordings": 3,
    }).start()
    c.nodes = [c.node]
    return c


def teardown(c):
    if c is not None and c.node.alive():
        assert c.node.stop() == 0


def test_answer_announces_the_interfaces(c):
    r = post(c, offer(), room="netns-sdp")
    assert r.status == 201, r
    sdp = r.body.decode()
    cands = re.findall(r"a=candidate:\S+ 1 udp \d+ (\S+) (\d+) typ host", sdp)
    addrs = sorted(a for a, _ in cands)
    print("host candidates: %s" % addrs, flush=True)
    assert SERVER_IP in addrs and PUBLISHER_IP in addrs, sdp
    assert "127.0.0.1" not in addrs, sdp
    assert all(int(p) == c.udp for _, p in cands), sdp
    assert c.node.request("DELETE", r.headers["location"]).status == 200


def test_webrtcbin_publishes_over_veth(c):
    gst_publish(c, "netns-gst", PUBLISHER_IP, 6)
    # ICE ran over the veth pair, never loopback.
    checks = re.findall(r"ICE check from (\S+)", c.node.log_text())
    print("ICE checks from: %s" % sorted(set(checks)), flush=True)
    assert checks and all(a.startswith(("10.79.0.1", "10.79.0.2")) for a in checks), checks


def sh(ns, *cmd):
    full = (["ip", "netns", "exec", ns] if ns else []) + list(cmd)
    r = subprocess.run(full, capture_output=True, text=True)
    if r.returncode != 0:
        raise OSError("%s: %s" % (" ".join(full), r.stderr.strip()))


def in_namespace():
    """Runs this file again inside a private network namespace; returns its
    exit code."""
    if os.geteuid() != 0:
        print("skipped: creating a network namespace needs root")
        return SKIP
    ns = "edgerec-whipns-%d" % os.getpid()
    try:
        sh(None, "ip", "netns", "add", ns)
    except (OSError, FileNotFoundError) as e:
        print("skipped: no network namespace here (%s)" % e)
        return SKIP
    try:
        sh(ns, "ip", "link", "set", "lo", "up")
        sh(ns, "ip", "link", "add", "wn0", "type", "veth", "peer", "name", "wn1")
        sh(ns, "ip", "addr", "add", SERVER_IP + "/24", "dev", "wn0")
        sh(ns, "ip", "addr", "add", PUBLISHER_IP + "/24", "dev", "wn1")
        sh(ns, "ip", "link", "set", "wn0", "up")
        sh(ns, "ip", "link", "set", "wn1", "up")
        for dev in ("all", "wn0", "wn1"):
            sh(ns, "sysctl", "-q", "-w", "net.ipv4.conf.%s.accept_local=1" % dev)
        env = dict(os.environ)
        env[NS_ENV] = ns
        return subprocess.run(["ip", "netns", "exec", ns, sys.executable, os.path.abspath(__file__)],
                              env=env).returncode
    finally:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)


if __name__ == "__main__":
    if not os.environ.get(NS_ENV):
        sys.exit(in_namespace())
    run_tests(globals(), setup=setup, teardown=teardown)
