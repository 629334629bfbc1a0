#!/usr/bin/python3
"""guest: a qemu guest with Debian's kernel and the host's root, for tests
that need kernel drivers the host does not have (vivid, snd-aloop).

The guest boots Debian's own kernel (linux-image-amd64 of the archive the
host uses, fetched with apt) from a small busybox initramfs that mounts the
host's root read-only over virtio-9p with a tmpfs overlay on top, so the
build tree, python3, ffmpeg and edgerec itself are there at their host
paths, and writes go nowhere. A second 9p share, writable, is a host folder
mounted in the guest at the same path: what the guest writes there (a
recording, a log) the host reads at once, under the same name.

In the guest, before the command: /proc, /sys, devtmpfs /dev, tmpfs /tmp
and /run, lo and eth0 (qemu user networking, 10.0.2.15) up, and `vivid`
(one capture device) and `snd-aloop` loaded with kmod's modprobe from the
extracted kernel tree, so their dependencies come from its modules.dep.

Two ways in:

  run_once(cmd, ...)        boots, runs a shell command, powers off; returns
                            (exit status, console text).
  Guest(forward=[...])      boots with a small agent (agent.py) listening in
                            the guest; .run(cmd) runs a command and returns
                            (status, output), .spawn(cmd, log) starts one in
                            the background, .signal/.wait it, .stop() powers
                            off. 'forward' lists guest TCP ports reached from
                            the host at 127.0.0.1:.port(p).

CLI: python3 tests/support/guest/guest.py run [--share DIR] -- CMD...
     python3 tests/support/guest/guest.py prepare   (fetch kernel, initramfs)

GuestUnavailable is raised when the guest cannot run here at all (no qemu,
no static busybox, no kmod, the kernel package cannot be fetched); tests
turn it into exit status 77 (ctest: skipped) with skip_unless_available().

Environment: EDGEREC_GUEST_CACHE (default /var/cache/edgerec-guest) holds
the kernel packages, their extracted trees and the initramfs;
EDGEREC_GUEST_SMP (2), EDGEREC_GUEST_MEM (MiB, 1536), EDGEREC_GUEST_CPU (qemu -cpu;
default qemu64), EDGEREC_GUEST_NICE (qemu's niceness, -10; 0: unchanged).
"""

import fcntl
import json
import os
import re
import shlex
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
CACHE = os.environ.get("EDGEREC_GUEST_CACHE", "/var/cache/edgerec-guest")
QEMU = "qemu-system-x86_64"
BUSYBOX = "/bin/busybox"
PYTHON = "/usr/bin/python3"
AGENT_PORT = 7000
SKIP = 77
# The modules the initramfs loads to reach the host's root and the network;
# their dependencies come from modules.dep.
BOOT_MODULES = ["virtio_pci", "9pnet_virtio", "9p", "overlay", "virtio_net"]
# Module options of the test devices: one vivid instance with only a video
# capture node (/dev/video0), an ALSA loopback card with two substreams per
# device (hw:Loopback,0,N plays into hw:Loopback,1,N).
VIVID_OPTIONS = "n_devs=1 node_types=0x1"
ALOOP_OPTIONS = "pcm_substreams=2"


class GuestUnavailable(Exception):
    """The guest cannot run on this machine; the message says why."""


def log(msg):
    if os.environ.get("EDGEREC_GUEST_QUIET") != "1":
        print("guest: " + msg, file=sys.stderr, flush=True)


# -- the kernel -----------------------------------------------------------

class _Lock:
    """An exclusive lock file in the cache (several tests or users may
    prepare the same kernel at once)."""

    def __init__(self, path):
        self.path = path

    def __enter__(self):
        self.f = open(self.path, "w")
        fcntl.flock(self.f, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc):
        fcntl.flock(self.f, fcntl.LOCK_UN)
        self.f.close()


def _apt_depends(pkg):
    p = subprocess.run(["apt-cache", "depends", pkg], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       text=True)
    return [l.split(":", 1)[1].strip() for l in p.stdout.splitlines()
            if l.strip().startswith("Depends:")] if p.returncode == 0 else []


def kernel_package():
    """The name of the kernel image package linux-image-amd64 depends on
    (linux-image-<ABI>-amd64), as apt sees it now."""
    if not shutil.which("apt-cache"):
        raise GuestUnavailable("apt-cache is missing (the kernel comes from Debian's archive)")
    deps = [d for d in _apt_depends("linux-image-amd64") if d.startswith("linux-image-")]
    if not deps:
        # apt's lists may never have been fetched on this machine.
        subprocess.run(["apt-get", "update", "-qq"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deps = [d for d in _apt_depends("linux-image-amd64") if d.startswith("linux-image-")]
    if not deps:
        raise GuestUnavailable("apt-cache depends linux-image-amd64 names no kernel image")
    return deps[0]


class Kernel:
    """Debian's kernel package, downloaded with apt-get and extracted with
    dpkg-deb into the cache, with modules.dep built by depmod."""

    def __init__(self, package=None):
        self.package = package or kernel_package()
        m = re.match(r"linux-image-(.+)$", self.package)
        self.release = m.group(1)
        self.dir = os.path.join(CACHE, self.package)
        self.root = os.path.join(self.dir, "root")
        self.vmlinuz = os.path.join(self.root, "boot", "vmlinuz-" + self.release)
        self.moddir = os.path.join(self.root, "lib", "modules", self.release)

    def prepare(self):
        stamp = os.path.join(self.dir, "ready")
        if os.path.exists(stamp):
            return self
        for tool in ("apt-get", "dpkg-deb", "depmod"):
            if not shutil.which(tool):
                raise GuestUnavailable("%s is missing (scripts/bootstrap installs it)" % tool)
        os.makedirs(self.dir, exist_ok=True)
        with _Lock(os.path.join(self.dir, "lock")):
            if os.path.exists(stamp):
                return self
            log("fetching %s" % self.package)
            dl = os.path.join(self.dir, "dl")
            shutil.rmtree(dl, ignore_errors=True)
            os.makedirs(dl)
            # apt's _apt user may not enter the cache; download as root.
            p = subprocess.run(["apt-get", "download", "-o", "APT::Sandbox::User=root", self.package],
                               cwd=dl, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            debs = [f for f in os.listdir(dl) if f.endswith(".deb")]
            if p.returncode != 0 or not debs:
                raise GuestUnavailable("apt-get download %s failed:\n%s" % (self.package, p.stdout[-2000:]))
            shutil.rmtree(self.root, ignore_errors=True)
            subprocess.run(["dpkg-deb", "-x", os.path.join(dl, debs[0]), self.root], check=True)
            subprocess.run(["depmod", "-b", self.root, self.release], check=True)
            with open(stamp, "w") as f:
                f.write(debs[0] + "\n")
        return self

    def module_deps(self):
        """{module name: [paths of the modules it needs]} from modules.dep
        (names with '_', as the kernel spells them)."""
        deps, paths = {}, {}
        with open(os.path.join(self.moddir, "modules.dep")) as f:
            for line in f:
                path, _, rest = line.partition(":")
                name = _modname(path)
                paths[name] = path
                deps[name] = [_modname(d) for d in rest.split()]
        return deps, paths

    def load_order(self, wanted):
        """The relative paths of 'wanted' modules and everything they need,
        each after what it needs."""
        deps, paths = self.module_deps()
        order, seen = [], set()

        def visit(name):
            if name in seen:
                return
            if name not in paths:
                raise GuestUnavailable("module %s is not in %s's modules.dep" % (name, self.package))
            seen.add(name)
            for d in deps[name]:
                visit(d)
            order.append(paths[name])
        for w in wanted:
            if not self.builtin(w):
                visit(w.replace("-", "_"))
        return order

    def builtin(self, name):
        with open(os.path.join(self.moddir, "modules.builtin")) as f:
            return any(_modname(l.strip()) == name.replace("-", "_") for l in f)


def _modname(path):
    base = os.path.basename(path)
    return re.sub(r"\.ko(\.[a-z]+)?$", "", base).replace("-", "_")


# -- the initramfs --------------------------------------------------------

INIT = r"""#!/bin/busybox sh
# initramfs: mount the host's root read-only with a tmpfs overlay and switch
# to it; the second stage (stage2.sh from the share) runs the command.
/bin/busybox --install -s /bin
export PATH=/bin
mkdir -p /proc /sys /dev /host /upper /newroot
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for m in $(cat /modules.list); do
	insmod "/modules/${m##*/}" || echo "guest: insmod $m failed"
done
for w in $(cat /proc/cmdline); do
	case "$w" in guest.out=*) OUT="${w#guest.out=}" ;; esac
done
fail() { echo "guest: $*"; echo o > /proc/sysrq-trigger; sleep 10; }
O9P=trans=virtio,version=9p2000.L,msize=512000
mount -t 9p -o "$O9P,ro,cache=loose" hostroot /host || fail "cannot mount the host root"
mount -t tmpfs -o mode=755 upper /upper
mkdir -p /upper/u /upper/w
if ! mount -t overlay -o lowerdir=/host,upperdir=/upper/u,workdir=/upper/w root /newroot; then
	echo "guest: no overlay; the host root stays read-only"
	mount --bind /host /newroot
fi
mount -t tmpfs -o mode=1777 tmp /newroot/tmp
mount -t tmpfs -o mode=755,size=4g run /newroot/run
mkdir -p "/newroot$OUT"
mount -t 9p -o "$O9P,cache=none" out "/newroot$OUT" || fail "cannot mount the share $OUT"
umount /proc /sys /dev
exec switch_root /newroot /bin/sh "$OUT/.guest/stage2.sh" "$OUT"
"""

STAGE2 = r"""#!/bin/sh
# stage 2, on the host's root: devices, network, test modules, the command.
OUT="$1"
G="$OUT/.guest"
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mkdir -p /dev/pts /dev/shm
mount -t devpts -o gid=5,mode=620 devpts /dev/pts
mount -t tmpfs shm /dev/shm
ln -sf /proc/self/fd /dev/fd 2>/dev/null
hostname edgerec-guest
ip link set lo up
ip link set eth0 up && ip addr add 10.0.2.15/24 dev eth0 && ip route add default via 10.0.2.2
echo "nameserver 10.0.2.3" > /etc/resolv.conf 2>/dev/null
. "$G/env.sh"
modprobe -d "$GUEST_KROOT" vivid $GUEST_VIVID_OPTIONS || echo "guest: modprobe vivid failed"
modprobe -d "$GUEST_KROOT" snd-aloop $GUEST_ALOOP_OPTIONS || echo "guest: modprobe snd-aloop failed"
cut -d' ' -f1 /proc/uptime > "$G/started"
cd "$GUEST_CWD" 2>/dev/null || cd /
sh "$G/cmd.sh" < /dev/null
echo $? > "$G/rc.tmp" && mv "$G/rc.tmp" "$G/rc"
sync
busybox poweroff -f
echo o > /proc/sysrq-trigger
"""


def _cpio_newc(entries):
    """A cpio archive (newc) of entries (name, mode, data or None for a
    directory)."""
    out = bytearray()
    ino = 1
    for name, mode, data in entries + [("TRAILER!!!", 0, b"")]:
        data = data or b""
        nb = name.encode() + b"\0"
        hdr = "070701" + "".join("%08X" % v for v in (
            ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(nb), 0))
        out += hdr.encode() + nb
        out += b"\0" * (-len(out) % 4)
        out += data
        out += b"\0" * (-len(out) % 4)
        ino += 1
    return bytes(out)


def initramfs(kernel):
    """The initramfs for 'kernel' (cached; rebuilt when init or busybox
    changes): busybox, /init and the boot modules in load order."""
    if not os.path.exists(BUSYBOX):
        raise GuestUnavailable("%s is missing (busybox-static)" % BUSYBOX)
    with open(BUSYBOX, "rb") as f:
        bb = f.read()
    if b"GLIBC_2" in bb[:4096] or not _static(BUSYBOX):
        raise GuestUnavailable("%s is not static (install busybox-static)" % BUSYBOX)
    order = kernel.load_order(BOOT_MODULES)
    import hashlib
    key = hashlib.sha256(INIT.encode() + bb + "\n".join(order).encode()).hexdigest()[:16]
    path = os.path.join(kernel.dir, "initrd-%s.cpio" % key)
    if os.path.exists(path):
        return path
    entries = [("bin", stat.S_IFDIR | 0o755, None), ("modules", stat.S_IFDIR | 0o755, None),
               ("bin/busybox", stat.S_IFREG | 0o755, bb),
               ("init", stat.S_IFREG | 0o755, INIT.encode()),
               ("modules.list", stat.S_IFREG | 0o644, ("\n".join(order) + "\n").encode())]
    for rel in order:
        with open(os.path.join(kernel.moddir, rel), "rb") as f:
            entries.append(("modules/" + os.path.basename(rel), stat.S_IFREG | 0o644, f.read()))
    tmp = path + ".%d" % os.getpid()
    with open(tmp, "wb") as f:
        f.write(_cpio_newc(entries))
    os.rename(tmp, path)
    return path


def _static(path):
    p = subprocess.run(["file", "-L", path], stdout=subprocess.PIPE, text=True) if shutil.which("file") else None
    return p is None or "statically linked" in p.stdout or "static-pie" in p.stdout


def prepare():
    """Kernel and initramfs, fetched and built when needed; raises
    GuestUnavailable when they cannot be."""
    if not shutil.which(QEMU):
        raise GuestUnavailable("%s is missing (qemu-system-x86)" % QEMU)
    if not shutil.which("modprobe"):
        raise GuestUnavailable("kmod's modprobe is missing (kmod)")
    k = Kernel().prepare()
    return k, initramfs(k)


def skip_unless_available(name):
    """For a test's main: prepares the guest, or prints why it cannot run
    and exits 77 (ctest: skipped)."""
    try:
        return prepare()
    except GuestUnavailable as e:
        print("SKIP %s: %s" % (name, e), flush=True)
        sys.exit(SKIP)


# -- booting --------------------------------------------------------------

ENV_PASS = re.compile(r"^(EDGEREC_|LANG$|LC_|TZ$|ASAN_|UBSAN_)")


class Guest:
    """One qemu of Debian's kernel on the host's root.

    share: the writable host folder mounted at the same path in the guest
    (default: a new temp dir, removed by .cleanup() unless keep). forward:
    guest TCP ports reachable from the host (see .port()). The agent's port
    is always forwarded."""

    def __init__(self, share=None, forward=(), smp=None, mem=None, vivid=VIVID_OPTIONS,
                 aloop=ALOOP_OPTIONS, keep=False):
        self.share = os.path.abspath(share) if share else tempfile.mkdtemp(prefix="edgerec-guest-")
        self.own_share = share is None and not keep
        self.gdir = os.path.join(self.share, ".guest")
        self.smp = int(smp or os.environ.get("EDGEREC_GUEST_SMP", "2"))
        self.mem = int(mem or os.environ.get("EDGEREC_GUEST_MEM", "1536"))
        self.cpu = os.environ.get("EDGEREC_GUEST_CPU", "")
        self.nice = int(os.environ.get("EDGEREC_GUEST_NICE", "-10"))
        self.vivid, self.aloop = vivid, aloop
        self.ports = {}
        for p in list(forward) + [AGENT_PORT]:
            self.ports[p] = _free_port()
        self.proc = None
        self.serial_log = os.path.join(self.gdir, "console.log")
        self.boot_seconds = None
        self.guest_uptime = None

    def port(self, guest_port):
        """The host port (on 127.0.0.1) forwarded to 'guest_port'."""
        return self.ports[guest_port]

    def _write(self, name, text):
        with open(os.path.join(self.gdir, name), "w") as f:
            f.write(text)

    def boot(self, cmd, console=None):
        """Starts qemu to run 'cmd' (a shell command) in the guest; returns
        at once. console: a file object for the serial console (default: the
        share's .guest/console.log)."""
        kernel, initrd = prepare()
        os.makedirs(self.gdir, exist_ok=True)
        for f in ("rc", "started"):
            if os.path.exists(os.path.join(self.gdir, f)):
                os.unlink(os.path.join(self.gdir, f))
        self._write("stage2.sh", STAGE2)
        env = {k: v for k, v in os.environ.items() if ENV_PASS.match(k)}
        env.update(GUEST_KROOT=kernel.root, GUEST_VIVID_OPTIONS=self.vivid, GUEST_ALOOP_OPTIONS=self.aloop,
                   GUEST_CWD=os.getcwd(), GUEST_SHARE=self.share)
        self._write("env.sh", "".join("export %s=%s\n" % (k, shlex.quote(v)) for k, v in sorted(env.items())))
        self._write("cmd.sh", cmd + "\n")
        fwd = "".join(",hostfwd=tcp:127.0.0.1:%d-:%d" % (h, g) for g, h in self.ports.items())
        argv = [QEMU, "-machine", "q35,accel=tcg", "-smp", str(self.smp), "-m", str(self.mem),
                *(["-cpu", self.cpu] if self.cpu else []),
                "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
                "-kernel", kernel.vmlinuz, "-initrd", initrd,
                "-append", "console=ttyS0 quiet loglevel=4 panic=-1 guest.out=%s" % self.share,
                "-virtfs", "local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap",
                "-virtfs", "local,path=%s,mount_tag=out,security_model=none" % self.share,
                "-netdev", "user,id=n0" + fwd, "-device", "virtio-net-pci,netdev=n0",
                "-serial", "stdio" if console is not None else "file:" + self.serial_log,
                "-monitor", "none"]
        self.t0 = time.monotonic()
        self.cpu0 = os.times()
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                     stdout=console if console is not None else subprocess.DEVNULL,
                                     stderr=subprocess.STDOUT if console is not None else
                                     open(os.path.join(self.gdir, "qemu.log"), "wb"),
                                     start_new_session=True, preexec_fn=self._priority)
        return self

    def _priority(self):
        # The guest stands for a box whose CPU is its own: TCG multiplies
        # every cost ten- to fiftyfold, so other work on the host would
        # starve it that much more than a real box is ever starved. qemu
        # runs at a higher priority (EDGEREC_GUEST_NICE, -10; 0 leaves it
        # as it is); unprivileged callers keep their own.
        if self.nice:
            try:
                os.nice(self.nice)
            except OSError:
                pass

    def wait_started(self, timeout=300):
        """Waits until the guest runs the command; returns the seconds from
        qemu's start (also in .boot_seconds; the guest's own uptime then is
        in .guest_uptime)."""
        path = os.path.join(self.gdir, "started")
        deadline = time.monotonic() + timeout
        while not os.path.exists(path) or not open(path).read().strip():
            if self.proc.poll() is not None:
                raise AssertionError("qemu exited %s before the command started:\n%s" %
                                     (self.proc.returncode, self.console_tail()))
            if time.monotonic() > deadline:
                raise AssertionError("guest did not start in %ds:\n%s" % (timeout, self.console_tail()))
            time.sleep(0.1)
        self.boot_seconds = time.monotonic() - self.t0
        self.guest_uptime = float(open(path).read().strip())
        return self.boot_seconds

    def wait_exit(self, timeout=None):
        """Waits for qemu to exit; returns the command's exit status (None
        when the guest died before writing one)."""
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError("guest still running after %ss:\n%s" % (timeout, self.console_tail()))
        rc = os.path.join(self.gdir, "rc")
        return int(open(rc).read()) if os.path.exists(rc) else None

    def qemu_cpu_seconds(self):
        """User+system CPU seconds of qemu so far (children: after exit)."""
        try:
            with open("/proc/%d/stat" % self.proc.pid) as f:
                fields = f.read().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, IndexError):
            t = os.times()
            return (t.children_user - self.cpu0.children_user) + (t.children_system - self.cpu0.children_system)

    def console_tail(self, n=4000):
        try:
            with open(self.serial_log, "rb") as f:
                return f.read()[-n:].decode("utf-8", "replace")
        except OSError:
            return "(no console log)"

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def cleanup(self):
        self.kill()
        if self.own_share:
            shutil.rmtree(self.share, ignore_errors=True)

    # -- the agent ---------------------------------------------------------

    def start(self, timeout=300):
        """Boots with the agent and waits until it answers."""
        self.boot("exec %s %s %d" % (PYTHON, os.path.join(HERE, "agent.py"), AGENT_PORT))
        self.wait_started(timeout)
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.call({"op": "ping"}, timeout=10)
                return self
            except (OSError, ValueError):
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError("guest agent does not answer:\n%s" % self.console_tail())
                time.sleep(0.2)

    def call(self, req, timeout=60):
        """One request to the agent; returns its reply (a dict)."""
        with socket.create_connection(("127.0.0.1", self.port(AGENT_PORT)), timeout=timeout) as s:
            s.sendall(json.dumps(req).encode() + b"\n")
            data = b""
            while not data.endswith(b"\n"):
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        reply = json.loads(data)
        if "error" in reply:
            raise AssertionError("guest agent: %s" % reply["error"])
        return reply

    def run(self, cmd, timeout=120, check=False):
        """Runs the shell command 'cmd' in the guest; returns (exit status,
        stdout+stderr text). check: AssertionError unless it exits 0."""
        r = self.call({"op": "run", "sh": cmd, "timeout": timeout}, timeout=timeout + 30)
        if check and r["rc"] != 0:
            raise AssertionError("in the guest, %r exited %s:\n%s" % (cmd, r["rc"], r["out"][-3000:]))
        return r["rc"], r["out"]

    def spawn(self, cmd, log_path=None):
        """Starts 'cmd' in the background in the guest (its own session,
        output to 'log_path', a path on the share or in the guest); returns
        its pid in the guest."""
        return self.call({"op": "spawn", "sh": cmd, "log": log_path or "/dev/null"})["pid"]

    def signal(self, pid, sig=15):
        """Sends 'sig' to the process group of a spawned command."""
        return self.call({"op": "signal", "pid": pid, "sig": sig})

    def wait(self, pid, timeout=30):
        """Waits for a spawned command; returns its exit status (negative:
        killed by that signal) or None when it still runs after 'timeout'."""
        return self.call({"op": "wait", "pid": pid, "timeout": timeout}, timeout=timeout + 30)["rc"]

    def stop(self, timeout=60):
        """Powers the guest off (the agent exits 0) and waits for qemu."""
        if self.proc and self.proc.poll() is None:
            try:
                self.call({"op": "exit"}, timeout=10)
            except (OSError, ValueError, AssertionError):
                pass
            return self.wait_exit(timeout)
        return None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        if exc[0] is not None:
            print("--- guest console tail ---\n%s" % self.console_tail(), file=sys.stderr)
        self.stop()
        self.cleanup()


def _free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_once(cmd, share=None, timeout=900, console=None, **kw):
    """Boots a guest, runs the shell command 'cmd', powers off. Returns
    (exit status or None, seconds from qemu start to the command, the
    Guest)."""
    g = Guest(share=share, **kw)
    try:
        g.boot(cmd, console=console)
        boot = g.wait_started(timeout)
        rc = g.wait_exit(timeout)
        return rc, boot, g
    finally:
        g.kill()


def main(argv):
    import argparse
    ap = argparse.ArgumentParser(prog="guest.py", description="Debian's kernel in qemu on the host's root")
    sub = ap.add_subparsers(dest="what", required=True)
    sub.add_parser("prepare", help="fetch the kernel and build the initramfs")
    r = sub.add_parser("run", help="boot, run a command, power off; exits with its status")
    r.add_argument("--share", help="host folder mounted writable at the same path (default: a temp dir)")
    r.add_argument("--smp", type=int)
    r.add_argument("--mem", type=int)
    r.add_argument("--timeout", type=float, default=900)
    r.add_argument("cmd", nargs=argparse.REMAINDER)
    a = ap.parse_args(argv)
    try:
        if a.what == "prepare":
            k, initrd = prepare()
            print("kernel %s\n  %s\n  initramfs %s" % (k.package, k.vmlinuz, initrd))
            return 0
        cmd = a.cmd[1:] if a.cmd[:1] == ["--"] else a.cmd
        if not cmd:
            ap.error("run: no command")
        line = cmd[0] if len(cmd) == 1 else " ".join(shlex.quote(c) for c in cmd)
        t0 = time.monotonic()
        rc, boot, g = run_once(line, share=a.share, timeout=a.timeout, console=sys.stdout,
                               smp=a.smp, mem=a.mem, keep=bool(a.share))
        log("qemu start -> command %.1fs (guest uptime %.1fs), total %.1fs, exit %s" %
            (boot, g.guest_uptime or 0, time.monotonic() - t0, rc))
        if not a.share:
            g.cleanup()
        return 125 if rc is None else rc
    except GuestUnavailable as e:
        print("guest: cannot run here: %s" % e, file=sys.stderr)
        return SKIP


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
