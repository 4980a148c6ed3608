#!/usr/bin/env python3
"""twl-workload against one twinlund on a 64 MiB LUN: a run with overlapping writes, WRITE SAME
and UNMAP is acknowledged in full and verifies both over iSCSI and straight from the backing
file (while the daemon runs: the same page cache; and after it stopped). Then the verifier must
catch damage done to the file behind the target's back: a block overwritten with 0x5a bytes
and a block replaced by its neighbour's (a misplaced write), each named by its LBA, from the
file and through a restarted target."""

import argparse
import os
import re
import struct
import sys

from iscsi_raw import Daemon, check, run, run_main, write_config

OPS = 3000
SEED = 20261125
LUN_BLOCKS = 64 * 1024 * 1024 // 512


def read_journal(path):
    """(block size, [(kind, op id, [(lba, blocks)])]) from the format documented at the top of
    tests/workload/twl_workload.c, read independently of the C reader."""
    with open(path, "rb") as f:
        data = f.read()
    check(data[:8] == b"TWLWKJ01", "journal %s has no TWLWKJ01 magic" % path)
    bs = struct.unpack_from("<I", data, 12)[0]
    ops, off, ended = [], 64, False
    while off < len(data):
        t = data[off:off + 1]
        if t == b"I":
            kind, n = chr(data[off + 1]), data[off + 2]
            op_id = struct.unpack_from("<Q", data, off + 8)[0]
            ext = [struct.unpack_from("<QQ", data, off + 16 + 16 * i) for i in range(n)]
            ops.append((kind, op_id, ext))
            off += 16 + 16 * n
        elif t == b"C":
            check(data[off + 1:off + 2] == b"G", "journal: op %d not acknowledged GOOD" %
                  struct.unpack_from("<Q", data, off + 8)[0])
            off += 24
        elif t == b"E":
            ended = True
            off += 16
        else:
            check(False, "journal: unknown record type %r at byte %d" % (t, off))
    check(ended, "journal %s has no END record" % path)
    return bs, ops


def verify(workload, journal, *source):
    rc, out = run([workload, "verify", "--journal", journal] + list(source))
    m = re.search(r"verify: (\d+) blocks checked, (\d+) bad", out)
    return rc, out, m


def main(args, workload):
    d = Daemon(args.twinlund)
    d.config = write_config(os.path.join(d.tmp, "workload.conf"), d.state_dir)
    image = os.path.join(d.state_dir, "lun0.img")
    journal = os.path.join(d.tmp, "workload.journal")
    try:
        rc, out = run([workload, "--help"])
        check(rc == 0 and "verify --journal FILE" in out and "--overlap-pct" in out,
              "twl-workload --help is incomplete:\n" + out)
        rc, out = run([workload, "run", "--journal", journal])
        check(rc == 2, "run without --url exited %d, want 2 (usage):\n%s" % (rc, out))

        d.start()
        rc, out = run([workload, "run", "--url", d.url(), "--journal", journal, "--ops", str(OPS),
                       "--qd", "16", "--overlap-pct", "20", "--unmap-pct", "5",
                       "--writesame-pct", "5", "--seed", str(SEED), "--prior-zero"], timeout=240)
        check(rc == 0, "twl-workload run failed (%d):\n%s" % (rc, out))
        m = re.search(r"summary: write issued=(\d+) acked=(\d+) failed=(\d+); writesame "
                      r"issued=(\d+) acked=(\d+) failed=(\d+); unmap issued=(\d+) acked=(\d+) "
                      r"failed=(\d+); overlapping=(\d+);.* ([\d.]+) IOPS", out)
        check(m, "no summary line from twl-workload run:\n" + out)
        n = [int(x) for x in m.groups()[:10]]
        check(n[0] + n[3] + n[6] == OPS, "issued %d ops, want %d:\n%s" % (n[0] + n[3] + n[6], OPS,
                                                                          out))
        check(n[1] == n[0] and n[4] == n[3] and n[7] == n[6] and n[2] + n[5] + n[8] == 0,
              "not every op was acknowledged:\n" + out)
        check(n[3] > 0 and n[6] > 0 and n[9] > 0,
              "the run had no WRITE SAME, no UNMAP or no overlapping op:\n" + out)
        print(out.strip().splitlines()[-1])

        rc, out, m = verify(workload, journal, "--url", d.url())
        check(rc == 0 and m and int(m.group(1)) > LUN_BLOCKS // 2 and m.group(2) == "0",
              "verify --url failed (%d):\n%s" % (rc, out))
        checked = int(m.group(1))
        # the daemon's writes are in the page cache the file is read through
        rc, out, m = verify(workload, journal, "--file", image, "--block-size", "512")
        check(rc == 0 and m and int(m.group(1)) == checked,
              "verify --file while the daemon runs failed (%d):\n%s" % (rc, out))
        d.stop_clean()
        rc, out, m = verify(workload, journal, "--file", image, "--block-size", "512")
        check(rc == 0 and m and int(m.group(1)) == checked,
              "verify --file after the daemon stopped failed (%d):\n%s" % (rc, out))

        bs, ops = read_journal(journal)
        check(bs == 512 and len(ops) == OPS, "journal: block size %d, %d ops" % (bs, len(ops)))
        writes = [e for k, _, ext in ops if k == "W" for e in ext if e[1] >= 2]
        garbage_lba = writes[len(writes) // 2][0]
        kinds = {op_id: k for k, op_id, _ in ops}
        # A neighbour pair whose contents differ, the first holding its own WRITE's stamp (a
        # WRITE SAME's stamp could be acceptable one block further): copying it over the second
        # misplaces a block.
        with open(image, "r+b") as f:
            def block(lba):
                f.seek(lba * bs)
                return f.read(bs)

            for lba, _ in writes[len(writes) // 3:]:
                here = block(lba)
                stamp_lba, stamp_op = struct.unpack_from("<QQ", here)
                if (garbage_lba not in (lba, lba + 1) and stamp_lba == lba and
                        kinds.get(stamp_op) == "W" and here != block(lba + 1)):
                    src_lba, dst_lba = lba, lba + 1
                    break
            else:
                check(False, "no pair of neighbouring blocks with different contents")
            f.seek(garbage_lba * bs)
            f.write(b"\x5a" * bs)
            moved = block(src_lba)
            f.seek(dst_lba * bs)
            f.write(moved)

        rc, out, m = verify(workload, journal, "--file", image, "--block-size", "512")
        check(rc != 0 and m and m.group(2) == "2",
              "verify --file missed the damage (exit %d, want 2 bad blocks):\n%s" % (rc, out))
        check(re.search(r"BAD LBA %d: holds garbage" % garbage_lba, out),
              "verify --file does not name LBA %d as garbage:\n%s" % (garbage_lba, out))
        check(re.search(r"BAD LBA %d: holds stamp LBA %d " % (dst_lba, src_lba), out),
              "verify --file does not name LBA %d as holding LBA %d's block:\n%s" %
              (dst_lba, src_lba, out))

        d.start()
        rc, out, m = verify(workload, journal, "--url", d.url())
        check(rc != 0 and m and m.group(2) == "2" and "BAD LBA %d:" % garbage_lba in out,
              "verify --url missed the damage (exit %d):\n%s" % (rc, out))
        d.stop_clean()
    finally:
        d.cleanup()


if __name__ == "__main__":
    ap = argparse.ArgumentParser(add_help=False)
    ap.add_argument("--workload", required=True)
    known, rest = ap.parse_known_args()
    sys.argv = sys.argv[:1] + rest
    run_main(lambda args: main(args, known.workload))
