"""test_system_update: POST/GET /api/system/update and POST /api/system/reboot
on the host, with no image.

edgerec talks to RAUC and logind on the system D-Bus. The host has no
system bus of its own here, and a test must never reach the real one (a
reboot request would reboot the machine), so the test starts its own
dbus-daemon (a real one, system-bus type, on a socket in a temp dir) and
points edgerec at it with DBUS_SYSTEM_BUS_ADDRESS. On that bus it runs
RAUC's real service (`rauc service`) with a configuration of two file-backed
raw slots, no boot loader (noop, booted slot A given on the command line)
and a keyring of a CA made here; bundles are built here with `rauc bundle`.

What runs on the host: refusals before anything is installed (admin only,
415/411/413/507, a cut upload 400 with no file left, one update at a time
409, a bundle signed by another CA or truncated 422 with RAUC's reason and
both slot files untouched), the status route's shape, the system channel's
events, 503 where there is no RAUC or no bus, and reboot's 403/409/503
(there is no logind on the test bus). Installing a good bundle needs loop
devices and device-mapper (RAUC mounts verity bundles), which this
container lacks: tests/image/test_image.py does that in qemu.

Without `rauc` or dbus-daemon, or not as root, the tests that need them
print why and are skipped; the rest run.
"""
import hashlib
import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.parse

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "support"))
from edgerec_harness import (Ctx, Edgerec, mktemp, run_tests, start_process, stop_nodes,  # noqa: E402
                             stop_process, wait_until, ws_next)

COMPATIBLE = "edgerec-hosttest"
MAX_BUNDLE = 1 << 20


def run(argv, **kw):
    p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw)
    assert p.returncode == 0, "%s: %s" % (" ".join(argv), p.stdout)
    return p.stdout


def make_ca(d, name):
    """A CA and a signing certificate it issued (as scripts/image makes)."""
    os.makedirs(d)
    run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
         "-days", "400", "-subj", "/CN=%s CA" % name, "-addext", "basicConstraints=critical,CA:TRUE",
         "-addext", "keyUsage=critical,keyCertSign,cRLSign",
         "-keyout", d + "/ca.key", "-out", d + "/ca.pem"])
    run(["openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
         "-subj", "/CN=%s signing" % name, "-keyout", d + "/sign.key", "-out", d + "/sign.csr"])
    with open(d + "/ext", "w") as f:
        f.write("basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n")
    run(["openssl", "x509", "-req", "-in", d + "/sign.csr", "-CA", d + "/ca.pem", "-CAkey", d + "/ca.key",
         "-CAcreateserial", "-days", "400", "-extfile", d + "/ext", "-out", d + "/sign.pem"])
    return d


def make_bundle(work, pki, out, compatible=COMPATIBLE):
    """A verity bundle of a small squashfs, signed with 'pki'."""
    src = mktemp("bundle-src")
    os.chmod(src, 0o755)
    root = os.path.join(src, "root")
    os.makedirs(root)
    with open(os.path.join(root, "payload"), "wb") as f:
        f.write(os.urandom(200000))
    content = os.path.join(src, "content")
    os.makedirs(content)
    run(["mksquashfs", root, os.path.join(content, "rootfs.img"), "-noappend", "-no-progress"])
    with open(os.path.join(content, "manifest.raucm"), "w") as f:
        f.write("[update]\ncompatible=%s\nversion=2\n\n[bundle]\nformat=verity\n\n"
                "[image.rootfs]\nfilename=rootfs.img\n" % compatible)
    run(["rauc", "bundle", "--cert", pki + "/sign.pem", "--key", pki + "/sign.key", "--keyring", pki + "/ca.pem",
         content, out])
    return out


class Bus:
    """A dbus-daemon of the system-bus type on a socket in a temp dir."""

    def __init__(self):
        self.dir = mktemp("dbus")
        self.sock = os.path.join(self.dir, "system_bus_socket")
        self.address = "unix:path=" + self.sock
        conf = os.path.join(self.dir, "bus.conf")
        with open(conf, "w") as f:
            f.write('<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-BUS Bus Configuration 1.0//EN"\n'
                    ' "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">\n'
                    "<busconfig><type>system</type><listen>%s</listen><auth>EXTERNAL</auth>\n"
                    '<policy context="default"><allow user="*"/><allow own="*"/>'
                    '<allow send_destination="*"/><allow receive_sender="*"/></policy></busconfig>\n' % self.address)
        self.proc = start_process(["dbus-daemon", "--config-file=" + conf, "--nofork"],
                                  os.path.join(self.dir, "dbus.log"))
        wait_until(lambda: os.path.exists(self.sock), timeout=10, what="dbus-daemon socket")


class Rauc:
    """RAUC's service on 'bus' with two 4 MiB file slots."""

    def __init__(self, bus, keyring):
        self.dir = mktemp("rauc")
        self.slots = [os.path.join(self.dir, "slot-" + n) for n in "AB"]
        for i, s in enumerate(self.slots):
            with open(s, "wb") as f:
                f.write(bytes([0x41 + i]) * (4 << 20))
        self.conf = os.path.join(self.dir, "system.conf")
        with open(self.conf, "w") as f:
            f.write("[system]\ncompatible=%s\nbootloader=noop\nbundle-formats=-plain\nstatusfile=%s/status.raucs\n"
                    "\n[keyring]\npath=%s\n\n[slot.rootfs.0]\ndevice=%s\ntype=raw\nbootname=A\n\n"
                    "[slot.rootfs.1]\ndevice=%s\ntype=raw\nbootname=B\n"
                    % (COMPATIBLE, self.dir, keyring, self.slots[0], self.slots[1]))
        os.makedirs(os.path.join(self.dir, "mnt"))
        env = dict(os.environ, DBUS_SYSTEM_BUS_ADDRESS=bus.address)
        self.proc = start_process(["rauc", "--conf=" + self.conf, "--mount=" + os.path.join(self.dir, "mnt"),
                                   "--override-boot-slot=A", "service"], os.path.join(self.dir, "rauc.log"), env=env)
        wait_until(lambda: run_ok(["dbus-send", "--system", "--print-reply", "--dest=de.pengutronix.rauc", "/",
                                   "org.freedesktop.DBus.Properties.Get", "string:de.pengutronix.rauc.Installer",
                                   "string:Operation"], env),
                   timeout=20, what="RAUC's service on the test bus")

    def digests(self):
        return [hashlib.sha256(open(s, "rb").read()).hexdigest() for s in self.slots]

    def stop(self):
        if self.proc.poll() is None:
            stop_process(self.proc)


def run_ok(argv, env):
    return subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env).returncode == 0


def node_with_bus(address, name, config=None):
    """An edgerec whose system bus is 'address' (never the host's)."""
    old = os.environ.get("DBUS_SYSTEM_BUS_ADDRESS")
    os.environ["DBUS_SYSTEM_BUS_ADDRESS"] = address
    try:
        cfg = {"update.max_bundle": str(MAX_BUNDLE)}
        cfg.update(config or {})
        return Edgerec(config=cfg, name=name).start()
    finally:
        if old is None:
            del os.environ["DBUS_SYSTEM_BUS_ADDRESS"]
        else:
            os.environ["DBUS_SYSTEM_BUS_ADDRESS"] = old


def admin(node):
    return node.token("root", claims={"roles": ["admin"]})


def post_bundle(node, data, token=None, content_type="application/vnd.rauc.bundle"):
    return node.request("POST", "/api/system/update", token=token or admin(node),
                        headers={"Content-Type": content_type}, body=data, fresh=True)


def tls_socket(node):
    u = urllib.parse.urlsplit(node.url)
    raw = socket.create_connection((u.hostname, u.port), timeout=30)
    return node.ssl_context().wrap_socket(raw, server_hostname=u.hostname)


def upload_head(node, length):
    """The request line and headers of an upload of 'length' bytes."""
    return ("POST /api/system/update HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer %s\r\n"
            "Content-Type: application/octet-stream\r\nContent-Length: %d\r\n\r\n" % (admin(node), length)).encode()


def ws_system(node, token):
    import websocket  # Debian python3-websocket
    u = urllib.parse.urlsplit(node.url)
    url = "wss://%s:%d/api/webrtc/ws?channel=system&access_token=%s" % (u.hostname, u.port, urllib.parse.quote(token))
    return websocket.create_connection(url, timeout=10, sslopt={"ca_certs": node.cert_path})


def upload_file(node):
    return os.path.join(node.state_dir, "update", "upload.raucb")


def status(node):
    r = node.request("GET", "/api/system/update", token=admin(node), fresh=True)
    assert r.status == 200, r
    return r.json


def need_rauc(c):
    if not c.rauc:
        print("SKIP (part): %s" % c.why_no_rauc, flush=True)
        return False
    return True


def setup():
    c = Ctx()
    c.nodes = []
    c.work = mktemp("update-test")
    c.rauc = None
    c.why_no_rauc = None
    missing = [t for t in ("rauc", "dbus-daemon", "dbus-send", "mksquashfs", "openssl") if not shutil.which(t)]
    if missing:
        c.why_no_rauc = "%s not installed (scripts/bootstrap installs them)" % ", ".join(missing)
    elif os.geteuid() != 0:
        c.why_no_rauc = "RAUC's service runs as root"
    if shutil.which("dbus-daemon"):
        c.bus = Bus()
    else:
        c.bus = None
    if not c.why_no_rauc:
        c.pki = make_ca(os.path.join(c.work, "pki"), "vendor")
        c.other = make_ca(os.path.join(c.work, "other"), "stranger")
        c.rauc = Rauc(c.bus, c.pki + "/ca.pem")
        c.good = make_bundle(c.work, c.pki, os.path.join(c.work, "good.raucb"))
        c.foreign = make_bundle(c.work, c.other, os.path.join(c.work, "foreign.raucb"))
    # A box with no system bus at all (a development machine).
    c.nobus = node_with_bus("unix:path=" + os.path.join(c.work, "no-such-bus"), "nobus")
    c.nodes.append(c.nobus)
    if c.bus:
        c.node = node_with_bus(c.bus.address, "node")
        c.nodes.append(c.node)
    else:
        c.node = c.nobus
    return c


def teardown(c):
    stop_nodes(c)
    if c and c.rauc:
        c.rauc.stop()


def test_admin_only(c):
    for node in (c.node, c.nobus):
        r = post_bundle(node, b"x" * 100, token=node.token("alice"))
        assert r.status == 403 and r.json["code"] == "forbidden", r
        r = node.request("GET", "/api/system/update", token="alice")
        assert r.status == 403, r
        r = node.request("POST", "/api/system/reboot", token="alice")
        assert r.status == 403, r
        r = node.request("GET", "/api/system/update", token=None)
        assert r.status == 401, r
    import websocket
    try:
        ws_system(c.node, c.node.token("alice"))
        raise AssertionError("a non-admin subscribed to the system channel")
    except websocket.WebSocketBadStatusException as e:
        assert e.status_code == 403, e
    assert not os.path.exists(upload_file(c.node))


def test_no_bus_503(c):
    r = post_bundle(c.nobus, b"x" * 1000)
    assert r.status == 503 and r.json["code"] == "update_unavailable", r
    assert "no system D-Bus" in r.json["detail"], r.json
    r = c.nobus.request("GET", "/api/system/update", token=admin(c.nobus))
    assert r.status == 200, r
    assert r.json["rauc"]["available"] is False and "no system D-Bus" in r.json["rauc"]["detail"], r.json
    assert r.json["state"] == "idle" and r.json["booted_slot"] is None and r.json["other_slot"] is None, r.json
    r = c.nobus.request("POST", "/api/system/reboot", token=admin(c.nobus))
    assert r.status == 503 and r.json["code"] == "reboot_unavailable", r


def test_reboot_without_logind_503(c):
    # The test bus has no logind: the request reaches the bus and is
    # refused there (this is also why the test never reboots the host).
    if not c.bus:
        print("SKIP (part): no dbus-daemon", flush=True)
        return
    r = c.node.request("POST", "/api/system/reboot", token=admin(c.node))
    assert r.status == 503 and "org.freedesktop.login1" in r.json["detail"], r


def test_request_checks(c):
    r = post_bundle(c.node, b"x" * 100, content_type="text/plain")
    assert r.status == 415, r
    # Beyond update.max_bundle: refused from the header alone.
    s = tls_socket(c.node)
    s.sendall(upload_head(c.node, MAX_BUNDLE + 1))
    reply = b""
    while b"bundle_too_large" not in reply:
        chunk = s.recv(4096)
        if not chunk:
            break
        reply += chunk
    s.close()
    reply = reply.decode(errors="replace")
    assert reply.startswith("HTTP/1.1 413"), reply
    assert "bundle_too_large" in reply, reply
    r = post_bundle(c.node, b"")
    assert r.status == 400, r
    assert not os.path.exists(upload_file(c.node))


def test_status_shape(c):
    st = status(c.node)
    for k in ("state", "percent", "message", "last_error", "reboot_required", "started_at", "finished_at",
              "max_bundle_bytes", "rauc", "booted_slot", "other_slot", "slots"):
        assert k in st, (k, st)
    assert st["state"] in ("idle", "failed"), st
    assert st["max_bundle_bytes"] == MAX_BUNDLE, st
    if not need_rauc(c):
        return
    assert st["rauc"]["available"] is True and st["rauc"]["operation"] == "idle", st
    assert st["rauc"]["compatible"] == COMPATIBLE, st
    assert st["booted_slot"] == "A", st
    assert st["other_slot"]["bootname"] == "B" and st["other_slot"]["name"] == "rootfs.1", st
    assert sorted(s["bootname"] for s in st["slots"]) == ["A", "B"], st


def test_cut_upload_400(c):
    if not need_rauc(c):
        return
    before = c.rauc.digests()
    size = os.path.getsize(c.good)
    data = open(c.good, "rb").read()
    s = tls_socket(c.node)
    s.sendall(upload_head(c.node, size))
    s.sendall(data[:size // 2])
    wait_until(lambda: os.path.exists(upload_file(c.node)), timeout=10, what="the upload file")
    assert status(c.node)["state"] == "uploading"
    s.close()  # the client goes away half way
    wait_until(lambda: status(c.node)["state"] == "failed", timeout=40, what="the cut upload to fail")
    st = status(c.node)
    assert "ended after" in st["last_error"] and str(size) in st["last_error"], st
    assert not os.path.exists(upload_file(c.node))
    wait_until(lambda: "POST /api/system/update -> 400" in c.node.log_text(), timeout=10,
               what="the 400 in the access log")
    assert c.rauc.digests() == before


def test_one_at_a_time_409(c):
    if not need_rauc(c):
        return
    size = os.path.getsize(c.good)
    data = open(c.good, "rb").read()
    s = tls_socket(c.node)
    s.sendall(upload_head(c.node, size))
    s.sendall(data[:1000])
    wait_until(lambda: status(c.node)["state"] == "uploading", timeout=10, what="an upload in progress")
    r = post_bundle(c.node, data)
    assert r.status == 409 and r.json["code"] == "update_in_progress", r
    r = c.node.request("POST", "/api/system/reboot", token=admin(c.node), fresh=True)
    assert r.status == 409, r
    s.close()
    wait_until(lambda: status(c.node)["state"] == "failed", timeout=40, what="the abandoned upload to end")
    assert not os.path.exists(upload_file(c.node))


def test_disk_507(c):
    if not need_rauc(c):
        return
    # A reserve no disk has: the bundle cannot fit beside it.
    n = node_with_bus(c.bus.address, "reserve", {"recorder.disk_reserve": "1000T"})
    c.nodes.append(n)
    r = post_bundle(n, open(c.good, "rb").read())
    assert r.status == 507 and r.json["code"] == "insufficient_storage", r
    assert "disk_reserve" in r.json["detail"], r.json
    assert not os.path.exists(upload_file(n))
    assert n.stop() == 0
    c.nodes.remove(n)


def test_refused_bundles_422(c):
    if not need_rauc(c):
        return
    before = c.rauc.digests()
    ws = ws_system(c.node, admin(c.node))
    first = json.loads(ws.recv())
    assert first["type"] == "subscribed" and first["channel"] == "system", first
    # Signed by a CA the keyring does not hold.
    r = post_bundle(c.node, open(c.foreign, "rb").read())
    assert r.status == 422 and r.json["code"] == "bundle_rejected", r
    assert "signature" in r.json["detail"].lower() or "certificate" in r.json["detail"].lower(), r.json
    ev = ws_next(ws, "update_progress")
    assert ev["channel"] == "system" and ev["data"]["state"] in ("uploading", "installing"), ev
    ev = ws_next(ws, "update_failed")
    assert ev["data"]["state"] == "failed" and "RAUC refused" in ev["data"]["detail"], ev
    st = status(c.node)
    assert st["state"] == "failed" and st["last_error"] == r.json["detail"], st
    assert not os.path.exists(upload_file(c.node))
    # A bundle cut short (the whole body arrives; the bundle in it is not).
    data = open(c.good, "rb").read()
    r = post_bundle(c.node, data[:len(data) // 2])
    assert r.status == 422 and r.json["code"] == "bundle_rejected", r
    assert not os.path.exists(upload_file(c.node))
    ws.close()
    assert c.rauc.digests() == before
    st = status(c.node)
    assert st["rauc"]["operation"] == "idle" and st["booted_slot"] == "A", st


def test_no_rauc_503(c):
    if not need_rauc(c):
        return
    c.rauc.stop()
    r = post_bundle(c.node, open(c.good, "rb").read())
    assert r.status == 503 and r.json["code"] == "update_unavailable", r
    assert "is not on the system D-Bus" in r.json["detail"], r.json
    st = status(c.node)
    assert st["rauc"]["available"] is False and "de.pengutronix.rauc" in st["rauc"]["detail"], st
    assert not os.path.exists(upload_file(c.node))


if __name__ == "__main__":
    run_tests(globals(), setup=setup, teardown=teardown)
