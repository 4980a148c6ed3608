#!/usr/bin/env python3
"""The man pages in docs/man against the source they describe; needs no build and no daemon.

- twinlun.conf(5): every key of every `*_keys[]` table in target/config.c is an item (`.TP`
  whose tag starts with the key) of its group's `.SS` section, or, for a group without a
  section, an item anywhere or "group.key" in the text; each item says its default (or that
  the key is required). Every group of root_keys has a section or an item.
- the log parts: every "Parts:" list in the pages names exactly common/log.c's
  twl_log_parts[] (when that table exists).
- twinlunctl(8): every command is an item of COMMANDS, --json is described, and EXIT STATUS
  has 0, 1, 2 and 3.
- every page renders with `man --warnings -l` without a warning, and lexgrog (when present)
  finds its NAME line.

Prints "test_docs: ok" or the problems, one per line, and exits 1.
"""

import argparse
import os
import re
import shutil
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MAN_DIR = os.path.join(ROOT, "docs", "man")
PAGES = ["twinlund.8", "twinlunctl.8", "twinlun.conf.5"]
CONFIG_C = os.path.join(ROOT, "target", "config.c")
LOG_C = os.path.join(ROOT, "common", "log.c")

# twinlunctl commands, as words; "a|b" in a page's item tag matches either word.
COMMANDS = [
    "status", "sessions", "luns", "promote", "resolve --discard",
    "resync start", "resync pause", "resync resume",
    "log", "log level", "log debug", "config check",
]
# the tables whose name is not their group's
GROUP_OF_TABLE = {"target": "targets", "lun": "luns", "root": None}

problems = []


def problem(msg):
    problems.append(msg)


def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def plain(line):
    """A roff line as it reads: macro name dropped, quotes, font changes and escapes resolved."""
    s = line
    if s.startswith("."):
        parts = s.split(None, 1)
        args = re.findall(r'"((?:[^"]|"")*)"|(\S+)', parts[1] if len(parts) > 1 else "")
        args = [q.replace('""', '"') if q else w for q, w in args]
        # .BR, .IR, .RB ... alternate fonts with no space between their arguments
        s = ("" if re.match(r"\.[BIR][BIR]$", parts[0]) else " ").join(args)
    s = re.sub(r"\\f(\[[^\]]*\]|\(..|.)", "", s)
    s = s.replace("\\-", "-").replace("\\&", "").replace("\\(dq", '"').replace("\\e", "\\")
    s = re.sub(r"\\\((..)", "", s)
    s = s.replace("\\ ", " ").replace("\\%", "")
    return s.strip()


def parse_page(text):
    """Sections of a page: (SH title, SS title or None) -> list of (tag, body) of its .TP items,
    and the plain text of the whole page."""
    lines = text.splitlines()
    items = {}
    sh, ss = None, None
    plain_lines = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith(".SH"):
            sh, ss = plain(line), None
        elif line.startswith(".SS"):
            ss = plain(line)
        elif line.strip() == ".TP" and i + 1 < len(lines):
            tag = plain(lines[i + 1])
            body = []
            j = i + 2
            while j < len(lines) and not re.match(r"\.(TP|SH|SS|PP|LP|P)\b", lines[j]):
                body.append(plain(lines[j]))
                j += 1
            items.setdefault((sh, ss), []).append((tag, " ".join(body)))
        if not line.startswith(".\\\""):
            plain_lines.append(plain(line))
        i += 1
    return items, "\n".join(plain_lines)


def first_word(tag):
    m = re.match(r"[A-Za-z0-9_.\-]+", tag)
    return m.group(0) if m else ""


def config_tables():
    src = read(CONFIG_C)
    tables = {}
    for m in re.finditer(r"static\s+const\s+char\s*\*\s*const\s+(\w+)_keys\s*\[\s*\]\s*=\s*\{(.*?)\};",
                         src, re.S):
        tables[m.group(1)] = re.findall(r'"([^"]*)"', m.group(2))
    return tables


def check_conf():
    path = os.path.join(MAN_DIR, "twinlun.conf.5")
    items, text = parse_page(read(path))
    by_ss = {}
    every_tag = {}
    for (sh, ss), its in items.items():
        for tag, body in its:
            key = first_word(tag)
            every_tag.setdefault(key, body)
            if ss:
                by_ss.setdefault(first_word(ss), {})[key] = (tag, body)
    tables = config_tables()
    if not tables:
        problem("%s: no *_keys[] tables found; has the table syntax changed?" % CONFIG_C)
        return
    for table, keys in sorted(tables.items()):
        group = GROUP_OF_TABLE.get(table, table)
        for key in keys:
            if group is None:
                if key not in by_ss and key not in every_tag:
                    problem("twinlun.conf.5: the group '%s' (config.c root_keys) has no .SS "
                            "section and no item" % key)
                continue
            where = "%s.%s" % (group, key)
            if group in by_ss:
                found = by_ss[group].get(key)
                if found is None and where not in every_tag:
                    problem("twinlun.conf.5: key %s (config.c %s_keys) is not an item of the "
                            "'.SS %s' section" % (where, table, group))
                    continue
                body = found[1] if found else every_tag.get(where, "")
            else:
                if key not in every_tag and where not in every_tag and where not in text:
                    problem("twinlun.conf.5: key %s (config.c %s_keys) is not documented: no "
                            "'.SS %s' section, no item '%s' and no '%s' in the text"
                            % (where, table, group, key, where))
                    continue
                body = every_tag.get(key) or every_tag.get(where) or ""
            if body and "Default" not in body and "Required" not in body:
                problem("twinlun.conf.5: key %s says neither its default nor that it is "
                        "required" % where)


def check_parts():
    if not os.path.exists(LOG_C):
        return
    m = re.search(r"twl_log_parts\s*\[\s*\]\s*=\s*\{(.*?)\};", read(LOG_C), re.S)
    if not m:
        return
    parts = set(re.findall(r'"([^"]*)"', m.group(1)))
    seen = False
    for page in PAGES:
        lines = read(os.path.join(MAN_DIR, page)).splitlines()
        for k, line in enumerate(lines):
            if not line.startswith("Parts:"):
                continue
            seen = True
            # the list goes on over the next lines up to its full stop
            chunk = line
            while not chunk.rstrip().endswith(".") and k + 1 < len(lines):
                k += 1
                chunk += " " + lines[k]
            listed = set(re.findall(r"\\fB([^\\]+)\\fR", chunk))
            if listed != parts:
                problem("%s: 'Parts:' lists %s; common/log.c's twl_log_parts[] has %s "
                        "(missing: %s; not a part: %s)"
                        % (page, ",".join(sorted(listed)), ",".join(sorted(parts)),
                           ",".join(sorted(parts - listed)) or "-",
                           ",".join(sorted(listed - parts)) or "-"))
    if not seen:
        problem("no 'Parts:' list of the log parts in the pages")


def check_ctl():
    path = os.path.join(MAN_DIR, "twinlunctl.8")
    items, text = parse_page(read(path))
    tags = [tag for (sh, _), its in items.items() if sh == "COMMANDS" for tag, _ in its]
    for cmd in COMMANDS:
        want = cmd.split()
        ok = False
        for tag in tags:
            words = tag.replace("[", " [").split()
            if len(words) >= len(want) and all(
                    w in words[i].split("|") for i, w in enumerate(want)):
                ok = True
                break
        if not ok:
            problem("twinlunctl.8: command '%s' is not an item of COMMANDS" % cmd)
    if "--json" not in text:
        problem("twinlunctl.8: --json is not described")
    codes = {first_word(tag) for (sh, _), its in items.items() if sh == "EXIT STATUS"
             for tag, _ in its}
    for code in "0123":
        if code not in codes:
            problem("twinlunctl.8: exit status %s is not an item of EXIT STATUS" % code)


def check_rendering():
    if shutil.which("man") is None:
        problem("man is not installed: install man-db (apt-get install man-db) to check the "
                "pages' rendering")
        return
    env = dict(os.environ, MANWIDTH="80", LC_ALL="C.UTF-8")
    env.pop("MANPAGER", None)
    env.pop("PAGER", None)
    for page in PAGES:
        path = os.path.join(MAN_DIR, page)
        r = subprocess.run(["man", "--warnings", "-E", "UTF-8", "-l", "-Tutf8", path],
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env,
                           timeout=60)
        err = r.stderr.decode("utf-8", "replace").strip()
        if r.returncode != 0 or err:
            problem("%s: man -l printed warnings or failed (exit %d):\n  %s"
                    % (page, r.returncode, err.replace("\n", "\n  ") or "(nothing on stderr)"))
        if shutil.which("lexgrog"):
            r = subprocess.run(["lexgrog", path], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, env=env, timeout=60)
            if r.returncode != 0:
                problem("%s: lexgrog finds no NAME line: %s"
                        % (page, r.stdout.decode("utf-8", "replace").strip()))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--twinlund", help="ignored (the pages need no build)")
    ap.add_argument("--stamp", help="ignored")
    ap.parse_known_args()
    for page in PAGES:
        if not os.path.exists(os.path.join(MAN_DIR, page)):
            problem("docs/man/%s is missing" % page)
    if not problems:
        check_conf()
        check_parts()
        check_ctl()
        check_rendering()
    if problems:
        for p in problems:
            print("FAIL: %s" % p, file=sys.stderr)
        print("test_docs: %d problem%s" % (len(problems), "" if len(problems) == 1 else "s"),
              file=sys.stderr)
        sys.exit(1)
    print("test_docs: ok")


if __name__ == "__main__":
    main()
