#!/usr/bin/python3
"""unload_when_free MODULE SECONDS: in the guest, unloads MODULE as soon as
nothing holds it (delete_module(2) every 5 ms, no process spawned per try,
so a window of a few ms between a device's last close and its next open is
enough). Prints "ready" once polling, "unloaded" on success; exits 0 then,
1 when SECONDS passed first."""
import ctypes
import os
import sys
import time

SYS_DELETE_MODULE = 176  # x86_64

libc = ctypes.CDLL(None, use_errno=True)
name, seconds = sys.argv[1].encode(), float(sys.argv[2])
print("ready", flush=True)
deadline = time.monotonic() + seconds
while time.monotonic() < deadline:
    if libc.syscall(SYS_DELETE_MODULE, name, os.O_NONBLOCK) == 0:
        print("unloaded after %.3f s" % (seconds - (deadline - time.monotonic())), flush=True)
        sys.exit(0)
    time.sleep(0.005)
print("still in use: %s" % os.strerror(ctypes.get_errno()), flush=True)
sys.exit(1)
