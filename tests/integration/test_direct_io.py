#!/usr/bin/env python3
"""A LUN opened with O_DIRECT (direct = true) on a disk file: stamped data written through
libiscsi (immediate data and R2T paths, separate ranges) reads back byte-identical after a
restart."""

import os
import re

from iscsi_raw import TARGET_IQN, Daemon, check, run, run_main, write_config

SEED = 9191
NBLOCKS = 6000


def main(args):
    d = Daemon(args.twinlund)
    cfg = write_config(os.path.join(d.tmp, "direct.conf"), d.state_dir,
                       targets=[{"iqn": TARGET_IQN, "direct": True}])
    d.config = cfg
    try:
        d.start()
        check(re.search(r"LUN 0: .*lun0\.img, 131072 blocks of 512 bytes, thin, O_DIRECT", d.log()),
              "the LUN is not reported as opened with O_DIRECT:\n" + d.log())
        rc, out = run([args.stamp, "--range", "0:100000", "write", d.url(), str(SEED),
                       str(NBLOCKS)])
        check(rc == 0, "iscsi_stamp write failed:\n" + out)
        rc, out = run([args.stamp, "--r2t", "--range", "100000:30000", "write", d.url(), "5",
                       "3000"])
        check(rc == 0, "iscsi_stamp --r2t write failed:\n" + out)
        d.stop()
        d.start()
        rc, out = run([args.stamp, "--range", "0:100000", "verify", d.url(), str(SEED),
                       str(NBLOCKS)])
        check(rc == 0, "O_DIRECT data did not survive a restart:\n" + out)
        rc, out = run([args.stamp, "--range", "100000:30000", "verify", d.url(), "5", "3000"])
        check(rc == 0, "O_DIRECT R2T data did not read back:\n" + out)
        d.stop_clean()
    finally:
        d.cleanup()


if __name__ == "__main__":
    run_main(main)
