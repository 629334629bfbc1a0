#!/usr/bin/python3
"""agent: runs in the guest (guest.py's Guest.start) and runs commands for
the host over TCP, one JSON request line and one JSON reply line per
connection:

  {"op": "ping"}                                 -> {"ok": true}
  {"op": "run", "sh": CMD, "timeout": S}         -> {"rc": N, "out": TEXT}
  {"op": "spawn", "sh": CMD, "log": PATH}        -> {"pid": N}
  {"op": "signal", "pid": N, "sig": S}           -> {"ok": true}
  {"op": "wait", "pid": N, "timeout": S}         -> {"rc": N or null}
  {"op": "exit"}                                 -> {"ok": true}, then the
                                                    agent exits 0 (the guest
                                                    powers off)

Commands run with /bin/sh -c in their own session (signal reaches the whole
group). Standard library only: it runs on the host's python3 in the guest.
"""
import json
import os
import signal
import socket
import socketserver
import subprocess
import sys
import threading

procs = {}
lock = threading.Lock()


def handle(req):
    op = req.get("op")
    if op == "ping":
        return {"ok": True}
    if op == "run":
        try:
            p = subprocess.run(["/bin/sh", "-c", req["sh"]], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, timeout=req.get("timeout", 120), start_new_session=True)
            return {"rc": p.returncode, "out": p.stdout.decode("utf-8", "replace")}
        except subprocess.TimeoutExpired as e:
            return {"rc": None, "out": (e.stdout or b"").decode("utf-8", "replace") + "\n(timed out)"}
    if op == "spawn":
        log = open(req.get("log") or "/dev/null", "ab")
        p = subprocess.Popen(["/bin/sh", "-c", req["sh"]], stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                             start_new_session=True)
        log.close()
        with lock:
            procs[p.pid] = p
        return {"pid": p.pid}
    if op == "signal":
        try:
            os.killpg(req["pid"], req.get("sig", signal.SIGTERM))
        except ProcessLookupError:
            pass
        return {"ok": True}
    if op == "wait":
        with lock:
            p = procs.get(req["pid"])
        if p is None:
            return {"error": "no process %s" % req["pid"]}
        try:
            rc = p.wait(timeout=req.get("timeout", 30))
        except subprocess.TimeoutExpired:
            return {"rc": None}
        return {"rc": rc}
    if op == "exit":
        return {"ok": True, "exit": True}
    return {"error": "unknown op %r" % op}


class Handler(socketserver.StreamRequestHandler):
    def handle(self):
        try:
            reply = handle(json.loads(self.rfile.readline()))
        except Exception as e:  # reported to the host, the agent goes on
            reply = {"error": "%s: %s" % (type(e).__name__, e)}
        self.wfile.write(json.dumps(reply).encode() + b"\n")
        self.wfile.flush()
        if reply.get("exit"):
            threading.Thread(target=self.server.shutdown).start()


class Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True
    address_family = socket.AF_INET


def main():
    port = int(sys.argv[1])
    srv = Server(("0.0.0.0", port), Handler)
    print("agent: listening on %d" % port, flush=True)
    srv.serve_forever()
    with lock:
        for p in procs.values():
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
