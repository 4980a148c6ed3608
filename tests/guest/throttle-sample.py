#!/usr/bin/env python3
"""Samples a twinlund's `status --json` over its admin socket every PERIOD seconds until killed
(SIGTERM) and writes one CSV line per sample: the wall clock, the bytes the partner
acknowledged so far, the partner ring's occupancy and its ring-full count, the throttle's rate,
queue depth, waiting bytes, wait percentiles and window budget.

Usage: throttle-sample.py SOCKET OUT.csv [PERIOD]
"""
import json
import signal
import socket
import sys
import time

FIELDS = ("epoch,replicated_bytes,ring_bytes,ring_size,ring_full,connected,throttling,"
          "rate_bytes_s,capacity_bytes_s,throttle_rate_bytes_s,queued,queued_bytes,"
          "admitted_bytes,waited,wait_p50_us,wait_p99_us,window_budget_bytes")


def status(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(2)
    try:
        s.connect(path)
        s.sendall(b"status --json\n")
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    finally:
        s.close()
    code, _, body = data.decode().partition("\n")
    if code.strip() != "0":
        raise RuntimeError("status answered %s: %s" % (code, body))
    return json.loads(body)


def main():
    path, out = sys.argv[1], sys.argv[2]
    period = float(sys.argv[3]) if len(sys.argv) > 3 else 0.25
    running = [True]
    signal.signal(signal.SIGTERM, lambda *_: running.__setitem__(0, False))
    with open(out, "w") as f:
        f.write(FIELDS + "\n")
        nxt = time.time()
        while running[0]:
            try:
                st = status(path)
                p, t = st["pair"], st["pair"]["throttle"]
                f.write("%.3f,%d,%d,%d,%d,%d,%d,%.0f,%.0f,%.0f,%d,%d,%d,%d,%d,%d,%d\n" % (
                    time.time(), p["replicated_bytes"], p["ring_bytes"], p["ring_size"],
                    p["ring_full"], p["connected"], t["throttling"], p["rate_bytes_s"],
                    p["capacity_bytes_s"], t["rate_bytes_s"], t["queued"], t["queued_bytes"],
                    t["admitted_bytes"], t["waited"], t["wait_p50_us"], t["wait_p99_us"],
                    t["window_budget_bytes"]))
                f.flush()
            except (OSError, RuntimeError, ValueError, KeyError) as e:
                print("sampler: %s" % e, file=sys.stderr)
            nxt += period
            time.sleep(max(0.0, nxt - time.time()))


if __name__ == "__main__":
    main()
