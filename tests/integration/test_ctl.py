#!/usr/bin/env python3
"""twinlunctl against one twinlund (no pair): status in text and JSON describes the node and its
LUN as configured; the admin socket is root-only (mode 0600); requests the daemon refuses exit
1 with the reason, malformed ones 2, and an unreachable daemon 3."""

import json
import os
import stat

from iscsi_raw import Daemon, check, run, run_main, write_config


def main(args):
    ctl = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(args.twinlund))), "ctl",
                       "twinlunctl")
    check(os.access(ctl, os.X_OK), "%s not built" % ctl)
    d = Daemon(args.twinlund)
    d.config = write_config(os.path.join(d.tmp, "ctl.conf"), d.state_dir)
    sock = os.path.join(d.state_dir, "twinlund.sock")
    base = [ctl, "--state-dir", d.state_dir]
    try:
        rc, out = run([ctl])
        check(rc == 2 and "usage" in out, "twinlunctl without a command: %d\n%s" % (rc, out))
        d.start()
        mode = stat.S_IMODE(os.stat(sock).st_mode)
        check(stat.S_ISSOCK(os.stat(sock).st_mode) and mode == 0o600,
              "admin socket %s has mode %o, want a socket with 0600" % (sock, mode))

        rc, out = run(base + ["status"])
        check(rc == 0, "status exited %d:\n%s" % (rc, out))
        check("pair: none" in out and "portal 127.0.0.1:%d" % d.port in out,
              "status text lacks the pair or the portal:\n" + out)
        check(any(l.split()[:3] == ["0", "single", "-"] for l in out.splitlines()),
              "status text has no line for LUN 0:\n" + out)

        rc, out = run(base + ["status", "--json"])
        check(rc == 0, "status --json exited %d:\n%s" % (rc, out))
        s = json.loads(out)
        check(s["pair"] is None and s["portal"] == "127.0.0.1:%d" % d.port,
              "status --json: pair or portal wrong: %r" % s)
        check(len(s["luns"]) == 1, "status --json lists %d LUNs, want 1" % len(s["luns"]))
        lun = s["luns"][0]
        check(lun["id"] == 0 and lun["bytes"] == 64 << 20 and lun["block_size"] == 512 and
              lun["path"] == os.path.join(d.state_dir, "lun0.img") and lun["role"] == "single",
              "status --json LUN 0 is %r" % lun)

        # the same through the environment instead of --state-dir
        env_rc, env_out = run(["env", "TWINLUN_STATE_DIR=" + d.state_dir, ctl, "status"])
        check(env_rc == 0 and "pair: none" in env_out,
              "status via TWINLUN_STATE_DIR: %d\n%s" % (env_rc, env_out))

        for req, want_rc, want in (
                (["promote"], 1, "no pair"),
                (["resolve", "--discard", "x"], 1, "nothing to resolve"),
                (["resolve", "--discard", "x", "--json"], 1, '"ok":false'),
                (["promote", "abc"], 2, "not a LUN number"),
                (["frobnicate"], 2, "unknown request 'frobnicate'")):
            rc, out = run(base + req)
            check(rc == want_rc and want in out,
                  "twinlunctl %s: exit %d, want %d with %r:\n%s" % (" ".join(req), rc, want_rc,
                                                                   want, out))
        check("admin: promote all: no pair" in d.log(), "the refused promote was not logged")
    finally:
        d.stop()
    check(not os.path.exists(sock), "admin socket %s left behind after the stop" % sock)
    rc, out = run(base + ["status"])
    check(rc == 3 and "cannot reach twinlund" in out,
          "status without a daemon: exit %d, want 3:\n%s" % (rc, out))


if __name__ == "__main__":
    run_main(main)
