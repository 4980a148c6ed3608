#!/usr/bin/env python3
"""Figures of a flow-control run from twl-workload's --progress file (the client's view) and
throttle-sample.py's CSV (node A's view), and the checks on them.

  throttle-check.py steady PROGRESS SAMPLES FROM TO
      over the wall-clock window [FROM, TO]: client and replication throughput, their ratio,
      the partner ring's peak occupancy and ring-full waits, the throttle queue's peak.
      Exit 0 when the client is within 10 % of replication and the ring never was full.
  throttle-check.py step PROGRESS SAMPLES LIFT LOWER END
      the limit was lifted at LIFT and put back at LOWER (wall clock): the client's throughput
      level before LIFT, between LIFT + 3 s and LOWER, after LOWER + 3 s, and how long after
      each change the client's 1-second throughput first came within 10 % of the new level.
      Exit 0 when both took at most 2 s.
  throttle-check.py csv PROGRESS SAMPLES T0 OUT.csv
      one row per 0.5 s from T0: seconds, client MB/s, replication MB/s, writes queued at the
      throttle, partner ring MiB (for the plot)
"""
import csv
import sys


def load_progress(path):
    rows = []
    with open(path) as f:
        for line in f:
            p = line.split()
            if len(p) >= 3:
                rows.append((float(p[0]), int(p[2])))
    return rows


def load_samples(path):
    with open(path) as f:
        return [{k: float(v) for k, v in r.items()} for r in csv.DictReader(f)]


def value_at(series, t):
    """Linear interpolation of a cumulative (time, value) series at t."""
    if not series or t <= series[0][0]:
        return series[0][1] if series else 0.0
    for (t0, v0), (t1, v1) in zip(series, series[1:]):
        if t0 <= t <= t1:
            return v0 + (v1 - v0) * (t - t0) / (t1 - t0) if t1 > t0 else v1
    return series[-1][1]


def rate(series, a, b):
    return (value_at(series, b) - value_at(series, a)) / (b - a) if b > a else 0.0


def repl_series(samples):
    return [(s["epoch"], s["replicated_bytes"]) for s in samples]


def steady(prog, samples, a, b):
    client = rate(prog, a, b)
    repl = rate(repl_series(samples), a, b)
    win = [s for s in samples if a <= s["epoch"] <= b]
    ring_peak = max((s["ring_bytes"] for s in win), default=0)
    ring_size = max((s["ring_size"] for s in win), default=0)
    full = (win[-1]["ring_full"] - win[0]["ring_full"]) if win else 0
    qpeak = max((s["queued"] for s in win), default=0)
    qmean = sum(s["queued"] for s in win) / len(win) if win else 0
    p99 = max((s["wait_p99_us"] for s in win), default=0)
    ratio = client / repl if repl else 0.0
    print("client %.2f MB/s, replication %.2f MB/s, client/replication %.3f; partner ring peak "
          "%.1f of %.1f MiB, ring full %d times; throttle queue mean %.1f, peak %d writes, "
          "wait p99 up to %.0f ms" % (client / 1e6, repl / 1e6, ratio, ring_peak / 2**20,
                                      ring_size / 2**20, full, qmean, qpeak, p99 / 1000))
    return abs(ratio - 1) <= 0.10 and full == 0 and ring_peak < ring_size


def settle_time(prog, start, level, end, above):
    """Seconds after start until the client's throughput over the next second first comes
    within 10 % of level (from below when above, from above otherwise)."""
    t = start
    while t + 1 <= end:
        r = rate(prog, t, t + 1)
        if (above and r >= 0.9 * level) or (not above and r <= 1.1 * level):
            return t - start
        t += 0.25
    return float("inf")


def step(prog, samples, lift, lower, end):
    t_first = prog[0][0]
    low1 = rate(prog, max(t_first + 2, lift - 5), lift)
    high = rate(prog, lift + 3, lower)
    low2 = rate(prog, lower + 3, end)
    rise = settle_time(prog, lift, high, lower, True)
    fall = settle_time(prog, lower, low2, end, False)
    repl = repl_series(samples)
    print("limited %.2f MB/s (replication %.2f), lifted %.2f MB/s (replication %.2f), limited "
          "again %.2f MB/s (replication %.2f)" %
          (low1 / 1e6, rate(repl, max(t_first + 2, lift - 5), lift) / 1e6, high / 1e6,
           rate(repl, lift + 3, lower) / 1e6, low2 / 1e6, rate(repl, lower + 3, end) / 1e6))
    print("client rose to the lifted rate %.2f s after the lift, fell to the limited rate "
          "%.2f s after it came back" % (rise, fall))
    return high > 1.3 * low2 and rise <= 2.0 and fall <= 2.0


def plot_csv(prog, samples, t0, out):
    repl = repl_series(samples)
    end = min(prog[-1][0], samples[-1]["epoch"])
    with open(out, "w") as f:
        f.write("seconds,client_mb_s,replication_mb_s,queued_writes,ring_mib\n")
        t = t0
        while t + 0.5 <= end:
            near = min(samples, key=lambda s: abs(s["epoch"] - (t + 0.25)))
            f.write("%.2f,%.3f,%.3f,%d,%.3f\n" % (
                t - t0, rate(prog, t, t + 0.5) / 1e6, rate(repl, t, t + 0.5) / 1e6,
                near["queued"], near["ring_bytes"] / 2**20))
            t += 0.5


def main():
    cmd, prog, samples = sys.argv[1], load_progress(sys.argv[2]), load_samples(sys.argv[3])
    if not prog or not samples:
        print("no data: %d progress lines, %d samples" % (len(prog), len(samples)))
        return 1
    times = sys.argv[4:]
    if cmd == "steady":
        return 0 if steady(prog, samples, float(times[0]), float(times[1])) else 1
    if cmd == "step":
        return 0 if step(prog, samples, *(float(a) for a in times[:3])) else 1
    if cmd == "csv":
        plot_csv(prog, samples, float(times[0]), times[1])
        return 0
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main())
