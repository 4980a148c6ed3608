# shellcheck shell=bash disable=SC2154 # out, fio, runtime, dev, store: set by the caller
# bench-lib.sh: the pieces of the replication benchmark shared by its one-guest form
# (bench-pair.sh, run by `tools/bench --pair`) and its two-guest form (bench-pair-two-guests.sh
# on the host, bench-pair-node.sh in each guest, run by `tools/bench --pair --two-guests`).
# Source it after tools/rxe-lib.sh (rxe_nap). The caller sets these globals first:
#   out      result directory (fio JSON, perftest output, CPU snapshots, logs)
#   fio      fio binary with the libiscsi engine
#   runtime  measured seconds per fio job and per perftest run
#   dev      the rxe device (rxe0)
#   store    directory for the daemons' state and backing files (tmpfs)
#
#   bench_jobs                         the fio jobs, in order
#   bench_shm_room                     a larger /dev/shm, inside a guest only
#   bench_job_args JOB                 fio arguments of JOB
#   bench_bw_server SIZE               ib_write_bw server (returns when the client is done, or
#                                      after runtime + 120 s without one)
#   bench_bw_client SIZE SERVER_IP     ib_write_bw client; prints MB/s
#   bench_lat_server                   ib_write_lat server, 4 KiB
#   bench_lat_client SERVER_IP         ib_write_lat client; prints the mean in µs
#   bench_config NAME PARTNER ISCSI_PORT LISTEN PARTNER_ADDRESS
#                                      a twinlund config on stdout (PARTNER "" = single node,
#                                      LISTEN/PARTNER_ADDRESS = backplane ip:port); node a owns
#   bench_run_fio NAME PORT JOB        fio JOB against 127.0.0.1:PORT, JSON in out/NAME.JOB.json;
#                                      CPU snapshots of this guest at the ends of a window inside
#                                      fio's measured one (out/cpu/GUEST.NAME.JOB.{start,end});
#                                      bench_snap_hook, if set, is called as
#                                      HOOK NAME.JOB.start|end at those moments
#   bench_cpu_snap FILE                /proc/stat and every thread's stat line, with a timestamp
#   bench_qemu_snap FILE DIR NAME...   the same on the host for the QEMU of each guest NAME
#   bench_mark TAG                     bench_cpu_snap into out/cpu/GUEST.TAG
#   bench_perf_start / bench_perf_stop with TWL_BENCH_PERF=1: perf record in between, and a
#                                      report per measured window in out/perf/GUEST.TAG.txt
#   bench_report BW4K BW128K LAT       the table (and a CPU breakdown when snapshots exist)

bench_jobs="randwrite-4k-qd32 write-128k-qd8 randwrite-4k-qd1"
bench_iqn=iqn.2026-11.io.twinlun:bench
bench_ramp=2
bench_snap_hook=""

# In a throwaway guest, /dev/shm (half the guest's memory by default) may take more: the
# pair's two 256 MiB LUNs fill it exactly in one guest. Left alone on a real host (--native).
bench_shm_room() {
    [ "${TWL_RXE_GUEST:-0}" = 1 ] && mount -o remount,size=80% /dev/shm
    return 0
}

bench_job_args() {
    case $1 in
    randwrite-4k-qd32) echo "--rw=randwrite --bs=4k --iodepth=32" ;;
    write-128k-qd8) echo "--rw=write --bs=128k --iodepth=8" ;;
    randwrite-4k-qd1) echo "--rw=randwrite --bs=4k --iodepth=1" ;;
    esac
}

# ---- the link: perftest over rdma_cm, server and client apart so they can be in two guests
bench_bw_server() {
    timeout $((runtime + 120)) ib_write_bw -R -d "$dev" -s "$1" -D "$runtime" >"$out/bw.$1.server" 2>&1
}
# A server just started may not listen yet (rdma_cm REJECTED, "invalid service id"): retry.
# A client whose first try failed may wait for ever on a server that is gone: each try is
# bounded.
bench_perftest_client() { # OUTFILE CMD...
    local f=$1 try
    shift
    for try in 1 2 3 4 5 6; do
        timeout -k 5 $((runtime + 60)) "$@" >"$f" 2>&1 && grep -q '^ *[0-9]\+ \+[0-9]\+' "$f" &&
            return 0
        echo "bench: try $try failed: $(tail -n 1 "$f")" >&2
        sleep 1
    done
    return 1
}
bench_bw_client() {
    bench_perftest_client "$out/bw.$1.client" ib_write_bw -R -d "$dev" -s "$1" -D "$runtime" "$2"
    awk '/^ *[0-9]+ +[0-9]+/ { v = $4 } END { printf "%.1f", v * 1.048576 }' "$out/bw.$1.client"
}
bench_lat_server() {
    timeout 180 ib_write_lat -R -d "$dev" -s 4096 -n 2000 >"$out/lat.server" 2>&1
}
bench_lat_client() {
    bench_perftest_client "$out/lat.client" ib_write_lat -R -d "$dev" -s 4096 -n 2000 "$1"
    awk '/^ *4096 +[0-9]+/ { v = $6 } END { printf "%.1f", v }' "$out/lat.client"
}

# ---- twinlund
bench_config() {
    local name=$1 partner=$2 port=$3 listen=${4:-} paddr=${5:-} owner=""
    echo "node = { name = \"$name\"; state_dir = \"$store/$name\"; };"
    echo "iscsi = { listen = \"127.0.0.1:$port\"; threads = 1; };"
    if [ -n "$partner" ]; then
        echo "pair = { partner = \"$partner\"; listen = \"$listen\"; partner_address = \"$paddr\"; secret = \"twinlun bench pair secret\"; };"
        owner="owner = \"a\";"
    fi
    echo "targets = ( { iqn = \"$bench_iqn\"; luns = ( { id = 0; path = \"$store/$name/lun0.img\";"
    echo "  size = \"256M\"; create = true; $owner } ); } );"
}

# ---- fio, with CPU snapshots around the measured window
bench_hz=$(getconf CLK_TCK)
# Builtins only: starting a process (cat) takes a good part of a second of a busy TCG vCPU.
bench_cpu_snap() {
    local f l
    {
        echo "T $EPOCHREALTIME $bench_hz"
        while read -r l; do echo "$l"; done </proc/stat
        for f in /proc/[0-9]*/task/[0-9]*/stat; do
            read -r l 2>/dev/null <"$f" && echo "$l"
        done
    } >"$1"
}
# On the host: /proc/stat and the threads of each named guest's QEMU (pid in DIR/NAME.pid),
# their names prefixed with NAME: in the report.
bench_qemu_snap() { # FILE DIR NAME...
    local f=$1 d=$2 g pid
    shift 2
    {
        echo "T $EPOCHREALTIME $bench_hz"
        cat /proc/stat
        for g in "$@"; do
            read -r pid <"$d/$g.pid" 2>/dev/null || continue
            echo "G $g"
            cat /proc/"$pid"/task/[0-9]*/stat 2>/dev/null
        done
    } >"$f"
}

# TAG = NAME.JOB.start|end: this guest's CPU snapshot into out/cpu/GUEST.TAG
bench_mark() {
    [ -d "$out/cpu" ] || mkdir -p "$out/cpu"
    bench_cpu_snap "$out/cpu/${TWL_RXE_NAME:-vm}.$1"
}

# With TWL_BENCH_PERF=1: one system-wide `perf record` (cpu-clock: TCG's emulated PMU counts
# nothing; realtime timestamps) from bench_perf_start to bench_perf_stop, then a text report of
# each of this guest's measured windows in out/perf/GUEST.TAG.txt. perf takes seconds of a TCG
# vCPU to start: start it before a phase, not inside a window. It perturbs the run.
bench_perf_start() {
    [ "${TWL_BENCH_PERF:-0}" = 1 ] || return 0
    mkdir -p /dev/shm/twl-bench-perf
    perf record -a -g -k realtime -e cpu-clock -F 499 -o /dev/shm/twl-bench-perf/perf.data \
        >/dev/shm/twl-bench-perf/record.log 2>&1 &
    _bench_perf_pid=$!
    sleep 5
}
bench_perf_stop() {
    [ -n "${_bench_perf_pid:-}" ] || return 0
    local g=${TWL_RXE_NAME:-vm} st tag t0 t1 d=/dev/shm/twl-bench-perf
    kill -INT "$_bench_perf_pid"
    wait "$_bench_perf_pid"
    _bench_perf_pid=""
    mkdir -p "$out/perf"
    for st in "$out/cpu/$g".*.start; do
        [ -e "${st%.start}.end" ] || continue
        tag=${st##*/}
        tag=${tag%.start}
        read -r _ t0 _ <"$st"
        read -r _ t1 _ <"${st%.start}.end"
        {
            echo "# perf, guest $g, window $tag ($t0 .. $t1)"
            perf report -i $d/perf.data --time "$t0,$t1" --stdio --no-children -g none \
                --sort comm,dso --percent-limit 1
            perf report -i $d/perf.data --time "$t0,$t1" --stdio --no-children -g none \
                --sort comm,sym --percent-limit 0.5
            echo "# with callees: where the kernel time goes (system calls, softirq)"
            perf report -i $d/perf.data --time "$t0,$t1" --stdio --children -g none \
                --sort comm,sym --percent-limit 2
        } >"$out/perf/$tag.txt" 2>&1
    done
    cp $d/record.log "$out/perf/$g.record.log"
    rm -rf $d
}

bench_snap() { # TAG: this guest's mark, then the hook (the other guest's)
    bench_mark "$1"
    [ -n "$bench_snap_hook" ] && "$bench_snap_hook" "$1"
    return 0
}

bench_run_fio() {
    local name=$1 port=$2 job=$3 pid rc=0 t0 left frac
    # shellcheck disable=SC2046
    "$fio" --name="$job" --ioengine=libiscsi \
        --filename="iscsi\://127.0.0.1\:$port/${bench_iqn//:/\\:}/0" \
        $(bench_job_args "$job") --numjobs=1 --time_based --runtime="$runtime" \
        --ramp_time="$bench_ramp" --size=256m --output-format=json \
        --output="$out/$name.$job.json" >"$out/$name.$job.err" 2>&1 &
    pid=$!
    # fio's own start (exec, login) comes before its ramp: the window starts 0.5 s after the
    # ramp and lasts runtime - 2 s, timed from its start, so that it lies inside fio's own
    rxe_nap "$bench_ramp.5"
    t0=${EPOCHREALTIME/./}
    bench_snap "$name.$job.start"
    left=$((t0 + (runtime > 3 ? runtime - 2 : 1) * 1000000 - ${EPOCHREALTIME/./}))
    printf -v frac %06d $((left % 1000000))
    ((left > 0)) && rxe_nap "$((left / 1000000)).$frac"
    bench_snap "$name.$job.end"
    wait $pid || rc=$?
    return $rc
}

bench_report() {
    # shellcheck disable=SC2086 # the job names are words
    python3 - "$out" "$1" "$2" "$3" $bench_jobs <<'PY'
import glob, json, os, re, sys
def figure(v):  # a perftest figure; nan when perftest gave none
    try:
        return float(v)
    except ValueError:
        return float("nan")
out, bw4k, bw128k, lat = sys.argv[1], figure(sys.argv[2]), figure(sys.argv[3]), figure(sys.argv[4])
jobs = sys.argv[5:]
failed = []
def load(name, job):
    try:
        j = json.load(open("%s/%s.%s.json" % (out, name, job)))["jobs"][0]
        w = j["write"]
        if j.get("error"):
            failed.append("%s %s: fio error %d after %.1f s (see %s.%s.err)" % (
                name, job, j["error"], j.get("job_runtime", 0) / 1000, name, job))
        return w["bw_bytes"] / 1e6, w["iops"], w["clat_ns"]["mean"] / 1000
    except Exception:
        return None
print("%-18s %12s %12s %12s %10s" % ("job", "single MB/s", "pair MB/s", "link MB/s", "pair/bound"))
for j in jobs:
    s, p = load("single", j), load("pair", j)
    link = bw128k if "128k" in j else bw4k
    if not s or not p:
        print("%-18s missing results" % j)
        continue
    bound = s[0] if link != link else min(s[0], link)  # no link figure: the target's alone
    print("%-18s %12.1f %12.1f %12.1f %10.2f" % (j, s[0], p[0], link,
                                                p[0] / bound if bound > 0 else float("nan")))
    if j.endswith("qd1"):
        print("%-18s latency: single %.0f us, pair %.0f us (+%.0f us), ib_write_lat %.0f us" %
              ("", s[2], p[2], p[2] - s[2], lat))

for f in failed:
    print("FAILED: " + f)

# CPU during each measured window, per guest: where the emulated CPUs' time went.
def snap(path):
    t, hz, cpu, ncpu, threads, prefix = None, 100, None, 0, {}, ""
    for line in open(path, errors="replace"):
        if line.startswith("T "):
            _, t, hz = line.split()
            t, hz = float(t), int(hz)
        elif line.startswith("G "):
            prefix = line.split()[1] + ":"
        elif line.startswith("cpu "):
            cpu = [int(x) for x in line.split()[1:]]
        elif re.match(r"cpu\d", line):
            ncpu += 1
        elif ") " in line:
            head, rest = line.rsplit(") ", 1)
            tid, comm = head.split(" (", 1)
            f = rest.split()
            threads[int(tid)] = (prefix + comm, int(f[11]) + int(f[12]))
    return t, hz, cpu, max(ncpu, 1), threads
def group(comm):
    return re.sub(r"^(kworker/|ksoftirqd/|rcu_|migration/).*", r"\1*", comm)
starts = sorted(glob.glob(out + "/cpu/*.start"))
if starts:
    print()
    print("CPU in the measured windows, per guest (and the host's, with its QEMU threads when\n"
          "there are two guests), in % of one CPU; busy = all CPUs' non-idle time:")
for st in starts:
    en = st[:-len("start")] + "end"
    if not os.path.exists(en):
        continue
    t0, hz, c0, ncpu, th0 = snap(st)
    t1, _, c1, _, th1 = snap(en)
    win = (t1 - t0) * hz
    if win <= 0 or not c0 or not c1:
        continue
    d = [b - a for a, b in zip(c0, c1)]
    tot = sum(d[:8]) or 1
    pct = lambda x: 100.0 * x / tot * ncpu
    usr, sys_, irq, sirq, idle = d[0] + d[1], d[2], d[5], d[6], d[3] + d[4]
    per = {}
    for tid, (comm, ticks) in th1.items():
        dt = ticks - th0.get(tid, (comm, 0))[1]
        if dt > 0:
            k = group(comm)
            per[k] = per.get(k, 0) + dt
    top = sorted(per.items(), key=lambda kv: -kv[1])[:7]
    guest, tag = os.path.basename(st)[:-len(".start")].split(".", 1)
    print("%-7s %-28s %d CPU busy %3.0f%% (usr %.0f sys %.0f irq+softirq %.0f idle %.0f): %s" % (
        guest, tag, ncpu, pct(tot - idle), pct(usr), pct(sys_), pct(irq + sirq), pct(idle),
        ", ".join("%s %.0f" % (k, 100.0 * v / win) for k, v in top if 100.0 * v / win >= 0.5)))
PY
}
