#!/usr/bin/env python3
"""Writes the seed corpus of fuzz_login (tests/fuzz/corpus/login/): login exchanges in the
harness's format, byte 0 choosing the configuration (fuzz_login.c), then
[2-byte length][48-byte BHS + data segment] per Login Request. "CHAP_R=@" asks the harness to
put in the right answer to the target's challenge. Run from anywhere; rewrites the files."""
import os
import struct

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "login")

CHAP, MUTUAL, DISC_CHAP, DIGESTS, TWO = 0x01, 0x02, 0x04, 0x08, 0x10
TARGET = "iqn.2026-11.io.twinlun:fuzz"
INITIATOR = "iqn.1994-05.com.redhat:client1"
USER = "iqn.1994-05.com.redhat:client1"
OPERATIONAL = [
    "HeaderDigest=None", "DataDigest=None", "MaxRecvDataSegmentLength=262144",
    "MaxBurstLength=1048576", "FirstBurstLength=262144", "InitialR2T=No", "ImmediateData=Yes",
    "MaxOutstandingR2T=1", "MaxConnections=1", "ErrorRecoveryLevel=0", "DefaultTime2Wait=5",
    "DefaultTime2Retain=0", "DataPDUInOrder=Yes", "DataSequenceInOrder=Yes",
    "IFMarker=No", "OFMarker=No",
]


def text(pairs):
    return b"".join(p.encode() + b"\0" for p in pairs)


def pdu(pairs, csg, nsg, transit=True, cont=False, itt=1, version_min=0, tsih=0, raw=None):
    data = raw if raw is not None else text(pairs)
    bhs = bytearray(48)
    bhs[0] = 0x43  # immediate, Login Request
    bhs[1] = (0x80 if transit else 0) | (0x40 if cont else 0) | (csg << 2) | nsg
    bhs[3] = version_min
    bhs[5:8] = len(data).to_bytes(3, "big")
    bhs[8:14] = bytes([0x80, 0x12, 0x34, 0x56, 0x00, 0x01])  # ISID
    bhs[14:16] = struct.pack(">H", tsih)
    bhs[16:20] = struct.pack(">I", itt)
    bhs[20:22] = struct.pack(">H", 0)  # CID
    bhs[24:28] = struct.pack(">I", 1)  # CmdSN
    rec = bytes(bhs) + data
    return struct.pack(">H", len(rec)) + rec


def first(extra=(), session="Normal", target=TARGET):
    keys = ["InitiatorName=" + INITIATOR, "InitiatorAlias=fuzzhost", "SessionType=" + session]
    if target is not None and session == "Normal":
        keys.append("TargetName=" + target)
    return keys + list(extra)


SEEDS = {
    # no authentication: security -> operational -> full feature
    "none_two_stages": (0, [pdu(first(["AuthMethod=None"]), 0, 1),
                            pdu(OPERATIONAL, 1, 3, itt=2)]),
    # straight into operational, one PDU to full feature
    "none_operational_only": (0, [pdu(first(OPERATIONAL), 1, 3)]),
    "none_security_to_full": (0, [pdu(first(["AuthMethod=None"] + OPERATIONAL), 0, 3)]),
    "discovery": (0, [pdu(first(["AuthMethod=None"], session="Discovery"), 0, 1),
                      pdu(OPERATIONAL, 1, 3, itt=2)]),
    "digests": (DIGESTS, [pdu(first(["HeaderDigest=CRC32C,None", "DataDigest=CRC32C"]), 1, 3)]),
    # CHAP one-way: offer, algorithm, response
    "chap_oneway": (CHAP, [pdu(first(["AuthMethod=CHAP,None"]), 0, 1, transit=False),
                           pdu(["CHAP_A=5"], 0, 1, transit=False, itt=2),
                           pdu(["CHAP_N=" + USER, "CHAP_R=@"], 0, 1, itt=3),
                           pdu(OPERATIONAL, 1, 3, itt=4)]),
    "chap_algorithm_in_first": (CHAP, [pdu(first(["AuthMethod=CHAP", "CHAP_A=7,5"]), 0, 1,
                                           transit=False),
                                       pdu(["CHAP_N=" + USER, "CHAP_R=@"], 0, 3, itt=2)]),
    "chap_mutual": (CHAP | MUTUAL, [
        pdu(first(["AuthMethod=CHAP"]), 0, 1, transit=False),
        pdu(["CHAP_A=5"], 0, 1, transit=False, itt=2),
        pdu(["CHAP_N=" + USER, "CHAP_R=@", "CHAP_I=77",
             "CHAP_C=0x0123456789abcdef0123456789abcdef"], 0, 1, itt=3),
        pdu(OPERATIONAL, 1, 3, itt=4)]),
    "chap_mutual_base64": (CHAP | MUTUAL, [
        pdu(first(["AuthMethod=CHAP"]), 0, 1, transit=False),
        pdu(["CHAP_A=5"], 0, 1, transit=False, itt=2),
        pdu(["CHAP_N=" + USER, "CHAP_R=@", "CHAP_I=3", "CHAP_C=0bASNFZ4mrze8BI0VniavN7w=="],
            0, 3, itt=3)]),
    "chap_mutual_reflected": (CHAP | MUTUAL, [
        pdu(first(["AuthMethod=CHAP"]), 0, 1, transit=False),
        pdu(["CHAP_A=5"], 0, 1, transit=False, itt=2),
        pdu(["CHAP_N=" + USER, "CHAP_R=@", "CHAP_I=1", "CHAP_C=0xabc"], 0, 1, itt=3)]),
    "chap_wrong_response": (CHAP, [
        pdu(first(["AuthMethod=CHAP"]), 0, 1, transit=False),
        pdu(["CHAP_A=5"], 0, 1, transit=False, itt=2),
        pdu(["CHAP_N=" + USER, "CHAP_R=0x00112233445566778899aabbccddeeff"], 0, 1, itt=3)]),
    "chap_b64_response": (CHAP, [
        pdu(first(["AuthMethod=CHAP"]), 0, 1, transit=False),
        pdu(["CHAP_A=5"], 0, 1, transit=False, itt=2),
        pdu(["CHAP_N=" + USER, "CHAP_R=0bABEiM0RVZneImaq7zN3u/w=="], 0, 1, itt=3)]),
    "chap_skipped": (CHAP, [pdu(first(OPERATIONAL), 1, 3)]),
    "chap_none_offered": (CHAP, [pdu(first(["AuthMethod=None"]), 0, 1)]),
    "discovery_chap": (DISC_CHAP, [
        pdu(first(["AuthMethod=CHAP"], session="Discovery"), 0, 1, transit=False),
        pdu(["CHAP_A=5"], 0, 1, transit=False, itt=2),
        pdu(["CHAP_N=disc", "CHAP_R=@"], 0, 1, itt=3),
        pdu(["MaxRecvDataSegmentLength=8192", "InitialR2T=Yes"], 1, 3, itt=4)]),
    # text split over PDUs with the C bit
    "continued": (0, [pdu(None, 0, 1, transit=False, cont=True,
                          raw=text(first(["AuthMethod=None"]))[:30]),
                      pdu(None, 0, 1, raw=text(first(["AuthMethod=None"]))[30:]),
                      pdu(OPERATIONAL[:8], 1, 1, transit=False, itt=2),
                      pdu(OPERATIONAL[8:], 1, 3, itt=3)]),
    "second_target": (TWO, [pdu(first(OPERATIONAL, target="iqn.2026-11.io.twinlun:OTHER"), 1, 3)]),
    # near-valid refusals
    "unknown_target": (0, [pdu(first(target="iqn.2026-11.io.twinlun:nope"), 1, 3)]),
    "no_target_name": (0, [pdu(first(target=None), 1, 3)]),
    "no_initiator": (0, [pdu(["TargetName=" + TARGET], 1, 3)]),
    "bad_session_type": (0, [pdu(first(session="Bogus"), 1, 3)]),
    "version_min": (0, [pdu(first(), 1, 3, version_min=1)]),
    "bad_transition": (0, [pdu(first(), 1, 0)]),
    "transit_and_continue": (0, [pdu(first(), 0, 1, cont=True)]),
    "tsih_reinstatement": (0, [pdu(first(OPERATIONAL), 1, 3, tsih=5)]),
    "bad_values": (0, [pdu(first(["MaxRecvDataSegmentLength=100", "MaxBurstLength=0x10",
                                  "InitialR2T=maybe", "MaxOutstandingR2T=0",
                                  "DefaultTime2Wait=9999", "ErrorRecoveryLevel=7",
                                  "iSCSIProtocolLevel=2", "X-com.example.Key=1",
                                  "HeaderDigest=MD5"]), 1, 3)]),
    "target_key_from_initiator": (0, [pdu(first(["TargetAlias=evil"]), 1, 3)]),
    "security_key_late": (0, [pdu(first(["AuthMethod=None"]), 0, 1),
                              pdu(["CHAP_A=5"], 1, 3, itt=2)]),
    "malformed_text": (0, [pdu(None, 1, 3, raw=b"InitiatorName" + b"\0" + b"=x\0")]),
    "padded_text": (0, [pdu(None, 1, 3, raw=text(first(OPERATIONAL)) + b"\0\0\0")]),
    "unterminated": (0, [pdu(None, 1, 3, raw=text(first())[:-1])]),
}


def main():
    os.makedirs(HERE, exist_ok=True)
    for name, (cfg, pdus) in SEEDS.items():
        with open(os.path.join(HERE, name), "wb") as f:
            f.write(bytes([cfg]) + b"".join(pdus))


if __name__ == "__main__":
    main()
