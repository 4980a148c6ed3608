#!/usr/bin/env python3
"""What an admin reads of a running twinlund agrees with what initiators did.

twinlund starts on the built-in default configuration (port and metrics port chosen free).
Every twinlunctl read command runs with and without --json on an idle daemon, with a session
logged in, and after a libiscsi workload (iscsi_stamp: a known number of stamped blocks
written, then read back and verified). The JSON must parse and carry the fields scripts rely
on; the LUN's write and read bytes must match what the workload moved within 1 %; the
Prometheus endpoint must give the same counters, a histogram whose count equals the commands,
and 404/405 for what it does not serve. Exit codes: 0 done, 1 refused, 2 bad request."""

import json
import os
import re
import socket
import urllib.error
import urllib.request

from iscsi_raw import Daemon, Initiator, check, run, run_main

SEED = 4242
NBLOCKS = 40000  # 20 MB of 512-byte blocks


def ctl_json(base, *words):
    rc, out = run(base + list(words) + ["--json"])
    check(rc == 0, "twinlunctl %s --json exited %d:\n%s" % (" ".join(words), rc, out))
    try:
        return json.loads(out)
    except ValueError as e:
        raise AssertionError("twinlunctl %s --json is not JSON (%s):\n%s" %
                             (" ".join(words), e, out))


def ctl_text(base, *words):
    rc, out = run(base + list(words))
    check(rc == 0 and out.strip(), "twinlunctl %s exited %d:\n%s" % (" ".join(words), rc, out))
    check(not out.lstrip().startswith("{"), "twinlunctl %s without --json printed JSON" %
          " ".join(words))
    return out


def read_all(base):
    """Every read command, text and JSON; returns the JSON documents by command."""
    docs = {}
    for cmd in ("status", "sessions", "luns", "log"):
        ctl_text(base, cmd)
        docs[cmd] = ctl_json(base, cmd)
    return docs


def scrape(port, path="/metrics", method="GET"):
    req = urllib.request.Request("http://127.0.0.1:%d%s" % (port, path), method=method)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.headers.get("Content-Type", ""), r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type", ""), e.read().decode()


def samples(text):
    """{ 'name{labels}': value } of a Prometheus text page; checks every line's shape."""
    out = {}
    for line in text.splitlines():
        if line.startswith("# HELP ") or line.startswith("# TYPE "):
            continue
        m = re.fullmatch(r'([a-z_]+(?:\{[^}]*\})?) (-?[0-9.e+]+|\+Inf|NaN)', line)
        check(m, "metrics line not in the text format: %r" % line)
        out[m.group(1)] = float(m.group(2))
    return out


def near(got, want, what):
    check(abs(got - want) <= want * 0.01,
          "%s: %d, want %d within 1 %%" % (what, got, want))


def main(args):
    ctl = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(args.twinlund))), "ctl",
                       "twinlunctl")
    check(os.access(ctl, os.X_OK), "%s not built" % ctl)
    d = Daemon(args.twinlund, metrics="127.0.0.1:0")
    base = [ctl, "--state-dir", d.state_dir]
    try:
        d.start()
        m = re.search(r"metrics at http://127\.0\.0\.1:(\d+)/metrics", d.log())
        check(m, "no 'metrics at' line in the log:\n" + d.log())
        mport = int(m.group(1))

        # idle
        docs = read_all(base)
        st = docs["status"]
        check(st["target"] == "iqn.2026-11.io.twinlun:default" and st["pair"] is None and
              st["sessions"] == 0 and st["metrics"] == "http://127.0.0.1:%d/metrics" % mport,
              "idle status --json: %r" % st)
        slun = st["luns"][0]
        check(slun["alua"] == "active/optimized" and slun["write_rate_bytes_s"] == 0 and
              slun["read_rate_bytes_s"] == 0, "idle status --json LUN 0: %r" % slun)
        check(docs["sessions"] == {"sessions": []}, "idle sessions: %r" % docs["sessions"])
        lun = docs["luns"]["luns"][0]
        check(lun["id"] == 0 and lun["bytes"] == 1 << 30 and lun["role"] == "single" and
              lun["alua"] == "active/optimized" and lun["write"]["bytes"] == 0,
              "idle luns --json: %r" % lun)
        check(docs["log"]["level"] == "info" and docs["log"]["debug"] == "" and
              "iscsi" in docs["log"]["parts"], "log --json: %r" % docs["log"])

        # a session stays logged in while we look
        ini = Initiator(d.port)
        isid = b"\x80\x12\x34\x56\x00\x07"
        ini.login(initiator="iqn.2026-12.test:ops-watcher", target=st["target"], isid=isid)
        docs = read_all(base)
        check(docs["status"]["sessions"] == 1, "status counts %r sessions, want 1" %
              docs["status"]["sessions"])
        sess = docs["sessions"]["sessions"]
        check(len(sess) == 1, "sessions --json lists %d, want 1: %r" % (len(sess), sess))
        s = sess[0]
        check(s["initiator"] == "iqn.2026-12.test:ops-watcher" and s["isid"] == isid.hex() and
              s["tsih"] > 0 and s["target"] == st["target"] and
              s["portal"] == "127.0.0.1:%d" % d.port and s["peer"].startswith("127.0.0.1"),
              "session: %r" % s)
        p = s["params"]
        check(p["MaxBurstLength"] == 1048576 and p["FirstBurstLength"] == 262144 and
              p["InitialR2T"] is False and p["ImmediateData"] is True and
              p["HeaderDigest"] == "None" and p["InitiatorMaxRecvDataSegmentLength"] == 262144,
              "negotiated parameters as listed: %r" % p)
        text = ctl_text(base, "sessions")
        check("iqn.2026-12.test:ops-watcher" in text and isid.hex() in text,
              "sessions text lacks the initiator or ISID:\n" + text)

        # the workload
        rc, out = run([args.stamp, "write", d.url(), str(SEED), str(NBLOCKS)])
        check(rc == 0, "iscsi_stamp write failed:\n" + out)
        after_write = ctl_json(base, "luns")["luns"][0]
        rc, out = run([args.stamp, "verify", d.url(), str(SEED), str(NBLOCKS)])
        check(rc == 0, "iscsi_stamp verify failed:\n" + out)
        docs = read_all(base)
        lun = docs["luns"]["luns"][0]
        written = NBLOCKS * 512
        near(after_write["write"]["bytes"], written, "write bytes after the write pass")
        near(lun["write"]["bytes"], written, "write bytes at the end")
        near(lun["read"]["bytes"], written, "read bytes of the verify pass")
        # not GOOD: only the first command of each of the 3 nexuses (raw login, write pass,
        # verify pass), which gets the POWER ON unit attention
        check(lun["write"]["commands"] > 10 and lun["read"]["commands"] > 10 and
              lun["errors"] == 3, "luns --json counters: %r" % lun)
        check(0 < lun["write"]["latency_p50_us"] <= lun["write"]["latency_p99_us"],
              "write latency percentiles: %r" % lun["write"])
        print("luns after the workload: %d writes %d bytes (workload %d), %d reads %d bytes, "
              "write p50 %d us p99 %d us" %
              (lun["write"]["commands"], lun["write"]["bytes"], written, lun["read"]["commands"],
               lun["read"]["bytes"], lun["write"]["latency_p50_us"],
               lun["write"]["latency_p99_us"]))
        text = ctl_text(base, "luns")
        check(re.search(r"^0 .*active/optimized", text, re.M), "luns text:\n" + text)

        # the same figures through Prometheus
        code, ctype, page = scrape(mport)
        check(code == 200 and ctype.startswith("text/plain; version=0.0.4"),
              "GET /metrics: %d %s" % (code, ctype))
        sm = samples(page)
        for op in ("read", "write"):
            for kind in ("commands", "bytes"):
                key = 'twinlun_lun_%s_total{lun="0",op="%s"}' % (kind, op)
                check(sm.get(key) == lun[op][kind], "%s = %r, luns says %r" %
                      (key, sm.get(key), lun[op][kind]))
            count = sm['twinlun_lun_latency_seconds_count{lun="0",op="%s"}' % op]
            inf = sm['twinlun_lun_latency_seconds_bucket{lun="0",op="%s",le="+Inf"}' % op]
            check(count == inf == lun[op]["commands"],
                  "%s histogram count %r, +Inf %r, commands %r" % (op, count, inf,
                                                                  lun[op]["commands"]))
            buckets = [v for k, v in sm.items()
                       if k.startswith('twinlun_lun_latency_seconds_bucket{lun="0",op="%s"' % op)]
            check(buckets == sorted(buckets), "%s buckets are not cumulative" % op)
        check(sm["twinlun_sessions"] == 1, "twinlun_sessions %r" % sm.get("twinlun_sessions"))
        check(sm['twinlun_lun_errors_total{lun="0"}'] == lun["errors"], "errors in metrics")
        for path, method, want in (("/", "GET", 404), ("/metrics", "POST", 405)):
            code, _, _ = scrape(mport, path, method)
            check(code == want, "%s %s: %d, want %d" % (method, path, code, want))
        s = socket.create_connection(("127.0.0.1", mport), timeout=10)
        s.sendall(b"garbage\r\n\r\n")
        check(s.recv(100).startswith(b"HTTP/1.0 400"), "a malformed request is not answered 400")
        s.close()

        # requests that change something, and the refusals
        for req, want_rc, want in (
                (["log", "level", "debug"], 0, "log level debug"),
                (["log", "debug", "iscsi,pair"], 0, "debug lines of: iscsi,pair"),
                (["log", "level", "loud"], 2, "not a level"),
                (["log", "debug", "iscsi,nope"], 2, "'nope' is not a part"),
                (["resync", "pause"], 1, "no pair"),
                (["resync", "resume", "0", "--json"], 1, '"ok":false'),
                (["resync", "stop"], 2, "not start, pause or resume"),
                (["resync", "start", "x"], 2, "not a LUN number"),
                (["luns", "extra"], 2, "unknown request")):
            rc, out = run(base + req)
            check(rc == want_rc and want in out,
                  "twinlunctl %s: exit %d, want %d with %r:\n%s" % (" ".join(req), rc, want_rc,
                                                                   want, out))
        lg = ctl_json(base, "log")
        check(lg["level"] == "debug" and lg["debug"] == "iscsi,pair", "log after changes: %r" % lg)
        run(base + ["log", "level", "info"])
        check("admin: log level debug" in d.log() and "admin: resync pause all: no pair" in
              d.log(), "the admin's changes are not in the log")
        ini.close()
    finally:
        d.stop()


if __name__ == "__main__":
    run_main(main)
