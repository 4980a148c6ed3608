#!/usr/bin/env python3
"""twinlund speaks the service manager's notify protocol (sd_notify(3)), checked with a
datagram socket of our own standing in for systemd's:

- READY=1 comes once the portal accepts connections (a connection to the port named in its
  STATUS= line, made right after READY arrives, succeeds), with STATUS=serving 1 LUN on
  127.0.0.1:PORT and MAINPID= the daemon's pid; nothing but watchdog pings before it;
- with WATCHDOG_USEC=200000, at least 2 (and not a flood: at most 25) WATCHDOG=1 pings in the
  second after READY;
- SIGTERM: STOPPING=1 exactly once, then exit 0 (Daemon.stop: clean log, 'stopped');
- every datagram comes from the daemon's own pid (systemd's default NotifyAccess=main);
- a second run with WATCHDOG_PID naming another process gets READY and STOPPING but no pings.
"""

import os
import re
import socket
import struct
import subprocess
import time

from iscsi_raw import Daemon, check, run_main, write_config

SO_PASSCRED = getattr(socket, "SO_PASSCRED", 16)
SCM_CREDENTIALS = getattr(socket, "SCM_CREDENTIALS", 2)


class Listener:
    """The stand-in for systemd's notify socket: every datagram with its sender's pid."""

    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, SO_PASSCRED, 1)
        self.sock.bind(path)
        self.path = path

    def recv(self, timeout):
        """(text, pid) of the next datagram, or None after timeout seconds."""
        self.sock.settimeout(max(timeout, 0.001))
        try:
            data, anc, _, _ = self.sock.recvmsg(4096, socket.CMSG_SPACE(12))
        except socket.timeout:
            return None
        pid = None
        for level, kind, payload in anc:
            if level == socket.SOL_SOCKET and kind == SCM_CREDENTIALS:
                pid = struct.unpack("iII", payload[:12])[0]
        return data.decode("utf-8", "replace"), pid

    def close(self):
        self.sock.close()


def start(d, env):
    """Daemon.start without waiting for the log: the notifications are what is under test."""
    d.runs += 1
    d.log_path = os.path.join(d.tmp, "twinlund.%d.log" % d.runs)
    d.logf = open(d.log_path, "wb")
    d.proc = subprocess.Popen([d.binary, "--port", "0", "--config", d.config], env=env,
                              stdout=d.logf, stderr=subprocess.STDOUT)


def wait_ready(d, lis):
    """Collects datagrams until READY=1; returns (its fields, the watchdog pings before it)."""
    pings = 0
    deadline = time.time() + 20
    while True:
        got = lis.recv(deadline - time.time())
        check(got is not None, "no READY=1 within 20 s (exit %s):\n%s" %
              (d.proc.poll(), d.log()))
        text, pid = got
        check(pid == d.proc.pid, "datagram %r from pid %s, not the daemon's %d" %
              (text, pid, d.proc.pid))
        if text == "WATCHDOG=1":
            pings += 1
            continue
        fields = dict(line.split("=", 1) for line in text.split("\n") if "=" in line)
        check(fields.get("READY") == "1", "first notification is %r, want READY=1" % text)
        return fields, pings


def ready_checks(d, fields):
    m = re.fullmatch(r"serving 1 LUN on 127\.0\.0\.1:(\d+)", fields.get("STATUS", ""))
    check(m, "STATUS=%r, want 'serving 1 LUN on 127.0.0.1:PORT'" % fields.get("STATUS"))
    port = int(m.group(1))
    try:  # READY must mean the portal is there now, not in a moment
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except OSError as e:
        check(False, "READY=1 came but 127.0.0.1:%d refuses connections: %s" % (port, e))
    check(fields.get("MAINPID") == str(d.proc.pid),
          "MAINPID=%r, want %d" % (fields.get("MAINPID"), d.proc.pid))
    return port


def count_pings(d, lis, seconds):
    pings, other = 0, []
    deadline = time.time() + seconds
    while time.time() < deadline:
        got = lis.recv(deadline - time.time())
        if got is None:
            break
        check(got[1] == d.proc.pid, "datagram %r from pid %s" % got)
        if got[0] == "WATCHDOG=1":
            pings += 1
        else:
            other.append(got[0])
    check(not other, "unexpected notifications while serving: %r" % other)
    return pings


def stop_checks(d, lis):
    pid = d.proc.pid
    d.stop()  # SIGTERM; exit 0, a clean log with 'stopped'
    rest = []
    while True:
        got = lis.recv(0.2)
        if got is None:
            break
        check(got[1] == pid, "datagram %r from pid %s, not the daemon's %d" % (got[0], got[1],
                                                                               pid))
        if got[0] != "WATCHDOG=1":
            rest.append(got[0])
    check(rest == ["STOPPING=1"], "after SIGTERM: %r, want exactly STOPPING=1" % rest)


def main(args):
    d = Daemon(args.twinlund)
    d.config = write_config(os.path.join(d.tmp, "notify.conf"), d.state_dir)
    lis = Listener(os.path.join(d.tmp, "notify"))
    env = dict(os.environ, NOTIFY_SOCKET=lis.path, WATCHDOG_USEC="200000")
    env.pop("WATCHDOG_PID", None)
    try:
        start(d, env)
        fields, _ = wait_ready(d, lis)
        port = ready_checks(d, fields)
        pings = count_pings(d, lis, 1.0)
        check(2 <= pings <= 25, "%d WATCHDOG=1 in the second after READY with WATCHDOG_USEC="
              "200000 (want 2..25, one every 100 ms)" % pings)
        check(re.search(r"listening on [^ ]*:%d\b" % port, d.log()),
              "STATUS names port %d, the log another:\n%s" % (port, d.log()))
        stop_checks(d, lis)

        # a watchdog meant for another process (WATCHDOG_PID) is not ours to feed
        env["WATCHDOG_PID"] = "1"
        start(d, env)
        fields, early = wait_ready(d, lis)
        ready_checks(d, fields)
        pings = early + count_pings(d, lis, 0.6)
        check(pings == 0, "%d WATCHDOG=1 with WATCHDOG_PID=1 (want none)" % pings)
        stop_checks(d, lis)
    finally:
        lis.close()
        d.cleanup()


if __name__ == "__main__":
    run_main(main)
