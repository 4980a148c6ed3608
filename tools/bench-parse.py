#!/usr/bin/env python3
"""Helper for tools/bench (Python standard library only).

  bench-parse.py mirror CODENAME
      Print "URI<TAB>SIGNED-BY" of the first apt source that serves CODENAME (the main
      archive, not -security/-updates), read from /etc/apt/sources.list, *.list and *.sources.
  bench-parse.py has-deb-src CODENAME
      Exit 0 if a deb-src entry for CODENAME main already exists.
  bench-parse.py report RUNS.tsv OUTDIR
      Read the per-run records written by tools/bench, print the tables and the goal summary,
      and write OUTDIR/results.json and OUTDIR/results.md.
"""
import glob
import json
import os
import statistics
import sys

# ---------------------------------------------------------------- apt sources


def _apt_entries():
    """Yield (types, uris, suites, components, signed_by) from every apt source file."""
    files = ["/etc/apt/sources.list"] + sorted(glob.glob("/etc/apt/sources.list.d/*.list"))
    for path in files:
        try:
            lines = open(path, encoding="utf-8").read().splitlines()
        except OSError:
            continue
        for line in lines:
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            words = line.split()
            typ, rest = words[0], words[1:]
            signed_by = ""
            if rest and rest[0].startswith("["):
                opts = []
                while rest:
                    w = rest.pop(0)
                    opts.append(w)
                    if w.endswith("]"):
                        break
                for o in " ".join(opts).strip("[] ").split():
                    if o.startswith("signed-by="):
                        signed_by = o.split("=", 1)[1]
            if len(rest) < 2:
                continue
            yield [typ], [rest[0]], [rest[1]], rest[2:], signed_by
    for path in sorted(glob.glob("/etc/apt/sources.list.d/*.sources")):
        try:
            text = open(path, encoding="utf-8").read()
        except OSError:
            continue
        for stanza in text.split("\n\n"):
            fields, key = {}, None
            for line in stanza.splitlines():
                if line.startswith("#") or not line.strip():
                    continue
                if line[0] in " \t" and key:
                    fields[key] += " " + line.strip()
                    continue
                if ":" in line:
                    key, val = line.split(":", 1)
                    key = key.strip().lower()
                    fields[key] = val.strip()
            if fields.get("enabled", "yes").lower() == "no" or "uris" not in fields:
                continue
            yield (fields.get("types", "").split(), fields["uris"].split(),
                   fields.get("suites", "").split(), fields.get("components", "").split(),
                   fields.get("signed-by", ""))


def cmd_mirror(codename):
    for types, uris, suites, _comps, signed_by in _apt_entries():
        if "deb" in types and codename in suites and uris:
            print(f"{uris[0]}\t{signed_by}")
            return 0
    return 1


def cmd_has_deb_src(codename):
    for types, _uris, suites, comps, _sb in _apt_entries():
        if "deb-src" in types and codename in suites and "main" in comps:
            return 0
    return 1


# ---------------------------------------------------------------- report

WORKLOADS = [  # name, label, fio direction
    ("randwrite-4k-qd1", "4K randwrite QD1", "write"),
    ("randwrite-4k-qd32", "4K randwrite QD32", "write"),
    ("randread-4k-qd32", "4K randread QD32", "read"),
    ("write-128k-qd8", "128K seq write QD8", "write"),
    ("read-128k-qd8", "128K seq read QD8", "read"),
]
TARGETS = [("twinlun", "twinlun"), ("tgt", "tgt (defaults)"), ("tgt-tuned", "tgt (tuned)")]
METRICS = ["iops", "mbps", "lat_mean_us", "lat_p99_us", "cpu_us_per_io"]


def parse_fio(path, direction):
    with open(path, encoding="utf-8") as f:
        text = f.read()
    # fio may print warnings before the JSON document
    doc = json.loads(text[text.index("{"):])
    job = doc["jobs"][0]
    if job.get("error"):
        raise ValueError(f"fio job error {job['error']}")
    d = job[direction]
    lat = d.get("lat_ns") or d.get("clat_ns")
    pct = lat.get("percentile") or d.get("clat_ns", {}).get("percentile", {})
    p99 = pct.get("99.000000")
    return {
        "iops": d["iops"],
        "mbps": d["bw_bytes"] / 1e6,
        "lat_mean_us": lat["mean"] / 1e3,
        "lat_p99_us": (p99 / 1e3) if p99 is not None else None,
        "ios": d["total_ios"],
        "fio_runtime_s": d["runtime"] / 1e3,
    }


def fmt(v, kind):
    if v is None:
        return "-"
    if kind == "iops":
        return f"{v / 1000:.1f}k" if v >= 10000 else f"{v:.0f}"
    if kind == "mbps":
        return f"{v:.0f}"
    if kind == "cpu_us_per_io":
        return f"{v:.1f}" if v < 100 else f"{v:.0f}"
    return f"{v:.0f}"


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def ratio(a, b):
    return a / b if a is not None and b else None


def cmd_report(runs_path, outdir):
    runs, failed = [], []
    meta = {}
    with open(runs_path, encoding="utf-8") as f:
        for line in f:
            line = line.rstrip("\n")
            if not line:
                continue
            if line.startswith("#meta\t"):
                _, k, v = line.split("\t", 2)
                meta[k] = v
                continue
            rnd, target, wl, status, fio_json, cpu_ticks, window_s, hz = line.split("\t")
            rec = {"round": int(rnd), "target": target, "workload": wl, "status": status,
                   "fio_json": fio_json}
            direction = dict((w[0], w[2]) for w in WORKLOADS)[wl]
            if status == "ok":
                try:
                    rec.update(parse_fio(fio_json, direction))
                    cpu_s = int(cpu_ticks) / int(hz)
                    win = float(window_s)
                    rec["target_cpu_s"] = cpu_s
                    rec["window_s"] = win
                    rec["target_cpu_cores"] = cpu_s / win if win > 0 else None
                    # I/Os done in the sampled window = fio's steady IOPS x window length
                    ios = rec["iops"] * win
                    rec["cpu_us_per_io"] = cpu_s * 1e6 / ios if ios > 0 else None
                except (OSError, ValueError, KeyError, IndexError) as e:
                    rec["status"] = f"bad fio output: {e}"
            if rec["status"] != "ok":
                failed.append(rec)
            runs.append(rec)

    present_targets = [t for t in TARGETS if any(r["target"] == t[0] for r in runs)]
    present_wls = [w for w in WORKLOADS if any(r["workload"] == w[0] for r in runs)]
    med = {}
    for t, _ in present_targets:
        for w, _, _ in present_wls:
            ok = [r for r in runs if r["target"] == t and r["workload"] == w and r["status"] == "ok"]
            m = {k: median([r.get(k) for r in ok]) for k in METRICS + ["target_cpu_cores"]}
            m["runs"] = len(ok)
            med.setdefault(w, {})[t] = m

    def g(w, t, k):
        return med.get(w, {}).get(t, {}).get(k)

    goals = []
    r1 = ratio(g("randwrite-4k-qd32", "twinlun", "iops"), g("randwrite-4k-qd32", "tgt", "iops"))
    goals.append({"goal": "4K randwrite QD32 IOPS, twinlun / tgt (defaults)", "want": ">= 1.5",
                  "value": r1, "pass": r1 is not None and r1 >= 1.5})
    r2 = ratio(g("write-128k-qd8", "twinlun", "mbps"), g("write-128k-qd8", "tgt-tuned", "mbps"))
    goals.append({"goal": "128K seq write MB/s, twinlun / tgt (tuned)", "want": ">= 1.3",
                  "value": r2, "pass": r2 is not None and r2 >= 1.3})
    r3 = ratio(g("write-128k-qd8", "twinlun", "mbps"), g("write-128k-qd8", "tgt", "mbps"))
    goals.append({"goal": "128K seq write MB/s, twinlun / tgt (defaults)", "want": ">= 2.5",
                  "value": r3, "pass": r3 is not None and r3 >= 2.5})
    cpu_rows = []
    cpu_ok = True
    have_cpu = False
    for w, label, _ in present_wls:
        tw = g(w, "twinlun", "cpu_us_per_io")
        row = {"workload": w, "twinlun": tw}
        for t in ("tgt", "tgt-tuned"):
            v = g(w, t, "cpu_us_per_io")
            row[t] = v
            row[t + "_ratio"] = ratio(tw, v)
            if tw is not None and v is not None:
                have_cpu = True
                if tw > v:
                    cpu_ok = False
        cpu_rows.append(row)
    goals.append({"goal": "target CPU per I/O, twinlun <= tgt (defaults and tuned), every workload",
                  "want": "<= 1.0 x", "value": max((r[k] for r in cpu_rows
                                                    for k in ("tgt_ratio", "tgt-tuned_ratio")
                                                    if r.get(k) is not None), default=None),
                  "pass": have_cpu and cpu_ok, "per_workload": cpu_rows})

    # ---- text + markdown
    out = []
    md = []
    rounds = meta.get("rounds", "?")
    head = (f"twinlun vs Debian tgt {meta.get('tgt_version', '')}: fio {meta.get('fio_version', '')} "
            f"libiscsi engine, 1 job, tmpfs file {meta.get('size', '')}, "
            f"median of {rounds} round(s) x {meta.get('runtime', '?')} s "
            f"(+{meta.get('ramp', '?')} s ramp), targets alternated per round")
    out.append(head)
    out.append(f"(commit {meta.get('commit', '?')}, {meta.get('twinlund', '?')})")
    md.append(f"<!-- tools/bench {meta.get('args', '')} | {meta.get('date', '')} | commit "
              f"{meta.get('commit', '')} | {meta.get('twinlund', '')} -->")
    md.append(head + ".")
    md.append("")
    md.append("| workload | target | IOPS | MB/s | mean µs | p99 µs | target CPU µs/IO |")
    md.append("|---|---|---:|---:|---:|---:|---:|")
    for w, label, _ in present_wls:
        out.append("")
        out.append(f"== {label}")
        out.append(f"  {'target':<16}{'IOPS':>9}{'MB/s':>8}{'mean µs':>9}{'p99 µs':>9}"
                   f"{'CPU µs/IO':>11}{'CPU cores':>10}")
        for t, tlabel in present_targets:
            m = med[w][t]
            cells = [fmt(m[k], k) for k in METRICS]
            cores = m.get("target_cpu_cores")
            out.append(f"  {tlabel:<16}{cells[0]:>9}{cells[1]:>8}{cells[2]:>9}{cells[3]:>9}"
                       f"{cells[4]:>11}{(f'{cores:.2f}' if cores is not None else '-'):>10}"
                       + ("" if m["runs"] else "   (no successful run)"))
            md.append(f"| {label} | {tlabel} | " + " | ".join(cells) + " |")
    out.append("")
    out.append("== goals (issue 2, item 4)")
    md.append("")
    md.append("| goal | wanted | measured | verdict |")
    md.append("|---|---|---:|---|")
    for gl in goals:
        v = gl["value"]
        vs = f"{v:.2f}x" if v is not None else "n/a"
        verdict = "PASS" if gl["pass"] else "MISS"
        out.append(f"  {verdict}  {gl['goal']}: {vs} (want {gl['want']})")
        md.append(f"| {gl['goal']} | {gl['want']} | {vs} | {verdict} |")
        if "per_workload" in gl:
            for r in gl["per_workload"]:
                parts = []
                for t in ("tgt", "tgt-tuned"):
                    rv = r.get(t + "_ratio")
                    parts.append(f"{t} {fmt(r.get(t), 'cpu_us_per_io')} µs"
                                 + (f" ({rv:.2f}x)" if rv is not None else ""))
                out.append(f"          {r['workload']:<18} twinlun {fmt(r['twinlun'], 'cpu_us_per_io')} µs"
                           f" vs " + ", ".join(parts))
    if failed:
        out.append("")
        out.append(f"FAILED runs: {len(failed)}")
        for r in failed:
            out.append(f"  round {r['round']} {r['target']} {r['workload']}: {r['status']}")
        md.append("")
        md.append(f"{len(failed)} run(s) failed; see results.json.")

    print("\n".join(out))
    os.makedirs(outdir, exist_ok=True)
    with open(os.path.join(outdir, "results.md"), "w", encoding="utf-8") as f:
        f.write("\n".join(md) + "\n")
    with open(os.path.join(outdir, "results.json"), "w", encoding="utf-8") as f:
        json.dump({"meta": meta, "medians": med, "goals": goals, "runs": runs}, f, indent=2)
        f.write("\n")
    return 1 if failed else 0


def main(argv):
    if len(argv) >= 3 and argv[1] == "mirror":
        return cmd_mirror(argv[2])
    if len(argv) >= 3 and argv[1] == "has-deb-src":
        return cmd_has_deb_src(argv[2])
    if len(argv) >= 4 and argv[1] == "report":
        return cmd_report(argv[2], argv[3])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
