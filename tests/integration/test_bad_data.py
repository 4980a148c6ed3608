#!/usr/bin/env python3
"""Bad write data and bad SCSI requests (issue 2, "What must hold" 3). With InitialR2T=Yes and
ImmediateData=No every byte comes by R2T; a Data-Out with a duplicate or out-of-order DataSN, a
wrong buffer offset, data beyond the R2T's length or beyond the expected length, an unknown
Target Transfer Tag, or a sequence ended early is rejected (reason 0x09) and its command ends
with CHECK CONDITION, ABORTED COMMAND, ASC 0x4B, without touching the medium; the session goes
on. READ/WRITE beyond the last LBA end with ILLEGAL REQUEST, ASC 0x21; an unknown CDB opcode
with ILLEGAL REQUEST, ASC 0x20."""

import struct

from iscsi_raw import (BLOCK, KEY_ABORTED_COMMAND, KEY_ILLEGAL_REQUEST, LUN_BYTES, OP_R2T, RSVD,
                       STATUS_GOOD, Daemon, Initiator, bhs, cdb_rw16, check, count_lines,
                       expect_check_condition, expect_reject, run_main)

REJECT_INVALID_FIELD = 0x09
ASC_DATA_PHASE = 0x4B
LAST_LBA = LUN_BYTES // BLOCK - 1
R2T_KEYS = {"InitialR2T": "Yes", "ImmediateData": "No", "MaxBurstLength": "16384",
            "MaxOutstandingR2T": "1"}


def pattern(lba, blocks, tag):
    return b"".join((b"%s-%010d-" % (tag, lba + i)).ljust(BLOCK, b"\xee") for i in range(blocks))


def usable(ini, lba, tag):
    """The session still works: a ping, and a write that reads back."""
    ini.ping()
    data = pattern(lba, 4, tag)
    p = ini.write16(lba, data)
    check(p.status == STATUS_GOOD, "WRITE after the error: status 0x%02x" % p.status)
    p, got = ini.read16(lba, 4)
    check(p.status == STATUS_GOOD and got == data, "data written after the error reads back wrong")


def bad_sequence(ini, what, lba, nblocks, send_bad, prior=None):
    """WRITE nblocks at lba; after its R2T, send_bad(itt, r2t) sends the faulty Data-Out(s)
    and returns the header of the one that must be rejected. The command must end with
    ABORTED COMMAND and the blocks keep their earlier content."""
    old = pattern(lba, nblocks, b"old")
    p = ini.write16(lba, old)
    check(p.status == STATUS_GOOD, "%s: preparing write failed" % what)
    itt = ini.scsi_cmd(cdb_rw16(True, lba, nblocks), edtl=nblocks * BLOCK, write=True)
    r2t = ini.expect(OP_R2T, what=what)
    check(r2t.itt == itt and r2t.u32(40) == 0 and r2t.u32(44) == min(nblocks * BLOCK, 16384),
          "%s: R2T offset %d length %d" % (what, r2t.u32(40), r2t.u32(44)))
    check(r2t.u32(36) == 0, "%s: first R2TSN is %d" % (what, r2t.u32(36)))
    bad_hdr = send_bad(itt, r2t)
    expect_reject(ini, bad_hdr, REJECT_INVALID_FIELD, what)
    p, _ = ini.response(itt)
    expect_check_condition(p, KEY_ABORTED_COMMAND, ASC_DATA_PHASE, what)
    p, got = ini.read16(lba, nblocks)
    check(p.status == STATUS_GOOD and got == old, "%s: the medium changed" % what)


def data_out_hdr(ini, itt, ttt, datasn, offset, length, final):
    h = bhs(0x05, flags=0x80 if final else 0, itt=itt, f20=ttt, f28=ini.exp_statsn, f36=datasn,
            f40=offset)
    h[5:8] = struct.pack(">I", length)[1:]
    return h


def r2t_cases(d):
    ini = Initiator(d.port)
    ans = ini.login(keys=R2T_KEYS)
    check(ans.get("InitialR2T") == "Yes" and ans.get("ImmediateData") == "No",
          "negotiation: InitialR2T=%s ImmediateData=%s" % (ans.get("InitialR2T"),
                                                           ans.get("ImmediateData")))
    check(ans.get("MaxBurstLength") == "16384", "MaxBurstLength %s" % ans.get("MaxBurstLength"))
    payload = pattern(0, 64, b"new")

    def send(itt, ttt, datasn, offset, length, final, data=None):
        h = data_out_hdr(ini, itt, ttt, datasn, offset, length, final)
        ini.send_raw(h, data=data if data is not None else payload[offset:offset + length])
        return h

    def duplicate(itt, r2t):
        send(itt, r2t.ttt, 0, 0, 2048, False)
        return send(itt, r2t.ttt, 0, 2048, 2048, True)
    bad_sequence(ini, "duplicate DataSN", 1000, 8, duplicate)
    usable(ini, 5000, b"dup")

    def out_of_order(itt, r2t):
        send(itt, r2t.ttt, 0, 0, 2048, False)
        return send(itt, r2t.ttt, 2, 2048, 2048, True)
    bad_sequence(ini, "DataSN out of order", 1000, 8, out_of_order)
    usable(ini, 5000, b"ooo")

    def wrong_offset(itt, r2t):
        return send(itt, r2t.ttt, 0, 512, 3584, True)
    bad_sequence(ini, "wrong buffer offset", 1000, 8, wrong_offset)
    usable(ini, 5000, b"off")

    def beyond_r2t(itt, r2t):
        # 32 KiB write, 16 KiB bursts: the first sequence overruns its R2T by one block
        return send(itt, r2t.ttt, 0, 0, 16384 + BLOCK, True)
    bad_sequence(ini, "data beyond the R2T's length", 1000, 64, beyond_r2t)
    usable(ini, 5000, b"r2t")

    def beyond_edtl(itt, r2t):
        # the only R2T asks for all 4 KiB; 4.5 KiB come
        return send(itt, r2t.ttt, 0, 0, 4096 + BLOCK, True, data=payload[:4096 + BLOCK])
    bad_sequence(ini, "data beyond the expected length", 1000, 8, beyond_edtl)
    usable(ini, 5000, b"edt")

    def unknown_ttt(itt, r2t):
        h = send(itt, r2t.ttt ^ 0x5A5A, 0, 0, 2048, False)
        send(itt, r2t.ttt, 0, 2048, 2048, True)
        return h
    bad_sequence(ini, "unknown Target Transfer Tag", 1000, 8, unknown_ttt)
    usable(ini, 5000, b"ttt")

    def short_sequence(itt, r2t):
        return send(itt, r2t.ttt, 0, 0, 2048, True)
    bad_sequence(ini, "sequence ended short of the R2T", 1000, 8, short_sequence)
    usable(ini, 5000, b"sht")

    # Data-Out for a task that does not exist
    h = data_out_hdr(ini, 0x7777, 0x1234, 0, 0, BLOCK, True)
    ini.send_raw(h, data=bytes(BLOCK))
    expect_reject(ini, h, REJECT_INVALID_FIELD, "Data-Out for an unknown ITT")
    usable(ini, 5000, b"itt")

    # a WRITE beyond the last LBA is refused before any R2T
    itt = ini.scsi_cmd(cdb_rw16(True, LAST_LBA, 2), edtl=2 * BLOCK, write=True)
    p = ini.recv()
    expect_check_condition(p, KEY_ILLEGAL_REQUEST, 0x21, "WRITE across the last LBA (R2T)")
    check(p.itt == itt, "response for another ITT")
    usable(ini, 5000, b"oor")
    ini.logout()


def oversized_data_out(d):
    """A Data-Out above MaxRecvDataSegmentLength is rejected, its data dropped; being the last
    of its sequence, the command must still end (it once waited forever)."""
    ini = Initiator(d.port)
    ini.login(keys={"InitialR2T": "Yes", "ImmediateData": "No", "MaxBurstLength": "1048576"})
    mrdsl = int(ini.answer["MaxRecvDataSegmentLength"])
    n = 2 * mrdsl // BLOCK
    lba = 7000
    old = pattern(lba, n, b"old")
    check(ini.write16(lba, old).status == STATUS_GOOD, "preparing write failed")
    itt = ini.scsi_cmd(cdb_rw16(True, lba, n), edtl=n * BLOCK, write=True)
    r2t = ini.expect(OP_R2T, what="WRITE of 2 x MaxRecvDataSegmentLength")
    check(r2t.u32(44) == n * BLOCK, "R2T length %d, want %d" % (r2t.u32(44), n * BLOCK))
    h = data_out_hdr(ini, itt, r2t.ttt, 0, 0, n * BLOCK, True)
    ini.send_raw(h, data=pattern(lba, n, b"new"))
    p = ini.recv()
    check(p.opcode == 0x3F and p.reason in (0x04, 0x09) and p.data[:48] == bytes(h),
          "Data-Out above MaxRecvDataSegmentLength: want Reject, got %r" % p)
    p, _ = ini.response(itt)
    expect_check_condition(p, KEY_ABORTED_COMMAND, ASC_DATA_PHASE,
                           "Data-Out above MaxRecvDataSegmentLength")
    p, got = ini.read16(lba, n)
    check(got == old, "an oversized Data-Out changed the medium")
    usable(ini, 7000, b"big")
    ini.logout()


def unsolicited_cases(d):
    ini = Initiator(d.port)
    ans = ini.login()
    check(ans.get("InitialR2T") == "No" and ans.get("ImmediateData") == "Yes",
          "default negotiation: InitialR2T=%s ImmediateData=%s" % (ans.get("InitialR2T"),
                                                                   ans.get("ImmediateData")))
    lba = 3000
    old = pattern(lba, 8, b"old")
    check(ini.write16(lba, old).status == STATUS_GOOD, "unsolicited write failed")
    # unsolicited Data-Out beyond EDTL
    itt = ini.scsi_cmd(cdb_rw16(True, lba, 8), edtl=8 * BLOCK, write=True, final=False)
    h = data_out_hdr(ini, itt, RSVD, 0, 0, 9 * BLOCK, True)
    ini.send_raw(h, data=pattern(lba, 9, b"bad"))
    expect_reject(ini, h, REJECT_INVALID_FIELD, "unsolicited data beyond EDTL")
    p, _ = ini.response(itt)
    expect_check_condition(p, KEY_ABORTED_COMMAND, ASC_DATA_PHASE, "unsolicited data beyond EDTL")
    p, got = ini.read16(lba, 8)
    check(got == old, "unsolicited data beyond EDTL changed the medium")
    usable(ini, 6000, b"uns")

    # WRITE beyond the last LBA with immediate data, then the unsolicited rest
    itt = ini.scsi_cmd(cdb_rw16(True, LAST_LBA - 3, 8), edtl=8 * BLOCK, write=True,
                       data=bytes(4 * BLOCK), final=False)
    ini.data_out(itt, RSVD, 0, 4 * BLOCK, bytes(4 * BLOCK))
    p = ini.recv()
    expect_check_condition(p, KEY_ILLEGAL_REQUEST, 0x21, "WRITE across the last LBA")
    usable(ini, 6000, b"wor")

    # READs out of range, including an LBA whose byte offset overflows 64 bits
    for lba_, n, what in ((LAST_LBA + 1, 1, "READ at the first LBA past the end"),
                          (LAST_LBA, 2, "READ across the last LBA"),
                          (0xFFFFFFFFFFFFFFFF, 1, "READ at LBA 2^64-1"),
                          (0x0080000000000000, 8, "READ at an LBA that overflows a byte offset")):
        p, data = ini.read16(lba_, n)
        expect_check_condition(p, KEY_ILLEGAL_REQUEST, 0x21, what)
        check(data == b"", "%s returned data" % what)
    p, data = ini.read16(LAST_LBA, 1)
    check(p.status == STATUS_GOOD and len(data) == BLOCK, "READ of the last LBA failed")

    # unknown CDB opcodes; a LUN that does not exist
    for op in (0xC7, 0x02, 0xFF):
        itt = ini.scsi_cmd(bytes([op]) + bytes(15))
        p, _ = ini.response(itt)
        expect_check_condition(p, KEY_ILLEGAL_REQUEST, 0x20, "CDB opcode 0x%02x" % op)
    itt = ini.scsi_cmd(cdb_rw16(False, 0, 1), edtl=BLOCK, read=True, lun=5)
    p, _ = ini.response(itt)
    expect_check_condition(p, KEY_ILLEGAL_REQUEST, 0x25, "READ on LUN 5")
    usable(ini, 6000, b"cdb")
    ini.logout()


def main(args):
    d = Daemon(args.twinlund)
    try:
        d.start()
        d.run_cases((r2t_cases, oversized_data_out, unsolicited_cases))
        log = d.log()
        for what in ("DataSN out of order", "buffer offset out of order",
                     "data beyond the R2T's desired length",
                     "Target Transfer Tag of no outstanding R2T",
                     "sequence ends short of the R2T", "unsolicited data outside the first burst",
                     "Data-Out for unknown ITT"):
            check(count_lines(log, r"warn .*" + what) >= 1, "no log line for '%s':\n%s" %
                  (what, log))
        # one line per bad Data-Out: 7 R2T cases and 1 unsolicited
        n = count_lines(log, r"warn .*Data-Out ITT")
        check(n == 8, "want 8 warnings about bad Data-Out PDUs, got %d:\n%s" % (n, log))
        d.stop_clean()
    finally:
        d.cleanup()


if __name__ == "__main__":
    run_main(main)
