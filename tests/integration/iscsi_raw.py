"""Shared pieces of the integration tests (Python 3 standard library only).

- Daemon: starts twinlund on a free port in a temporary state directory, reads its log, and
  stops it with SIGTERM, insisting on exit status 0 and no sanitizer report.
- Initiator: a raw-socket iSCSI initiator (RFC 7143) that logs in (AuthMethod=None, CHAP MD5,
  mutual CHAP), negotiates any key (digests included: CRC32C is implemented here), and sends
  arbitrary, possibly malformed, PDUs.
- check(): a failed expectation ends the test with a clear message.
"""

import argparse
import hashlib
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import traceback

TARGET_IQN = "iqn.2026-11.io.twinlun:default"
INITIATOR_IQN = "iqn.2026-11.io.twinlun:test-raw"
LUN_BYTES = 1 << 30
BLOCK = 512

# opcodes
OP_NOP_OUT, OP_SCSI_CMD, OP_TMF, OP_LOGIN, OP_TEXT, OP_DATA_OUT, OP_LOGOUT = 0, 1, 2, 3, 4, 5, 6
OP_SNACK = 0x10
OP_NOP_IN, OP_SCSI_RSP, OP_TMF_RSP, OP_LOGIN_RSP, OP_TEXT_RSP = 0x20, 0x21, 0x22, 0x23, 0x24
OP_DATA_IN, OP_LOGOUT_RSP, OP_R2T, OP_ASYNC, OP_REJECT = 0x25, 0x26, 0x31, 0x32, 0x3F
RSVD = 0xFFFFFFFF

# SCSI
STATUS_GOOD, STATUS_CHECK = 0x00, 0x02
KEY_ILLEGAL_REQUEST, KEY_ABORTED_COMMAND = 0x5, 0xB


class TestFailure(Exception):
    pass


def check(cond, msg):
    if not cond:
        raise TestFailure(msg)


def run_main(fn):
    """Runs fn(args) and turns failures into a non-zero exit with the reason on stderr."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--twinlund", required=True)
    ap.add_argument("--stamp", required=True)
    args = ap.parse_args()
    try:
        fn(args)
    except TestFailure as e:
        print("FAIL: %s" % e, file=sys.stderr)
        sys.exit(1)
    except (socket.timeout, ConnectionClosed, LoginFailed) as e:
        traceback.print_exc()
        print("FAIL: %s: %s (the target did not answer as expected)" % (type(e).__name__, e),
              file=sys.stderr)
        sys.exit(1)
    print("PASS")


# ---------------------------------------------------------------- CRC32C (Castagnoli)

def _crc_table():
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_CRC_TABLE = _crc_table()


def crc32c(data):
    crc = 0xFFFFFFFF
    t = _CRC_TABLE
    for b in data:
        crc = t[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


assert crc32c(b"123456789") == 0xE3069283  # the standard check value
# RFC 7143 B.4: 32 bytes of zeros -> aa 36 91 8a on the wire
assert struct.pack("<I", crc32c(bytes(32))) == bytes.fromhex("aa36918a")


def digest(data):
    """A header or data digest as it goes on the wire (least significant byte first)."""
    return struct.pack("<I", crc32c(data))


def pad4(n):
    return (4 - n % 4) % 4


# ---------------------------------------------------------------- the daemon

class Daemon:
    """One twinlund with its own state directory and log."""

    def __init__(self, binary, config=None, state_dir=None, tmp=None, metrics="off"):
        self.binary = binary
        # the built-in default serves metrics on 9470: tests running side by side would clash
        self.metrics = metrics
        # TWL_TEST_TMPDIR=/dev/shm puts the LUN in memory, where the target does its I/O inline
        self.tmp = tmp or tempfile.mkdtemp(prefix="twl-it-", dir=os.environ.get("TWL_TEST_TMPDIR"))
        self.state_dir = state_dir or os.path.join(self.tmp, "state")
        self.config = config
        self.proc = None
        self.port = None
        self.log_path = None
        self.runs = 0

    def start(self):
        self.runs += 1
        self.log_path = os.path.join(self.tmp, "twinlund.%d.log" % self.runs)
        cmd = [self.binary, "--port", "0"]
        if self.config:
            cmd += ["--config", self.config]
        else:
            cmd += ["--state-dir", self.state_dir, "--metrics-listen", self.metrics]
        self.logf = open(self.log_path, "wb")
        self.proc = subprocess.Popen(cmd, stdout=self.logf, stderr=subprocess.STDOUT)
        deadline = time.time() + 20
        while time.time() < deadline:
            m = re.search(r"listening on [^ ]*:(\d+)", self.log())
            if m:
                self.port = int(m.group(1))
                return self
            if self.proc.poll() is not None:
                raise TestFailure("twinlund exited with %s before listening:\n%s" %
                                  (self.proc.returncode, self.log()))
            time.sleep(0.05)
        raise TestFailure("twinlund did not log 'listening on' within 20 s:\n" + self.log())

    def log(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def all_logs(self):
        out = ""
        for i in range(1, self.runs + 1):
            with open(os.path.join(self.tmp, "twinlund.%d.log" % i), "rb") as f:
                out += f.read().decode("utf-8", "replace")
        return out

    def url(self, lun=0, target=TARGET_IQN, user=None, secret=None, query=""):
        cred = "%s%%%s@" % (user, secret) if user else ""
        return "iscsi://%s127.0.0.1:%d/%s/%d%s" % (cred, self.port, target, lun, query)

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def terminate(self):
        """Sends SIGTERM now; stop() collects the exit status."""
        check(self.alive(), "twinlund died before the end of the test (exit %s):\n%s" %
              (self.proc.returncode if self.proc else None, self.log()))
        self.proc.send_signal(signal.SIGTERM)
        self.terminated = True

    def stop(self):
        """SIGTERM; the daemon must drain and exit 0 with no sanitizer report."""
        if not getattr(self, "terminated", False):
            self.terminate()
        self.terminated = False
        try:
            rc = self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise TestFailure("twinlund did not exit within 30 s of SIGTERM:\n" + self.log())
        self.logf.close()
        log = self.log()
        check(rc == 0, "twinlund exited %d after SIGTERM (want 0):\n%s" % (rc, log))
        check("Sanitizer" not in log and "runtime error:" not in log,
              "sanitizer report in the daemon log:\n" + log)
        check(re.search(r"\bstopped\b", log), "no 'stopped' line after SIGTERM:\n" + log)
        self.proc = None

    def kill(self):
        if self.alive():
            self.proc.kill()
            self.proc.wait()

    def cleanup(self):
        self.kill()
        if os.environ.get("TWL_KEEP_TMP"):
            print("kept %s" % self.tmp)
            return
        shutil.rmtree(self.tmp, ignore_errors=True)

    def run_cases(self, cases):
        """Runs each case(self) in turn, naming the case in any failure; the daemon must
        survive every one."""
        for case in cases:
            try:
                case(self)
            except TestFailure as e:
                raise TestFailure("%s: %s" % (case.__name__, e)) from e
            except Exception as e:  # timeouts, a dropped connection: name the case
                raise TestFailure("%s: %s: %s\n%s" % (case.__name__, type(e).__name__, e,
                                                      self.log())) from e
            check(self.alive(), "twinlund died during %s:\n%s" % (case.__name__, self.log()))

    def stop_clean(self, allowed=()):
        """Stops the daemon (SIGTERM, exit 0) and requires a log without unexpected errors."""
        self.stop()
        bad = self.error_lines(allowed)
        check(not bad, "unexpected error lines in the daemon log:\n" + "\n".join(bad))

    def error_lines(self, allowed=()):
        """Log lines at error level or mentioning 'error' that match none of allowed."""
        bad = []
        for line in self.all_logs().splitlines():
            if re.search(r"\berror\b", line, re.I) and not any(re.search(a, line) for a in allowed):
                bad.append(line)
        return bad


def write_config(path, state_dir, targets=None, discovery_auth=None, extra_iscsi=""):
    """A config file for tests. targets: list of dicts with iqn, auth (dict or None), direct
    (O_DIRECT, default false), extra (more settings of the target, as text). The
    port in it is a placeholder: Daemon passes --port 0."""
    if targets is None:
        targets = [{"iqn": TARGET_IQN}]

    def auth_block(name, a):
        if not a:
            return ""
        body = "".join('%s = "%s"; ' % (k, v) for k, v in a.items())
        return "%s = { %s};\n" % (name, body)

    tgts = []
    for i, t in enumerate(targets):
        tgts.append('{ iqn = "%s"; %s %s luns = ( { id = 0; path = "lun%d.img"; size = "64M"; '
                    'create = true; direct = %s; } ); }' %
                    (t["iqn"], auth_block("auth", t.get("auth")), t.get("extra", ""), i,
                     "true" if t.get("direct") else "false"))
    text = ('node = { state_dir = "%s"; };\nlog = { level = "info"; };\n'
            'iscsi = { listen = "127.0.0.1:3260"; %s %s};\ntargets = ( %s );\n' %
            (state_dir, auth_block("discovery_auth", discovery_auth), extra_iscsi,
             ",\n".join(tgts)))
    with open(path, "w") as f:
        f.write(text)
    return path


def run(cmd, timeout=120):
    """Runs a command, returns (exit status, stdout+stderr)."""
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout)
    return p.returncode, p.stdout.decode("utf-8", "replace")


# ---------------------------------------------------------------- PDUs

class PDU:
    def __init__(self, bhs, ahs=b"", data=b""):
        self.bhs = bytes(bhs)
        self.ahs = ahs
        self.data = data

    @property
    def opcode(self):
        return self.bhs[0] & 0x3F

    @property
    def flags(self):
        return self.bhs[1]

    def u32(self, off):
        return struct.unpack(">I", self.bhs[off:off + 4])[0]

    @property
    def itt(self):
        return self.u32(16)

    @property
    def ttt(self):
        return self.u32(20)

    @property
    def statsn(self):
        return self.u32(24)

    @property
    def exp_cmdsn(self):
        return self.u32(28)

    @property
    def max_cmdsn(self):
        return self.u32(32)

    # Reject
    @property
    def reason(self):
        return self.bhs[2]

    # SCSI Response / Data-In with status
    @property
    def status(self):
        return self.bhs[3]

    def sense(self):
        """(key, asc, ascq) of a SCSI Response's sense data, or None."""
        if len(self.data) < 2:
            return None
        slen = struct.unpack(">H", self.data[:2])[0]
        s = self.data[2:2 + slen]
        if len(s) >= 14 and (s[0] & 0x7F) in (0x70, 0x71):
            return (s[2] & 0xF, s[12], s[13])
        if len(s) >= 4 and (s[0] & 0x7F) in (0x72, 0x73):
            return (s[1] & 0xF, s[2], s[3])
        return None

    # Login response
    @property
    def login_status(self):
        return struct.unpack(">H", self.bhs[36:38])[0]

    def text(self):
        return parse_text(self.data)

    def __repr__(self):
        return "PDU(op=0x%02x flags=0x%02x b2=0x%02x b3=0x%02x itt=0x%08x dsl=%d)" % (
            self.opcode, self.flags, self.bhs[2], self.bhs[3], self.itt, len(self.data))


def parse_text(data):
    out = {}
    for pair in data.split(b"\0"):
        if not pair:
            continue
        k, _, v = pair.decode("utf-8", "replace").partition("=")
        out.setdefault(k, []).append(v)
    return {k: v[0] if len(v) == 1 else v for k, v in out.items()}


def make_text(pairs):
    return b"".join(("%s=%s" % (k, v)).encode() + b"\0" for k, v in pairs)


def bhs(opcode, immediate=False, flags=0x80, b2=0, b3=0, ahs_len=0, dsl=0, lun=0, itt=RSVD,
        f20=0, f24=0, f28=0, f32=0, f36=0, f40=0, f44=0, cdb=None):
    b = bytearray(48)
    b[0] = opcode | (0x40 if immediate else 0)
    b[1] = flags
    b[2] = b2
    b[3] = b3
    b[4] = ahs_len
    b[5:8] = struct.pack(">I", dsl)[1:]
    b[8:16] = struct.pack(">Q", lun << 48 if lun < 256 else 0)
    struct.pack_into(">IIIII", b, 16, itt, f20, f24, f28, f32)
    if cdb is not None:
        b[32:32 + len(cdb)] = cdb
    else:
        struct.pack_into(">III", b, 36, f36, f40, f44)
    return b


def cdb_rw16(write, lba, blocks):
    return struct.pack(">BBQIBB", 0x8A if write else 0x88, 0, lba, blocks, 0, 0)


class ConnectionClosed(Exception):
    pass


class LoginFailed(Exception):
    def __init__(self, status, pdu):
        super().__init__("login status 0x%04x" % status)
        self.status = status
        self.pdu = pdu


# ---------------------------------------------------------------- the initiator

class Initiator:
    def __init__(self, port, host="127.0.0.1", timeout=10.0):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.timeout = timeout
        self.hd = False
        self.dd = False
        self.cmdsn = 1
        self.exp_statsn = 0
        self.next_itt = 0x10
        self.params = {}
        self.tsih = 0
        self.buf = b""

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def itt(self):
        self.next_itt += 1
        return self.next_itt

    # -- wire

    def send_raw(self, hdr, ahs=b"", data=b"", bad_hdigest=False, bad_ddigest=False,
                 hdigest=None, ddigest=None):
        """Sends one PDU. DataSegmentLength is taken from hdr as given (set it yourself);
        digests follow what was negotiated unless hdigest/ddigest force them on or off."""
        hdr = bytes(hdr)
        use_hd = self.hd if hdigest is None else hdigest
        use_dd = self.dd if ddigest is None else ddigest
        out = hdr + ahs
        if use_hd:
            d = bytearray(digest(hdr + ahs))
            if bad_hdigest:
                d[0] ^= 0xFF
            out += bytes(d)
        if data:
            padded = data + bytes(pad4(len(data)))
            out += padded
            if use_dd:
                d = bytearray(digest(padded))
                if bad_ddigest:
                    d[0] ^= 0xFF
                out += bytes(d)
        self.sock.sendall(out)

    def send(self, hdr, data=b"", **kw):
        hdr = bytearray(hdr)
        hdr[5:8] = struct.pack(">I", len(data))[1:]
        self.send_raw(hdr, data=data, **kw)

    def _read(self, n, timeout):
        while len(self.buf) < n:
            self.sock.settimeout(timeout)
            try:
                chunk = self.sock.recv(1 << 20)
            except socket.timeout:
                raise
            except (ConnectionResetError, BrokenPipeError):
                chunk = b""
            if not chunk:
                raise ConnectionClosed("connection closed by the target")
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def recv(self, timeout=None, answer_pings=True):
        """Reads one PDU, checking the target's digests. Target pings are answered and skipped."""
        timeout = self.timeout if timeout is None else timeout
        while True:
            hdr = self._read(48, timeout)
            ahs = self._read(hdr[4] * 4, timeout) if hdr[4] else b""
            if self.hd:
                d = self._read(4, timeout)
                check(d == digest(hdr + ahs), "bad header digest from the target on %r" %
                      PDU(hdr))
            dsl = struct.unpack(">I", b"\0" + hdr[5:8])[0]
            data = b""
            if dsl:
                padded = self._read(dsl + pad4(dsl), timeout)
                data = padded[:dsl]
                if self.dd:
                    d = self._read(4, timeout)
                    check(d == digest(padded), "bad data digest from the target on %r" %
                          PDU(hdr))
            p = PDU(hdr, ahs, data)
            if p.opcode in (OP_SCSI_RSP, OP_NOP_IN, OP_TEXT_RSP, OP_LOGOUT_RSP, OP_REJECT,
                            OP_TMF_RSP, OP_ASYNC, OP_LOGIN_RSP) or \
                    (p.opcode == OP_DATA_IN and p.flags & 0x01):
                if p.itt != RSVD or p.opcode != OP_NOP_IN:
                    self.exp_statsn = (p.statsn + 1) & 0xFFFFFFFF
            if p.opcode == OP_REJECT:
                # a rejected PDU may or may not have consumed its CmdSN: follow the target
                self.cmdsn = p.exp_cmdsn
            if answer_pings and p.opcode == OP_NOP_IN and p.itt == RSVD:
                self.send(bhs(OP_NOP_OUT, immediate=True, itt=RSVD, f20=p.ttt, f24=self.cmdsn,
                              f28=self.exp_statsn))
                continue
            return p

    def expect(self, opcode, timeout=None, what=""):
        p = self.recv(timeout)
        check(p.opcode == opcode, "%sexpected opcode 0x%02x, got %r%s" % (
            what + ": " if what else "", opcode, p,
            " reason 0x%02x" % p.reason if p.opcode == OP_REJECT else ""))
        return p

    def expect_closed(self, timeout=5.0, what="connection"):
        """The target must close the connection (anything it sends first is ignored)."""
        deadline = time.time() + timeout
        try:
            while time.time() < deadline:
                self.recv(timeout=max(0.1, deadline - time.time()))
        except ConnectionClosed:
            return
        except socket.timeout:
            pass
        raise TestFailure("%s: the target did not close the connection within %.0f s" %
                          (what, timeout))

    def expect_silence(self, timeout=0.5):
        try:
            p = self.recv(timeout=timeout)
        except socket.timeout:
            return
        raise TestFailure("unexpected PDU %r" % p)

    # -- login

    def login_pdu(self, csg, nsg, transit, pairs, isid, itt, cont=False):
        flags = (0x80 if transit else 0) | (0x40 if cont else 0) | (csg << 2) | (nsg if transit else 0)
        h = bhs(OP_LOGIN, immediate=True, flags=flags, itt=itt, f24=self.cmdsn,
                f28=self.exp_statsn)
        h[8:14] = isid
        h[14:16] = struct.pack(">H", self.tsih)
        self.send(h, make_text(pairs))
        p = self.recv()
        check(p.opcode == OP_LOGIN_RSP, "expected a Login Response, got %r" % p)
        self.exp_statsn = (p.statsn + 1) & 0xFFFFFFFF
        if p.login_status != 0:
            raise LoginFailed(p.login_status, p)
        return p

    def login(self, initiator=INITIATOR_IQN, target=TARGET_IQN, discovery=False,
              isid=b"\x80\x12\x34\x56\x00\x01", chap=None, mutual=None, auth_offer=None,
              header_digest=False, data_digest=False, keys=None, skip_initiator_name=False,
              clear_ua=True):
        """Logs in to full feature phase. chap=(user, secret) authenticates with CHAP MD5;
        mutual=(user, secret) also challenges the target and verifies its answer. keys adds
        or overrides operational keys. Returns the operational keys the target answered."""
        itt = self.itt()
        first = []
        if not skip_initiator_name:
            first.append(("InitiatorName", initiator))
        if discovery:
            first.append(("SessionType", "Discovery"))
        else:
            first.append(("SessionType", "Normal"))
            if target is not None:
                first.append(("TargetName", target))
        self.answer = {}
        if auth_offer is None:
            auth_offer = "CHAP,None" if chap else "None"
        if chap:
            p = self.login_pdu(0, 1, False, first + [("AuthMethod", auth_offer)], isid, itt)
            t = p.text()
            check(t.get("AuthMethod") == "CHAP", "target chose AuthMethod %r" % t.get("AuthMethod"))
            p = self.login_pdu(0, 1, False, [("CHAP_A", "5")], isid, itt)
            t = p.text()
            check(t.get("CHAP_A") == "5", "target chose CHAP_A %r" % t.get("CHAP_A"))
            cid = int(t["CHAP_I"])
            challenge = bytes.fromhex(t["CHAP_C"][2:])
            resp = hashlib.md5(bytes([cid]) + chap[1].encode() + challenge).hexdigest()
            pairs = [("CHAP_N", chap[0]), ("CHAP_R", "0x" + resp)]
            if mutual:
                my_id = 77
                my_challenge = os.urandom(16)
                pairs += [("CHAP_I", str(my_id)), ("CHAP_C", "0x" + my_challenge.hex())]
            p = self.login_pdu(0, 1, True, pairs, isid, itt)
            t = p.text()
            if mutual:
                check(t.get("CHAP_N") == mutual[0], "target's CHAP_N %r, want %r" %
                      (t.get("CHAP_N"), mutual[0]))
                want = hashlib.md5(bytes([my_id]) + mutual[1].encode() + my_challenge).hexdigest()
                check(t.get("CHAP_R", "").lower() == "0x" + want,
                      "target's mutual CHAP_R %r is wrong (want 0x%s)" % (t.get("CHAP_R"), want))
                self.mutual_verified = True
            first = []
        else:
            p = self.login_pdu(0, 1, True, first + [("AuthMethod", auth_offer)], isid, itt)
            self.answer.update(p.text())
            first = []
        check(p.flags & 0x80 and p.flags & 3 == 1, "target did not move to the operational "
              "stage: flags 0x%02x" % p.flags)
        ops = {
            "HeaderDigest": "CRC32C" if header_digest else "None",
            "DataDigest": "CRC32C" if data_digest else "None",
            "MaxRecvDataSegmentLength": "262144",
            "ErrorRecoveryLevel": "0",
        }
        if not discovery:
            ops.update({"InitialR2T": "No", "ImmediateData": "Yes", "MaxBurstLength": "1048576",
                        "FirstBurstLength": "262144", "MaxOutstandingR2T": "1",
                        "DataPDUInOrder": "Yes", "DataSequenceInOrder": "Yes",
                        "MaxConnections": "1", "DefaultTime2Wait": "2",
                        "DefaultTime2Retain": "20"})
        ops.update(keys or {})
        p = self.login_pdu(1, 3, True, first + list(ops.items()), isid, itt)
        check(p.flags & 0x80 and p.flags & 3 == 3, "target did not move to full feature phase: "
              "flags 0x%02x" % p.flags)
        ans = p.text()
        self.answer.update(ans)
        self.tsih = struct.unpack(">H", p.bhs[14:16])[0]
        check(self.tsih != 0, "target assigned TSIH 0")
        self.cmdsn = p.exp_cmdsn
        self.hd = ans.get("HeaderDigest") == "CRC32C"
        self.dd = ans.get("DataDigest") == "CRC32C"
        check(self.hd == header_digest, "HeaderDigest answer %r" % ans.get("HeaderDigest"))
        check(self.dd == data_digest, "DataDigest answer %r" % ans.get("DataDigest"))
        self.params = ans
        self.mrdsl = int(ans.get("MaxRecvDataSegmentLength", 8192))
        if not discovery and clear_ua:
            self.clear_unit_attention()
        return ans

    def clear_unit_attention(self, lun=0):
        """TEST UNIT READY until it stops reporting unit attentions, as initiators do after
        login (a new I_T nexus starts with POWER ON, RESET OCCURRED). Returns how many."""
        for seen in range(9):
            p, _ = self.response(self.scsi_cmd(b"\0" * 6, lun=lun))
            if p.status != 0x02 or (p.sense() or (None,))[0] != 0x06:
                return seen
        raise TestFailure("LUN %d keeps reporting unit attentions" % lun)

    # -- full feature phase helpers

    def next_cmdsn(self):
        sn = self.cmdsn
        self.cmdsn = (self.cmdsn + 1) & 0xFFFFFFFF
        return sn

    def ping(self, data=b"ping", timeout=None):
        """NOP-Out that wants an answer; the NOP-In must echo ITT and data."""
        itt = self.itt()
        self.send(bhs(OP_NOP_OUT, itt=itt, f20=RSVD, f24=self.next_cmdsn(), f28=self.exp_statsn),
                  data)
        p = self.recv(timeout)
        check(p.opcode == OP_NOP_IN, "ping: expected NOP-In, got %r%s" % (
            p, " reason 0x%02x" % p.reason if p.opcode == OP_REJECT else ""))
        check(p.itt == itt, "NOP-In ITT 0x%08x, want 0x%08x" % (p.itt, itt))
        check(p.data == data, "NOP-In echoed %r, want %r" % (p.data, data))
        return p

    def scsi_cmd(self, cdb, edtl=0, read=False, write=False, data=b"", itt=None, lun=0,
                 final=True):
        """Sends a SCSI Command (data is immediate data). Returns its ITT."""
        itt = self.itt() if itt is None else itt
        flags = (0x80 if final else 0) | (0x40 if read else 0) | (0x20 if write else 0) | 1
        self.send(bhs(OP_SCSI_CMD, flags=flags, lun=lun, itt=itt, f20=edtl,
                      f24=self.next_cmdsn(), f28=self.exp_statsn, cdb=cdb.ljust(16, b"\0")),
                  data)
        return itt

    def data_out(self, itt, ttt, datasn, offset, data, final=True, lun=0, **kw):
        self.send(bhs(OP_DATA_OUT, flags=0x80 if final else 0, lun=lun, itt=itt, f20=ttt,
                      f28=self.exp_statsn, f36=datasn, f40=offset), data, **kw)

    def response(self, itt, timeout=None):
        """Collects Data-In until the command's status; returns (status PDU, data)."""
        data = b""
        while True:
            p = self.recv(timeout)
            if p.opcode == OP_DATA_IN and p.itt == itt:
                data += p.data
                if p.flags & 0x01:
                    return p, data
                continue
            check(p.opcode == OP_SCSI_RSP, "expected the response to ITT 0x%08x, got %r%s" % (
                itt, p, " reason 0x%02x" % p.reason if p.opcode == OP_REJECT else ""))
            check(p.itt == itt, "SCSI Response for ITT 0x%08x, want 0x%08x" % (p.itt, itt))
            return p, data

    def read16(self, lba, blocks):
        itt = self.scsi_cmd(cdb_rw16(False, lba, blocks), edtl=blocks * BLOCK, read=True)
        return self.response(itt)

    def write16(self, lba, payload):
        """A WRITE(16) honouring whatever was negotiated (immediate, unsolicited, R2T)."""
        blocks = len(payload) // BLOCK
        immediate = self.params.get("ImmediateData") == "Yes"
        initial_r2t = self.params.get("InitialR2T") == "Yes"
        first_burst = int(self.params.get("FirstBurstLength", 65536))
        seg = min(self.mrdsl, 8192 * 8)
        imm = payload[:min(seg, first_burst)] if immediate else b""
        itt = self.scsi_cmd(cdb_rw16(True, lba, blocks), edtl=len(payload), write=True, data=imm,
                            final=initial_r2t or len(imm) == len(payload) or
                            len(imm) >= first_burst)
        sent = len(imm)
        if not initial_r2t and sent < min(first_burst, len(payload)):
            end = min(first_burst, len(payload))
            sn = 0
            while sent < end:
                n = min(seg, end - sent)
                self.data_out(itt, RSVD, sn, sent, payload[sent:sent + n], final=sent + n == end)
                sent += n
                sn += 1
        while True:
            p = self.recv()
            if p.opcode == OP_R2T and p.itt == itt:
                off, want = p.u32(40), p.u32(44)
                sn = 0
                pos = off
                while pos < off + want:
                    n = min(seg, off + want - pos)
                    self.data_out(itt, p.ttt, sn, pos, payload[pos:pos + n],
                                  final=pos + n == off + want)
                    pos += n
                    sn += 1
                continue
            check(p.opcode == OP_SCSI_RSP and p.itt == itt,
                  "WRITE: expected R2T or response, got %r" % p)
            return p

    def text_request(self, pairs):
        itt = self.itt()
        self.send(bhs(OP_TEXT, itt=itt, f20=RSVD, f24=self.next_cmdsn(), f28=self.exp_statsn),
                  make_text(pairs))
        p = self.expect(OP_TEXT_RSP, what="Text request")
        check(p.itt == itt, "Text Response ITT mismatch")
        return p

    def logout(self):
        itt = self.itt()
        self.send(bhs(OP_LOGOUT, immediate=True, flags=0x80, itt=itt, f24=self.cmdsn,
                      f28=self.exp_statsn))
        p = self.expect(OP_LOGOUT_RSP, what="Logout")
        check(p.bhs[2] == 0, "Logout response 0x%02x" % p.bhs[2])
        self.expect_closed(what="after logout")
        self.close()


def expect_reject(ini, sent_hdr, reason, what):
    """The next PDU is a Reject with this reason carrying the rejected header."""
    p = ini.recv()
    check(p.opcode == OP_REJECT, "%s: expected Reject, got %r" % (what, p))
    check(p.reason == reason, "%s: Reject reason 0x%02x, want 0x%02x" % (what, p.reason, reason))
    check(len(p.data) >= 48 and p.data[:48] == bytes(sent_hdr[:48]),
          "%s: the Reject does not carry the rejected header" % what)
    return p


def expect_check_condition(p, key, asc, what, ascq=None):
    check(p.opcode == OP_SCSI_RSP, "%s: expected SCSI Response, got %r" % (what, p))
    check(p.bhs[2] == 0, "%s: iSCSI response 0x%02x, want 0 (completed at target)" %
          (what, p.bhs[2]))
    check(p.status == STATUS_CHECK, "%s: status 0x%02x, want CHECK CONDITION" % (what, p.status))
    s = p.sense()
    check(s is not None, "%s: CHECK CONDITION without sense data" % what)
    check(s[0] == key and s[1] == asc and (ascq is None or s[2] == ascq),
          "%s: sense key 0x%x ASC 0x%02x ASCQ 0x%02x, want key 0x%x ASC 0x%02x%s" %
          (what, s[0], s[1], s[2], key, asc, "" if ascq is None else " ASCQ 0x%02x" % ascq))


def count_lines(log, pattern):
    return len([l for l in log.splitlines() if re.search(pattern, l)])
