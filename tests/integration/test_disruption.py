#!/usr/bin/env python3
"""Disruption (issue 2, "What must hold" 3, and the concurrency the issue asks for): connections
dropped mid-command (waiting for R2T data, in the middle of a Data-Out, with reads in flight and
unread) leave the daemon running and other sessions working; four sessions doing I/O in
parallel on different LBA ranges all verify; a SIGTERM with a session still logged in asks it to
log out (Async Message) and still exits 0; the log has no error lines. Connections that never
finish their login are dropped after iscsi.login_timeout."""

import os
import re
import socket
import struct
import subprocess
import time

from iscsi_raw import (BLOCK, OP_ASYNC, OP_R2T, STATUS_GOOD, TARGET_IQN, Daemon, Initiator,
                       cdb_rw16, check, run, run_main, write_config)


def drop_cases(d):
    # 1. a WRITE waiting for R2T data
    ini = Initiator(d.port)
    ini.login(keys={"InitialR2T": "Yes", "ImmediateData": "No"})
    itt = ini.scsi_cmd(cdb_rw16(True, 100, 256), edtl=256 * BLOCK, write=True)
    r2t = ini.expect(OP_R2T, what="WRITE before the drop")
    check(r2t.itt == itt, "R2T for another ITT")
    ini.close()

    # 2. in the middle of a Data-Out's data segment
    ini = Initiator(d.port)
    ini.login(keys={"InitialR2T": "Yes", "ImmediateData": "No"})
    itt = ini.scsi_cmd(cdb_rw16(True, 100, 256), edtl=256 * BLOCK, write=True)
    r2t = ini.expect(OP_R2T, what="WRITE before the drop")
    h = bytearray(48)
    h[0] = 0x05
    h[1] = 0x80
    struct.pack_into(">IIIIII", h, 16, itt, r2t.ttt, 0, ini.exp_statsn, 0, 0)
    h[36:40] = struct.pack(">I", 0)
    h[40:44] = struct.pack(">I", 0)
    h[5:8] = struct.pack(">I", 65536)[1:]
    ini.sock.sendall(bytes(h) + b"\x11" * 30000)
    ini.close()

    # 3. immediate data cut short inside the command PDU
    ini = Initiator(d.port)
    ini.login()
    h = bytearray(48)
    h[0] = 0x01
    h[1] = 0xA1
    h[5:8] = struct.pack(">I", 65536)[1:]
    struct.pack_into(">IIII", h, 16, ini.itt(), 65536, ini.cmdsn, ini.exp_statsn)
    h[32:48] = cdb_rw16(True, 300, 128)
    ini.sock.sendall(bytes(h) + b"\x22" * 1000)
    ini.close()

    # 4. big reads in flight whose data nobody reads, then a reset
    ini = Initiator(d.port)
    ini.login()
    for i in range(8):
        ini.scsi_cmd(cdb_rw16(False, i * 16384, 16384), edtl=16384 * BLOCK, read=True)
    time.sleep(0.2)
    ini.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    ini.close()  # RST

    # 5. mid-login
    s = socket.create_connection(("127.0.0.1", d.port))
    s.sendall(b"\x43\x87" + bytes(20))
    s.close()

    time.sleep(0.3)
    check(d.alive(), "twinlund died after dropped connections:\n" + d.log())
    ini = Initiator(d.port)
    ini.login()
    ini.ping()
    data = b"after the drops".ljust(BLOCK, b".") * 4
    p = ini.write16(100, data)
    check(p.status == STATUS_GOOD, "WRITE after dropped connections: status 0x%02x" % p.status)
    p, got = ini.read16(100, 4)
    check(got == data, "data written after the drops reads back wrong")
    ini.logout()


def pipelined(d):
    """40 WRITEs sent back to back (within the CmdSN window), then their responses."""
    ini = Initiator(d.port)
    ini.login()
    itts = {}
    for i in range(40):
        data = (b"pipe%04d" % i).ljust(BLOCK, b"-") * 8
        itts[ini.scsi_cmd(cdb_rw16(True, 20000 + i * 8, 8), edtl=len(data), write=True,
                          data=data)] = data
    for _ in range(40):
        p = ini.recv()
        check(p.opcode == 0x21 and p.itt in itts and p.status == STATUS_GOOD,
              "pipelined WRITE: %r status 0x%02x" % (p, p.status))
        itts[p.itt] = None
    check(all(v is None for v in itts.values()), "a pipelined WRITE got no response")
    for i in range(40):
        p, got = ini.read16(20000 + i * 8, 8)
        check(got == (b"pipe%04d" % i).ljust(BLOCK, b"-") * 8, "pipelined WRITE %d lost" % i)
    ini.logout()


def parallel_io(d, stamp):
    # four sessions, four seeds, four disjoint ranges of the LUN (the last one ends at its end)
    quarter = (1 << 30) // BLOCK // 4
    procs = []
    for i in range(4):
        rng = "%d:%d" % (i * quarter, quarter)
        extra = ["--header-digest"] if i == 1 else ["--r2t"] if i == 2 else []
        cmd = [stamp] + extra + ["--range", rng, "write", d.url(), str(100 + i), "6000"]
        procs.append((cmd, subprocess.Popen(cmd, stdout=subprocess.PIPE,
                                            stderr=subprocess.STDOUT)))
    for cmd, p in procs:
        out = p.communicate(timeout=120)[0].decode()
        check(p.returncode == 0, "parallel %s failed:\n%s" % (" ".join(cmd), out))
    procs = []
    for i in range(4):
        rng = "%d:%d" % (i * quarter, quarter)
        cmd = [stamp, "--range", rng, "verify", d.url(), str(100 + i), "6000"]
        procs.append((cmd, subprocess.Popen(cmd, stdout=subprocess.PIPE,
                                            stderr=subprocess.STDOUT)))
    for cmd, p in procs:
        out = p.communicate(timeout=120)[0].decode()
        check(p.returncode == 0, "parallel %s failed:\n%s" % (" ".join(cmd), out))
    # the ranges really were disjoint and distinct: a neighbour's seed does not verify
    rc, out = run([stamp, "--range", "0:%d" % quarter, "verify", d.url(), "101", "6000"])
    check(rc != 0, "range 0 verified with range 1's seed:\n" + out)


def shutdown_with_session(d):
    ini = Initiator(d.port)
    ini.login()
    ini.ping()
    d.terminate()
    p = ini.recv(timeout=10)
    check(p.opcode == OP_ASYNC and p.bhs[36] == 1,
          "on SIGTERM the target should request logout (Async event 1), got %r" % p)
    # this initiator does not log out: the drain deadline must still end the daemon cleanly
    ini.expect_closed(timeout=15, what="drain deadline")
    ini.close()


def login_timeout(binary):
    """Sockets that never finish logging in are dropped after iscsi.login_timeout; a session
    that logs in meanwhile is not disturbed."""
    d = Daemon(binary)
    d.config = write_config(os.path.join(d.tmp, "lt.conf"), d.state_dir,
                            targets=[{"iqn": TARGET_IQN}], extra_iscsi="login_timeout = 1;")
    try:
        d.start()
        silent = socket.create_connection(("127.0.0.1", d.port), timeout=10)
        partial = socket.create_connection(("127.0.0.1", d.port), timeout=10)
        partial.sendall(b"\x43" + bytes(9))  # 10 bytes of a 48-byte Login header
        good = Initiator(d.port)
        good.login()
        start = time.monotonic()
        for s in (silent, partial):
            check(s.recv(100) == b"", "the target did not close a connection stuck in login")
        waited = time.monotonic() - start
        check(waited < 5, "stuck logins were dropped only after %.1f s (login_timeout 1)" % waited)
        good.ping()
        good.close()
        silent.close()
        partial.close()
        n = len(re.findall(r"warn .*login not completed within 1 s", d.log()))
        check(n == 2, "want 2 log lines about login timeouts, got %d:\n%s" % (n, d.log()))
        d.stop_clean()
    finally:
        d.cleanup()


def main(args):
    d = Daemon(args.twinlund)
    try:
        d.start()
        drop_cases(d)
        pipelined(d)
        parallel_io(d, args.stamp)
        drop_cases(d)  # and once more, on a daemon that has done real work
        check(d.alive(), "twinlund died:\n" + d.log())
        d.stop_clean()

        d.start()
        rc, out = run([args.stamp, "--range", "0:%d" % ((1 << 30) // BLOCK // 4), "verify",
                       d.url(), "100", "6000"])
        check(rc == 0, "parallel-written data did not survive a restart:\n" + out)
        shutdown_with_session(d)
        d.stop_clean()
    finally:
        d.cleanup()
    login_timeout(args.twinlund)


if __name__ == "__main__":
    run_main(main)
