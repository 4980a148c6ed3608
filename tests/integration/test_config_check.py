#!/usr/bin/env python3
"""`twinlunctl config check FILE`: every example in etc/ passes; each kind of mistake fails with
exit 1 and a message naming the file, the line of the mistake and what was expected. No daemon
runs: the check uses the daemon's own loader."""

import json
import os
import tempfile

from iscsi_raw import check, run, run_main

SRC = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# A valid pair node; each case below changes it. "/*!*/" marks the line the error must name.
BASE = """node = { name = "a"; state_dir = "%(state)s"; };
iscsi = { listen = "127.0.0.1:3260"; threads = 2; };
pair = {
  partner = "b";
  listen = "10.0.0.1:7471";
  partner_address = "10.0.0.2:7471";
};
targets = (
  { iqn = "iqn.2026-11.io.twinlun:check";
    luns = (
      { id = 0; path = "lun0.img"; size = "64M"; create = true; owner = "a"; },
      { id = 1; path = "lun1.img"; size = "64M"; create = true; owner = "b"; }
    );
  }
);
"""

CASES = [
    # (name, (old, new) replacements, words the message must contain)
    ("wrong type", [('threads = 2;', 'threads = "two"; /*!*/')], ["iscsi.threads", "integer"]),
    ("unknown key", [('name = "a";', 'name = "a"; nmae = "x"; /*!*/')], ["nmae"]),
    ("missing LUN path (no such file)",
     [('path = "lun1.img"; size = "64M"; create = true;',
       'path = "/nonexistent/lun1.img"; create = false; /*!*/')],
     ["/nonexistent/lun1.img", "does not exist"]),
    ("missing LUN path (no path key)",
     [('{ id = 1; path = "lun1.img"; size = "64M";', '{ id = 1; size = "64M"; /*!*/')],
     ["has no path"]),
    ("duplicate LUN id", [('{ id = 1; path', '{ id = 0; /*!*/\n path')], ["duplicate LUN id 0"]),
    ("bad address", [('listen = "10.0.0.1:7471";', 'listen = "10.0.0.1"; /*!*/')],
     ["pair.listen", "not an address"]),
    ("bad portal", [('listen = "127.0.0.1:3260";', 'listen = "127.0.0.1:99999"; /*!*/')],
     ["iscsi.listen"]),
    ("partner equal to self", [('partner = "b";', 'partner = "a"; /*!*/'),
                               ('owner = "b"', 'owner = "a"')],
     ["this node's own name"]),
    ("bad metrics address", [('node = {', 'metrics = { listen = "localhost"; }; /*!*/\nnode = {')],
     ["metrics.listen", "not an address"]),
    ("unknown debug part", [('node = {', 'log = { debug = "iscsi,frobs"; }; /*!*/\nnode = {')],
     ["log.debug", "'frobs' is not a part"]),
    ("syntax error", [('threads = 2;', 'threads = = 2; /*!*/')], ["syntax error"]),
]


def main(args):
    ctl = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(args.twinlund))), "ctl",
                       "twinlunctl")
    check(os.access(ctl, os.X_OK), "%s not built" % ctl)
    tmp = tempfile.mkdtemp(prefix="twl-cfgcheck-")
    state = os.path.join(tmp, "state")

    examples = sorted(f for f in os.listdir(os.path.join(SRC, "etc")) if f.endswith(".conf"))
    check(len(examples) >= 4, "etc/ has only %r" % examples)
    for name in examples:
        path = os.path.join(SRC, "etc", name)
        rc, out = run([ctl, "config", "check", path])
        check(rc == 0 and out.startswith(path + ": ok"),
              "config check %s: exit %d, want 0 and 'ok':\n%s" % (name, rc, out))
        rc, out = run([ctl, "config", "check", path, "--json"])
        doc = json.loads(out)
        check(rc == 0 and doc["ok"] is True and doc["luns"] >= 1,
              "config check %s --json: exit %d: %r" % (name, rc, doc))

    path = os.path.join(tmp, "base.conf")
    with open(path, "w") as f:
        f.write(BASE % {"state": state})
    rc, out = run([ctl, "config", "check", path])
    check(rc == 0, "the base config of the cases does not pass: %d\n%s" % (rc, out))

    for name, edits, words in CASES:
        text = BASE % {"state": state}
        for old, new in edits:
            check(old in text, "case %s: %r not in the base" % (name, old))
            text = text.replace(old, new, 1)
        line = next(i + 1 for i, l in enumerate(text.splitlines()) if "/*!*/" in l)
        path = os.path.join(tmp, name.replace(" ", "_").replace("(", "").replace(")", "") +
                            ".conf")
        with open(path, "w") as f:
            f.write(text)
        rc, out = run([ctl, "config", "check", path])
        where = "%s:%d:" % (path, line)
        check(rc == 1, "case %s: exit %d, want 1:\n%s" % (name, rc, out))
        check(out.startswith(where), "case %s: message does not start with %r:\n%s" %
              (name, where, out))
        for w in words:
            check(w in out, "case %s: %r not in the message:\n%s" % (name, w, out))
        print("config check: %-32s -> %s" % (name, out.strip().replace(path, "FILE")))
        rc, out = run([ctl, "config", "check", path, "--json"])
        doc = json.loads(out)
        check(rc == 1 and doc["ok"] is False and doc["message"].startswith(where),
              "case %s --json: exit %d, %r" % (name, rc, doc))

    rc, out = run([ctl, "config", "check", os.path.join(tmp, "none.conf")])
    check(rc == 1 and "none.conf" in out, "a missing file: exit %d\n%s" % (rc, out))
    for bad in (["config"], ["config", "check"], ["config", "lint", path]):
        rc, out = run([ctl] + bad)
        check(rc == 2 and "usage" in out, "twinlunctl %s: exit %d, want 2:\n%s" %
              (" ".join(bad), rc, out))


if __name__ == "__main__":
    run_main(main)
