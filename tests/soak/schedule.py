#!/usr/bin/env python3
"""The fault schedule of tests/soak/pair-soak.sh, drawn from a seed (Python's own Mersenne
Twister, the same on every machine and version): the same seed and count give the same
schedule.

Usage: schedule.py SEED COUNT [KIND,KIND...]

One line per fault, fields separated by spaces, every value an integer:
  INDEX KIND AT_MS HOLD_MS QD MAX_KIB WSEED P1 P2
    AT_MS    when, after the workload starts writing, the fault is injected
    HOLD_MS  how long it lasts: the link down, netem on, the disk full or slow, the partner
             dead before its restart (the owner is restarted as soon as it is dead: HOLD_MS 0)
    QD       the workload's queue depth (8..32); MAX_KIB its largest write (64..256 KiB)
    WSEED    the workload's own seed
    P1 P2    per kind: netem      P1 = loss in tenths of a percent, P2 = delay in ms (either
                                  may be 0, not both); on vA (A->B), vB (B->A) or both:
                                  P1 += 10000 * (0 vA, 1 vB, 2 both)
                       disk-slow  P1 = write delay in ms
Kinds: kill-a kill-b link-down netem disk-full disk-slow.
"""
import random
import sys

KINDS = ["kill-a", "kill-b", "link-down", "netem", "disk-full", "disk-slow"]


def main():
    if len(sys.argv) not in (3, 4):
        sys.exit(__doc__)
    seed, count = int(sys.argv[1]), int(sys.argv[2])
    kinds = KINDS
    if len(sys.argv) == 4 and sys.argv[3]:
        kinds = [k for k in sys.argv[3].split(",") if k]
        bad = [k for k in kinds if k not in KINDS]
        if bad:
            sys.exit("schedule.py: unknown kind(s) %s; known: %s" % (" ".join(bad), " ".join(KINDS)))
    rng = random.Random(seed)
    for i in range(1, count + 1):
        kind = rng.choice(kinds)
        at = rng.randint(800, 2500)
        qd = rng.randint(8, 32)
        max_kib = rng.choice([64, 128, 256])
        wseed = rng.randint(1, 2**31 - 1)
        p1 = p2 = 0
        if kind == "kill-a":
            hold = 0
        elif kind == "kill-b":
            hold = rng.randint(500, 4000)
        elif kind == "link-down":
            hold = rng.randint(2000, 5000)  # the partner is given up for after 2 s of silence
        elif kind == "netem":
            hold = rng.randint(1500, 4000)
            shape = rng.choice(["loss", "delay", "both"])
            loss = rng.randint(5, 100) if shape != "delay" else 0  # 0.5 % .. 10 %
            delay = rng.randint(2, 80) if shape != "loss" else 0
            p1 = loss + 10000 * rng.randint(0, 2)
            p2 = delay
        elif kind == "disk-full":
            hold = rng.randint(1500, 4000)
        else:  # disk-slow
            hold = rng.randint(1500, 4000)
            p1 = rng.randint(10, 150)
        print(i, kind, at, hold, qd, max_kib, wseed, p1, p2)


if __name__ == "__main__":
    main()
