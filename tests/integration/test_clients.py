#!/usr/bin/env python3
"""Real initiators against the default target (issue 2, "What must hold" 1): libiscsi's
iscsi-ls, iscsi-inq and iscsi-readcapacity16 see the target and its LUN; data written with
libiscsi (iscsi_stamp) reads back byte-identical, also after a SIGTERM and a restart on the
same state directory, and also with CRC32C header digests and R2T-only negotiation."""

import os
import re

from iscsi_raw import LUN_BYTES, TARGET_IQN, Daemon, check, run, run_main

SEED = 4242
NBLOCKS = 12000  # about 6 MiB in ~30 extents of 1 block .. 1 MiB


def main(args):
    d = Daemon(args.twinlund)
    try:
        d.start()
        portal = "127.0.0.1:%d" % d.port

        rc, out = run(["iscsi-ls", "-s", "iscsi://%s" % portal])
        check(rc == 0, "iscsi-ls -s failed (%d):\n%s" % (rc, out))
        check(re.search(r"^Target:%s Portal:%s,1$" % (re.escape(TARGET_IQN), re.escape(portal)),
                        out, re.M), "iscsi-ls does not list the target and portal:\n" + out)
        # iscsi-ls prints READ CAPACITY(10)'s last LBA times the block size (1 GiB - 512 B)
        check(re.search(r"^Lun:0\s+Type:DIRECT_ACCESS \(Size:102[34]M\)", out, re.M),
              "iscsi-ls does not show LUN 0 as a 1 GiB disk:\n" + out)

        rc, out = run(["iscsi-inq", d.url()])
        check(rc == 0, "iscsi-inq failed (%d):\n%s" % (rc, out))
        check(re.search(r"^Peripheral Device Type:DIRECT_ACCESS", out, re.M),
              "iscsi-inq: not a direct-access device:\n" + out)
        check(re.search(r"^Vendor:TWINLUN", out, re.M), "iscsi-inq: vendor is not TWINLUN:\n" + out)
        check(re.search(r"^CmdQue:1", out, re.M), "iscsi-inq: no command queueing:\n" + out)

        rc, out = run(["iscsi-inq", "-e", "1", "-c", "131", d.url()])
        check(rc == 0, "iscsi-inq VPD 0x83 failed (%d):\n%s" % (rc, out))
        check("Designator Type:(3) NAA" in out and "Designator:[%s,t," % TARGET_IQN in out,
              "iscsi-inq: device identification lacks the NAA or target port name:\n" + out)
        rc, out = run(["iscsi-inq", "-e", "1", "-c", "128", d.url()])
        check(rc == 0 and re.search(r"^Unit Serial Number:\[\w+\]", out, re.M),
              "iscsi-inq: no unit serial number (VPD 0x80):\n" + out)

        rc, out = run(["iscsi-readcapacity16", d.url()])
        check(rc == 0, "iscsi-readcapacity16 failed (%d):\n%s" % (rc, out))
        check(re.search(r"^Total size:%d$" % LUN_BYTES, out, re.M),
              "iscsi-readcapacity16: size is not %d bytes:\n%s" % (LUN_BYTES, out))
        check(re.search(r"^LOGICAL BLOCK LENGTH IN BYTES:512$", out, re.M),
              "iscsi-readcapacity16: block length is not 512:\n" + out)
        check(re.search(r"^RETURNED LOGICAL BLOCK ADDRESS:%d$" % (LUN_BYTES // 512 - 1), out, re.M),
              "iscsi-readcapacity16: wrong last LBA:\n" + out)

        # a LUN that does not exist is refused, not served
        rc, out = run(["iscsi-readcapacity16", d.url(lun=7)])
        check(rc != 0, "iscsi-readcapacity16 on LUN 7 succeeded:\n" + out)

        rc, out = run([args.stamp, "write", d.url(), str(SEED), str(NBLOCKS)])
        check(rc == 0, "iscsi_stamp write failed:\n" + out)
        check("last LBA %d" % (LUN_BYTES // 512 - 1) in out,
              "iscsi_stamp did not write the last LBA:\n" + out)
        rc, out = run([args.stamp, "verify", d.url(), str(SEED), str(NBLOCKS)])
        check(rc == 0, "iscsi_stamp verify (same run) failed:\n" + out)
        # the verifier can fail: another seed's stamps do not match
        rc, out = run([args.stamp, "verify", d.url(), str(SEED + 1), str(NBLOCKS)])
        check(rc != 0 and "MISMATCH" in out, "verify with a wrong seed passed:\n" + out)

        # every path of write data: R2T only (InitialR2T=Yes, ImmediateData=No)
        rc, out = run([args.stamp, "--r2t", "--range", "1000000:40000", "write", d.url(), "77",
                       "9000"])
        check(rc == 0, "iscsi_stamp --r2t write failed:\n" + out)
        rc, out = run([args.stamp, "--range", "1000000:40000", "verify", d.url(), "77", "9000"])
        check(rc == 0, "verify of R2T-written data failed:\n" + out)

        d.stop()
        img = os.path.join(d.state_dir, "lun0.img")
        check(os.path.getsize(img) == LUN_BYTES, "lun0.img is %d bytes" % os.path.getsize(img))

        d.start()
        rc, out = run([args.stamp, "verify", d.url(), str(SEED), str(NBLOCKS)])
        check(rc == 0, "data did not survive a restart:\n" + out)
        rc, out = run([args.stamp, "--header-digest", "verify", d.url(), str(SEED), str(NBLOCKS)])
        check(rc == 0, "verify with HeaderDigest=CRC32C failed:\n" + out)
        rc, out = run([args.stamp, "--header-digest", "--range", "1000000:40000", "write",
                       d.url(), "78", "9000"])
        check(rc == 0, "write with HeaderDigest=CRC32C failed:\n" + out)
        rc, out = run([args.stamp, "--range", "1000000:40000", "verify", d.url(), "78", "9000"])
        check(rc == 0, "verify of data written with header digests failed:\n" + out)
        log = d.log()
        check(re.search(r"normal session for iqn.2026-11.io.twinlun:test-stamp", log),
              "the log does not record iscsi_stamp's session:\n" + log)
        d.stop_clean()
    finally:
        d.cleanup()


if __name__ == "__main__":
    run_main(main)
