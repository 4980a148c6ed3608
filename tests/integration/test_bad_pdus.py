#!/usr/bin/env python3
"""Malformed PDUs in the full feature phase (issue 2, "What must hold" 3): unknown opcodes,
AHS where none belongs, a broken AHS structure, a data segment above the negotiated
MaxRecvDataSegmentLength, bad header and data digests, SNACK at ErrorRecoveryLevel 0, and a
Login PDU after login. Each gets the protocol's answer (Reject with the right reason, a dropped
connection for a bad header digest, CHECK CONDITION for a command whose data was bad), the log
gets a line, and the session (or a new one) goes on working."""

import struct

from iscsi_raw import (BLOCK, KEY_ABORTED_COMMAND, KEY_ILLEGAL_REQUEST, OP_LOGIN, OP_NOP_OUT,
                       OP_R2T, OP_SCSI_CMD, OP_SNACK, RSVD, STATUS_GOOD, Daemon, Initiator,
                       bhs, cdb_rw16, check, count_lines, expect_check_condition, expect_reject,
                       run_main)

REJECT_DATA_DIGEST = 0x02
REJECT_PROTOCOL_ERROR = 0x04
REJECT_NOT_SUPPORTED = 0x05
REJECT_INVALID_FIELD = 0x09


def pattern(lba, blocks, tag):
    out = b""
    for i in range(blocks):
        out += (b"%s-%08d-" % (tag, lba + i)).ljust(BLOCK, b"x")
    return out


def plain_session(d):
    ini = Initiator(d.port)
    ini.login()
    ini.ping()
    return ini


def unknown_opcodes(d):
    ini = plain_session(d)
    # 0x0e is no initiator opcode; the header comes back in a Reject, the session goes on
    h = bhs(0x0E, itt=ini.itt(), f24=ini.cmdsn, f28=ini.exp_statsn)
    ini.send(h)
    expect_reject(ini, h, REJECT_PROTOCOL_ERROR, "unknown opcode 0x0e")
    ini.ping()
    # with a data segment: it must be skipped whole, or the next PDU would be misframed
    h = bhs(0x1B, itt=ini.itt(), f24=ini.cmdsn, f28=ini.exp_statsn)
    data = bytes(range(256)) * 20 + b"abc"
    h[5:8] = struct.pack(">I", len(data))[1:]
    ini.send_raw(h, data=data)
    expect_reject(ini, h, REJECT_PROTOCOL_ERROR, "unknown opcode 0x1b with data")
    ini.ping(b"after unknown opcode with data")
    ini.logout()
    log = d.log()
    check(count_lines(log, r"unknown opcode 0x0e") == 1,
          "want one log line about opcode 0x0e:\n" + log)
    check(count_lines(log, r"unknown opcode 0x1b") == 1,
          "want one log line about opcode 0x1b:\n" + log)


def ahs_cases(d):
    ini = plain_session(d)
    # an AHS on a NOP-Out: only SCSI Commands carry AHS
    h = bhs(OP_NOP_OUT, ahs_len=2, itt=ini.itt(), f20=RSVD, f24=ini.cmdsn, f28=ini.exp_statsn)
    ini.send_raw(h, ahs=struct.pack(">HBB", 5, 2, 0) + b"\0\0\0\0")
    expect_reject(ini, h, REJECT_INVALID_FIELD, "AHS on a NOP-Out")
    ini.ping()

    # TotalAHSLength of one word, but the AHS inside claims 8 bytes
    h = bhs(OP_SCSI_CMD, flags=0xC1, ahs_len=1, itt=ini.itt(), f20=BLOCK, f24=ini.cmdsn,
            f28=ini.exp_statsn, cdb=cdb_rw16(False, 0, 1))
    ini.send_raw(h, ahs=struct.pack(">HBB", 8, 1, 0))
    expect_reject(ini, h, REJECT_INVALID_FIELD, "AHS overrunning TotalAHSLength")
    ini.ping()

    # an AHS of length 0 inside a valid TotalAHSLength
    h = bhs(OP_SCSI_CMD, flags=0xC1, ahs_len=1, itt=ini.itt(), f20=BLOCK, f24=ini.cmdsn,
            f28=ini.exp_statsn, cdb=cdb_rw16(False, 0, 1))
    ini.send_raw(h, ahs=struct.pack(">HBB", 0, 1, 0))
    expect_reject(ini, h, REJECT_INVALID_FIELD, "AHS of length 0")
    ini.ping()
    check(count_lines(d.log(), r"warn .*AHS entries do not fit") == 2,
          "want one log line per malformed AHS:\n" + d.log())

    # a well-formed Bidirectional Read Expected Data Transfer Length AHS: this target does no
    # bidirectional commands, so the command ends with ILLEGAL REQUEST
    itt = ini.itt()
    h = bhs(OP_SCSI_CMD, flags=0xC1, ahs_len=2, itt=itt, f20=BLOCK, f24=ini.next_cmdsn(),
            f28=ini.exp_statsn, cdb=cdb_rw16(False, 0, 1))
    ini.send_raw(h, ahs=struct.pack(">HBBI", 5, 2, 0, BLOCK))
    p, _ = ini.response(itt)
    expect_check_condition(p, KEY_ILLEGAL_REQUEST, 0x24, "bidirectional AHS")
    ini.ping()
    ini.logout()


def oversized_segment(d):
    ini = plain_session(d)
    mrdsl = int(ini.answer["MaxRecvDataSegmentLength"])
    check(mrdsl == 262144, "target declared MaxRecvDataSegmentLength %d" % mrdsl)
    big = b"\xa5" * (mrdsl + 4)
    h = bhs(OP_NOP_OUT, itt=ini.itt(), f20=RSVD, f24=ini.cmdsn, f28=ini.exp_statsn)
    h[5:8] = struct.pack(">I", len(big))[1:]
    ini.send_raw(h, data=big)
    p = ini.recv()
    check(p.opcode == 0x3F and p.reason in (REJECT_PROTOCOL_ERROR, REJECT_INVALID_FIELD),
          "NOP-Out above MaxRecvDataSegmentLength: want Reject, got %r" % p)
    check(p.data[:48] == bytes(h), "Reject does not carry the oversized PDU's header")
    ini.ping(b"still framed")

    # a WRITE whose immediate data is above MaxRecvDataSegmentLength
    itt = ini.itt()
    payload = b"\x5a" * (mrdsl + BLOCK)
    h = bhs(OP_SCSI_CMD, flags=0xA1, itt=itt, f20=len(payload), f24=ini.cmdsn,
            f28=ini.exp_statsn, cdb=cdb_rw16(True, 100, len(payload) // BLOCK))
    h[5:8] = struct.pack(">I", len(payload))[1:]
    ini.send_raw(h, data=payload)
    p = ini.recv()
    check(p.opcode == 0x3F, "WRITE with oversized immediate data: want Reject, got %r" % p)
    ini.ping(b"still framed after write")
    p, data = ini.read16(100, 1)
    check(p.status == STATUS_GOOD and data != payload[:BLOCK],
          "rejected immediate data reached the medium")
    ini.logout()
    check(count_lines(d.log(), r"above MaxRecvDataSegmentLength") == 2,
          "want one log line per oversized PDU:\n" + d.log())


def header_digest(d):
    ini = Initiator(d.port)
    ini.login(header_digest=True)
    ini.ping(b"digests both ways")
    p, data = ini.read16(0, 2)
    check(p.status == STATUS_GOOD and len(data) == 2 * BLOCK, "READ with header digests failed")
    h = bhs(OP_NOP_OUT, itt=ini.itt(), f20=RSVD, f24=ini.cmdsn, f28=ini.exp_statsn)
    ini.send_raw(h, bad_hdigest=True)
    ini.expect_closed(what="corrupted header digest")
    ini.close()
    check(count_lines(d.log(), r"warn .*header digest error") == 1,
          "want one log line for the header digest error:\n" + d.log())
    # the target is fine, and so is a new session with the same identity
    ini = Initiator(d.port)
    ini.login(header_digest=True)
    ini.ping()
    # a header digest that is absent where one was negotiated is just as corrupt
    h = bhs(OP_NOP_OUT, itt=ini.itt(), f20=RSVD, f24=ini.cmdsn, f28=ini.exp_statsn)
    ini.send_raw(h, hdigest=False)
    ini.send_raw(bhs(OP_NOP_OUT, itt=ini.itt(), f20=RSVD, f24=ini.cmdsn, f28=ini.exp_statsn),
                 hdigest=False)
    ini.expect_closed(what="missing header digest")
    ini.close()
    ini = Initiator(d.port)
    ini.login()
    ini.ping()
    ini.logout()


def data_digest(d):
    # immediate data with a bad digest
    ini = Initiator(d.port)
    ini.login(data_digest=True)
    ini.ping(b"data digest on the echo")
    lba = 2048
    good = pattern(lba, 8, b"good")
    p = ini.write16(lba, good)
    check(p.status == STATUS_GOOD, "WRITE with data digests: status 0x%02x" % p.status)
    p, data = ini.read16(lba, 8)
    check(p.status == STATUS_GOOD and data == good, "READ with data digests returned other data")

    bad = pattern(lba, 8, b"bad!")
    itt = ini.itt()
    h = bhs(OP_SCSI_CMD, flags=0xA1, itt=itt, f20=len(bad), f24=ini.next_cmdsn(),
            f28=ini.exp_statsn, cdb=cdb_rw16(True, lba, 8))
    h[5:8] = struct.pack(">I", len(bad))[1:]
    ini.send_raw(h, data=bad, bad_ddigest=True)
    expect_reject(ini, h, REJECT_DATA_DIGEST, "immediate data with a bad digest")
    p, _ = ini.response(itt)
    expect_check_condition(p, KEY_ABORTED_COMMAND, 0x47, "immediate data with a bad digest")
    p, data = ini.read16(lba, 8)
    check(data == good, "data with a bad digest was written")

    # a bad digest on a NOP-Out's ping data
    h = bhs(OP_NOP_OUT, itt=ini.itt(), f20=RSVD, f24=ini.cmdsn, f28=ini.exp_statsn)
    h[5:8] = struct.pack(">I", 5)[1:]
    ini.send_raw(h, data=b"hello", bad_ddigest=True)
    expect_reject(ini, h, REJECT_DATA_DIGEST, "NOP-Out data with a bad digest")
    ini.ping()
    ini.logout()

    # solicited Data-Out with a bad digest
    ini = Initiator(d.port)
    ini.login(data_digest=True, keys={"InitialR2T": "Yes", "ImmediateData": "No"})
    itt = ini.scsi_cmd(cdb_rw16(True, lba, 8), edtl=len(bad), write=True)
    r2t = ini.expect(OP_R2T, what="WRITE with InitialR2T=Yes")
    check(r2t.itt == itt and r2t.u32(40) == 0 and r2t.u32(44) == len(bad),
          "R2T asks for offset %d length %d" % (r2t.u32(40), r2t.u32(44)))
    h = bhs(0x05, flags=0x80, itt=itt, f20=r2t.ttt, f28=ini.exp_statsn, f36=0, f40=0)
    h[5:8] = struct.pack(">I", len(bad))[1:]
    ini.send_raw(h, data=bad, bad_ddigest=True)
    expect_reject(ini, h, REJECT_DATA_DIGEST, "Data-Out with a bad digest")
    p, _ = ini.response(itt)
    expect_check_condition(p, KEY_ABORTED_COMMAND, 0x47, "Data-Out with a bad digest")
    p, data = ini.read16(lba, 8)
    check(data == good, "Data-Out with a bad digest was written")
    p = ini.write16(lba, bad)
    check(p.status == STATUS_GOOD, "WRITE after the digest error failed")
    p, data = ini.read16(lba, 8)
    check(data == bad, "WRITE after the digest error did not land")
    ini.logout()
    check(count_lines(d.log(), r"data digest error") == 3,
          "want one log line per data digest error:\n" + d.log())


def snack_and_login(d):
    ini = plain_session(d)
    h = bhs(OP_SNACK, flags=0x80, itt=ini.itt(), f20=RSVD, f28=ini.exp_statsn)
    ini.send(h)
    expect_reject(ini, h, REJECT_NOT_SUPPORTED, "SNACK at ErrorRecoveryLevel 0")
    ini.ping()
    h = bhs(OP_LOGIN, immediate=True, flags=0x87, itt=ini.itt(), f24=ini.cmdsn,
            f28=ini.exp_statsn)
    h[8:14] = b"\x80\x12\x34\x56\x00\x01"
    text = b"InitiatorName=iqn.2026-11.io.twinlun:test-raw\0"
    h[5:8] = struct.pack(">I", len(text))[1:]
    ini.send_raw(h, data=text)
    expect_reject(ini, h, REJECT_PROTOCOL_ERROR, "Login request in full feature phase")
    ini.ping()
    ini.logout()
    check(count_lines(d.log(), r"warn .*SNACK") == 1,
          "want one log line for the SNACK:\n" + d.log())
    check(count_lines(d.log(), r"Login request in full feature phase") == 1,
          "want one log line for the Login in full feature phase:\n" + d.log())


def main(args):
    d = Daemon(args.twinlund)
    try:
        d.start()
        d.run_cases((unknown_opcodes, ahs_cases, oversized_segment, header_digest, data_digest,
                     snack_and_login))
        d.stop_clean(allowed=[r"header digest error", r"data digest error"])
    finally:
        d.cleanup()


if __name__ == "__main__":
    run_main(main)
