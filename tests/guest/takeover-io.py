#!/usr/bin/env python3
"""The I/O of tests/guest/pair-takeover.sh, on a filesystem mounted over dm-multipath.

  takeover-io.py files DIR MANIFEST [SEED]
      until SIGTERM: writes files of random data (4 KiB .. 512 KiB) under DIR, cycling over 48
      names (so a file is also rewritten), each with fsync before its SHA-256 is appended to
      MANIFEST ("name sha256 bytes"); a failed write, fsync or open is printed and ends the
      loop with exit 1. On exit prints "files: N written, M MiB, E errors".
  takeover-io.py timing FILE LOG [INTERVAL_S]
      until SIGTERM: a 4 KiB O_DIRECT|O_DSYNC write to FILE every INTERVAL_S (0.01), at 256
      offsets in turn; after each completed write a line "MONOTONIC REALTIME" (seconds) in LOG
      (the realtime clock only to place the test's marks; gaps are measured on the monotonic
      one). A failed write is printed and ends it with exit 1.
  takeover-io.py verify DIR MANIFEST
      every name's last recorded SHA-256 against the file's content now; prints
      "verify: N files, M MiB, K mismatched" (and each mismatch); exit 1 on any.
  takeover-io.py pauses LOG MARKS LIMIT_S GOAL_S
      MARKS has one line per command: "LABEL START END WINDOW_END" (realtime seconds: the
      command's start and end, the end of its window). For each: the longest gap between two
      consecutive completed timing writes that overlaps [START, WINDOW_END], counted from
      START, is the I/O pause; prints "takeover: LABEL pause P s (command C s)", then the
      longest gap outside every window (the noise floor) and the summary; exit 1 if a pause
      exceeds LIMIT_S, lasts past the next command, or cannot be measured (no timing write
      before the command or after the window).
"""
import hashlib
import mmap
import os
import random
import signal
import sys
import time

stop = False


def on_term(_sig, _frame):
    global stop
    stop = True


def files(top, manifest, seed):
    rng = random.Random(seed)
    written = nbytes = errors = 0
    with open(manifest, "a", buffering=1) as man:
        while not stop:
            name = "f%02d" % rng.randrange(48)
            size = rng.randrange(1, 129) * 4096
            data = os.urandom(size)
            path = os.path.join(top, name)
            try:
                with open(path, "wb") as f:
                    f.write(data)
                    f.flush()
                    os.fsync(f.fileno())
            except OSError as e:
                print("files: %s: %s" % (path, e), flush=True)
                errors += 1
                break
            man.write("%s %s %d\n" % (name, hashlib.sha256(data).hexdigest(), size))
            written += 1
            nbytes += size
            time.sleep(0.02)
    print("files: %d written, %.1f MiB, %d errors" % (written, nbytes / 1048576, errors))
    return 1 if errors else 0


def timing(path, log, interval):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_DIRECT | os.O_DSYNC, 0o644)
    buf = mmap.mmap(-1, 4096)  # page aligned, as O_DIRECT wants
    n = 0
    rc = 0
    with open(log, "w", buffering=1) as out:
        nxt = time.monotonic()
        while not stop:
            buf[0:8] = n.to_bytes(8, "little")
            try:
                os.pwrite(fd, buf, (n % 256) * 4096)
            except OSError as e:
                print("timing: write %d: %s" % (n, e), flush=True)
                rc = 1
                break
            out.write("%.6f %.6f\n" % (time.monotonic(), time.time()))
            n += 1
            nxt += interval
            now = time.monotonic()
            if nxt > now:
                time.sleep(nxt - now)
            else:
                nxt = now  # late (a pause): no burst to catch up
    os.close(fd)
    print("timing: %d writes" % n)
    return rc


def verify(top, manifest):
    want = {}
    with open(manifest) as man:
        for line in man:
            name, digest, size = line.split()
            want[name] = (digest, int(size))
    bad = 0
    nbytes = 0
    for name in sorted(want):
        digest, size = want[name]
        try:
            with open(os.path.join(top, name), "rb") as f:
                data = f.read()
        except OSError as e:
            print("verify: %s: %s" % (name, e))
            bad += 1
            continue
        nbytes += len(data)
        if len(data) != size or hashlib.sha256(data).hexdigest() != digest:
            print("verify: %s differs (%d bytes, %d recorded)" % (name, len(data), size))
            bad += 1
    print("verify: %d files, %.1f MiB, %d mismatched" % (len(want), nbytes / 1048576, bad))
    return 1 if bad or not want else 0


def pauses(log, marks, limit, goal):
    mono = []
    real = []
    with open(log) as f:
        for line in f:
            p = line.split()
            if len(p) == 2:
                mono.append(float(p[0]))
                real.append(float(p[1]))
    if len(mono) < 2:
        print("takeover: only %d timing writes logged" % len(mono))
        return 1
    # realtime of a completion = its monotonic time + the offset at the start (no clock step
    # in the guest); the marks are realtime, the gaps monotonic
    off = real[0] - mono[0]
    rc = 0
    worst = 0.0
    met = 0
    rows = []
    with open(marks) as f:
        for line in f:
            p = line.split()
            if len(p) == 4:
                rows.append((p[0], float(p[1]) - off, float(p[2]) - off, float(p[3]) - off))
    for k, (label, start, end, wend) in enumerate(rows):
        nxt = rows[k + 1][1] if k + 1 < len(rows) else None
        # the pause counts from the command's start: a gap that began before it counts from
        # there; one that lasts past the window counts in full
        pause = 0.0
        resumed = None
        for i in range(len(mono) - 1):
            if mono[i + 1] >= start and mono[i] <= wend:
                gap = mono[i + 1] - max(mono[i], start)
                if gap > pause:
                    pause, resumed = gap, mono[i + 1]
        note = ""
        if mono[0] > start:
            # the writer's first write came after the command: a bound, not a measurement
            pause = max(pause, mono[0] - start)
            note = " (no timing write before the command: not measured)"
        elif mono[-1] < wend:
            pause = max(pause, wend - max(mono[-1], start))
            note = " (no timing write completed after the window)"
        elif nxt is not None and resumed is not None and resumed > nxt:
            note = " (I/O resumed only after the next command)"
        if note:
            rc = 1
        worst = max(worst, pause)
        met += pause <= goal
        print("takeover: %s pause %.2f s (command %.2f s)%s"
              % (label.replace("_", " "), pause, end - start, note))
        if pause > limit:
            print("takeover: %s pause %.2f s over the %.0f s limit" % (label, pause, limit))
            rc = 1
    floor = 0.0
    for i in range(len(mono) - 1):
        if not any(mono[i + 1] >= s and mono[i] <= w for _, s, _, w in rows):
            floor = max(floor, mono[i + 1] - mono[i])
    gaps = sorted(mono[i + 1] - mono[i] for i in range(len(mono) - 1))
    print("takeover: %d timing writes, median gap %.3f s, longest gap outside the windows "
          "%.2f s" % (len(mono), gaps[len(gaps) // 2], floor))
    print("takeover: longest pause %.2f s; %d of %d transitions within the %.0f s goal "
          "(not asserted), limit %.0f s" % (worst, met, len(rows), goal, limit))
    return rc


def main():
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    a = sys.argv[1:]
    if a and a[0] == "files" and len(a) in (3, 4):
        return files(a[1], a[2], int(a[3]) if len(a) == 4 else 1)
    if a and a[0] == "timing" and len(a) in (3, 4):
        return timing(a[1], a[2], float(a[3]) if len(a) == 4 else 0.01)
    if a and a[0] == "verify" and len(a) == 3:
        return verify(a[1], a[2])
    if a and a[0] == "pauses" and len(a) == 5:
        return pauses(a[1], a[2], float(a[3]), float(a[4]))
    sys.stderr.write(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main())
