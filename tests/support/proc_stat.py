"""proc_stat: what /proc says about a process (memory, threads, CPU).

  status(pid)        {"rss_kb", "hwm_kb", "anon_kb", "file_kb", "threads"}
  cpu_seconds(pids)  user + system CPU of the processes, in seconds
  children(pid)      pids of the direct children (every thread's)
  median(values)
  sample(pid, ...)   median of a few status(pid) samples taken after a settle
"""

import os
import time

TICK = os.sysconf("SC_CLK_TCK")


def status(pid):
    d = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            k, _, v = line.partition(":")
            d[k] = v.split()
    kb = lambda k: int(d[k][0]) if d.get(k) else 0  # noqa: E731
    return {"rss_kb": kb("VmRSS"), "hwm_kb": kb("VmHWM"), "anon_kb": kb("RssAnon"), "file_kb": kb("RssFile"),
            "threads": kb("Threads")}


def cpu_seconds(pids):
    total = 0
    for pid in pids:
        try:
            with open("/proc/%d/stat" % pid) as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (OSError, IndexError, ValueError):
            pass
    return total / TICK


def children(pid):
    out = []
    try:
        for tid in os.listdir("/proc/%d/task" % pid):
            with open("/proc/%d/task/%s/children" % (pid, tid)) as f:
                out.extend(int(x) for x in f.read().split())
    except OSError:
        pass
    return out


def median(values):
    v = sorted(values)
    if not v:
        return 0
    m = len(v) // 2
    return v[m] if len(v) % 2 else (v[m - 1] + v[m]) / 2


def sample(pid, settle=2.0, n=5, every=0.5):
    """Median of n samples of status(pid), 'every' s apart, taken after 'settle' s."""
    time.sleep(settle)
    rows = []
    for _ in range(n):
        rows.append(status(pid))
        time.sleep(every)
    return {k: median([r[k] for r in rows]) for k in rows[0]}
