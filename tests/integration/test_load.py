#!/usr/bin/env python3
"""Load without leaks: 64 sessions at once, then 1,000 logins and logouts.

One twinlund (built-in default). A warm-up round of 64 concurrent libiscsi sessions
(iscsi_stamp, each writing stamped blocks of mixed sizes into its own slice of the LUN and
reading them back byte for byte) sets the daemon's memory high-water mark; then two more
rounds of 64 sessions on new seeds, and a burst of 1,000 raw logins and logouts from 4 threads.
At the end every session must have succeeded, the memory the daemon's malloc has handed out
(twinlunctl status: heap_in_use_bytes, idle both times) within 5 % of the warm-up's, its open
file descriptors back to the idle count, no session left, and its log without an error line.
The resident size is printed, not judged: malloc keeps freed pages, so it jumps with the peak
of concurrent connections (up to 4.5 MB here between two identical rounds) with no leak; the
heap figure is exact. (Each new I_T nexus used to leave a record on the LU forever: 850 KB per
round of 64 sessions.)"""

import json
import os
import subprocess
import threading
import time

from iscsi_raw import Daemon, Initiator, check, run, run_main

SESSIONS = 64
BLOCKS = 1200             # per session: its extents cover 1 MiB .. 1 block
SLICE = 2097152 // 64     # LBAs per session: the 1 GiB LUN in 64 slices
LOGINS = 1000


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS for %d" % pid)


def heap(ctl, d):
    rc, out = run([ctl, "--state-dir", d.state_dir, "status", "--json"])
    check(rc == 0, "status --json: %d\n%s" % (rc, out))
    return json.loads(out)["memory"]["heap_in_use_bytes"]


def fds(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def round_of_sessions(d, stamp, seed0):
    """64 iscsi_stamp processes at once, each write then verify in its slice."""
    procs = []
    for i in range(SESSIONS):
        rng = "%d:%d" % (i * SLICE, SLICE)
        cmd = ("%s --range %s write %s %d %d && %s --range %s verify %s %d %d" %
               (stamp, rng, d.url(), seed0 + i, BLOCKS, stamp, rng, d.url(), seed0 + i, BLOCKS))
        procs.append(subprocess.Popen(["sh", "-c", cmd], stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT))
    bad = []
    for i, p in enumerate(procs):
        out = p.communicate(timeout=600)[0].decode("utf-8", "replace")
        if p.returncode != 0:
            bad.append("session %d: exit %d: %s" % (i, p.returncode, out.strip()[-300:]))
    check(not bad, "%d of %d sessions failed:\n%s" % (len(bad), SESSIONS, "\n".join(bad[:5])))


def login_burst(port, count, threads=4):
    errors = []
    done = [0]
    lock = threading.Lock()

    def worker(k):
        for n in range(k, count, threads):
            try:
                ini = Initiator(port)
                isid = bytes([0x80, 0x40, k, 0, (n >> 8) & 0xff, n & 0xff])
                ini.login(initiator="iqn.2026-12.test:burst-%d" % k, isid=isid, clear_ua=False)
                ini.logout()
                ini.close()
                with lock:
                    done[0] += 1
            except Exception as e:  # every failure is counted and shown
                with lock:
                    errors.append("login %d: %s: %s" % (n, type(e).__name__, e))

    ts = [threading.Thread(target=worker, args=(k,)) for k in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    check(not errors, "%d of %d logins failed:\n%s" % (len(errors), count, "\n".join(errors[:5])))
    check(done[0] == count, "%d of %d logins done" % (done[0], count))


def main(args):
    ctl = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(args.twinlund))), "ctl",
                       "twinlunctl")
    d = Daemon(args.twinlund)
    try:
        d.start()
        pid = d.proc.pid
        idle_fds = fds(pid)
        t0 = time.time()
        round_of_sessions(d, args.stamp, 1000)
        login_burst(d.port, 100)
        time.sleep(0.5)  # the last connections' teardown
        warm, warm_heap = rss_kib(pid), heap(ctl, d)
        t1 = time.time()
        round_of_sessions(d, args.stamp, 2000)
        round_of_sessions(d, args.stamp, 3000)
        t2 = time.time()
        login_burst(d.port, LOGINS)
        t3 = time.time()
        time.sleep(0.5)
        end, end_heap = rss_kib(pid), heap(ctl, d)
        end_fds = fds(pid)
        print("load: 2 rounds of 64 sessions x %d blocks written and verified: %.1f s (warm-up "
              "%.1f s); %d logins/logouts: %.1f s (%.0f/s); heap in use %d KiB after warm-up, "
              "%d KiB at the end (%+.1f %%); RSS %d KiB, %d KiB (%+.1f %%); fds idle %d, end %d" %
              (BLOCKS, t2 - t1, t1 - t0, LOGINS, t3 - t2, LOGINS / (t3 - t2), warm_heap >> 10,
               end_heap >> 10, 100.0 * (end_heap - warm_heap) / max(warm_heap, 1), warm, end,
               100.0 * (end - warm) / warm, idle_fds, end_fds))
        check(warm_heap > 0, "status --json reports no heap in use: nothing to compare")
        check(end_heap <= warm_heap * 1.05, "heap in use grew from %d to %d bytes (more than "
              "5 %%)" % (warm_heap, end_heap))
        check(end_fds == idle_fds, "open fds %d at the end, %d when idle" % (end_fds, idle_fds))
        rc, out = run([ctl, "--state-dir", d.state_dir, "status"])
        check(rc == 0 and ", 0 sessions" in out, "sessions left at the end:\n" + out)
        d.stop_clean()
    finally:
        d.cleanup()


if __name__ == "__main__":
    run_main(main)
