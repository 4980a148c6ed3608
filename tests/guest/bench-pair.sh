#!/usr/bin/env bash
# Replication benchmark, run INSIDE one soft-RoCE guest by `tools/bench --pair`: on the same
# rxe link and in one run, perftest's ib_write_bw / ib_write_lat (the link's limit), twinlund
# alone (the target's limit) and a replicated pair (node A owns the LUN, node B applies every
# write), each driven by the same fio (libiscsi engine) with the same jobs:
#   randwrite-4k-qd32, write-128k-qd8, randwrite-4k-qd1 (latency)
# Prints a table and, per job, replicated MB/s against the slower of the two bounds (goal:
# >= 0.9) and the QD1 latency overhead against ib_write_lat.
# Usage: tests/guest/bench-pair.sh BUILD_DIR FIO RUNTIME_S
set -u
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
build=$(cd "${1:?build dir}" && pwd)
fio=${2:?fio binary}
runtime=${3:-10}
. "$repo/tools/rxe-lib.sh"
ip=${TWL_RXE_IP:?TWL_RXE_IP not set: run under tools/rxe-vm}
dev=${TWL_RXE_DEV:-rxe0}
out=$build/bench-pair
rm -rf "$out"
mkdir -p "$out"
store=/dev/shm/twl-bench-pair
rm -rf "$store"
mkdir -p "$store/a" "$store/b" "$store/single"
iqn=iqn.2026-11.io.twinlun:bench
jobs="randwrite-4k-qd32 write-128k-qd8 randwrite-4k-qd1"

job_args() {
    case $1 in
    randwrite-4k-qd32) echo "--rw=randwrite --bs=4k --iodepth=32" ;;
    write-128k-qd8) echo "--rw=write --bs=128k --iodepth=8" ;;
    randwrite-4k-qd1) echo "--rw=randwrite --bs=4k --iodepth=1" ;;
    esac
}

# ---- the link: ib_write_bw at 4 KiB and 128 KiB messages, ib_write_lat at 4 KiB
link() { # size -> MB/s
    ib_write_bw -R -d "$dev" -s "$1" -D "$runtime" >"$out/bw.$1.server" 2>&1 &
    local spid=$!
    sleep 1
    ib_write_bw -R -d "$dev" -s "$1" -D "$runtime" "$ip" >"$out/bw.$1.client" 2>&1
    wait $spid
    awk '/^ *[0-9]+ +[0-9]+/ { v = $4 } END { printf "%.1f", v * 1.048576 }' "$out/bw.$1.client"
}
link_lat() { # -> mean µs
    ib_write_lat -R -d "$dev" -s 4096 -n 2000 >"$out/lat.server" 2>&1 &
    local spid=$!
    sleep 1
    ib_write_lat -R -d "$dev" -s 4096 -n 2000 "$ip" >"$out/lat.client" 2>&1
    wait $spid
    awk '/^ *4096 +[0-9]+/ { v = $6 } END { printf "%.1f", v }' "$out/lat.client"
}
bw4k=$(link 4096)
bw128k=$(link 131072)
lat=$(link_lat)
echo "link: ib_write_bw 4K $bw4k MB/s, 128K $bw128k MB/s; ib_write_lat 4K $lat us"

# ---- fio against a portal
run_fio() { # name port job
    # shellcheck disable=SC2046
    "$fio" --name="$3" --ioengine=libiscsi \
        --filename="iscsi\://127.0.0.1\:$2/iqn.2026-11.io.twinlun\:bench/0" \
        $(job_args "$3") --numjobs=1 --time_based --runtime="$runtime" --ramp_time=2 \
        --size=256m --output-format=json --output="$out/$1.$3.json" >"$out/$1.$3.err" 2>&1
}

config() { # name partner iscsi_port bp_port partner_bp_port (partner "" = single node)
    echo "node = { name = \"$1\"; state_dir = \"$store/$1\"; };"
    echo "iscsi = { listen = \"127.0.0.1:$3\"; threads = 1; };"
    [ -n "$2" ] && echo "pair = { partner = \"$2\"; listen = \"$ip:$4\"; partner_address = \"$ip:$5\"; };"
    local owner=""
    [ -n "$2" ] && owner="owner = \"a\";"
    echo "targets = ( { iqn = \"$iqn\"; luns = ( { id = 0; path = \"$store/$1/lun0.img\";"
    echo "  size = \"256M\"; create = true; $owner } ); } );"
}

config single "" 3271 0 0 >"$out/single.conf"
rxe_node_start single "$store/single" 3271 -- "$build/target/twinlund" --config "$out/single.conf"
sleep 1
for j in $jobs; do run_fio single 3271 "$j"; done
rxe_node_kill single TERM
rxe_node_wait single

config a b 3281 7481 7482 >"$out/a.conf"
config b a 3282 7482 7481 >"$out/b.conf"
rxe_node_start a "$store/a" 3281 -- "$build/target/twinlund" --config "$out/a.conf"
rxe_node_start b "$store/b" 3282 -- "$build/target/twinlund" --config "$out/b.conf"
for _ in $(seq 1 100); do
    grep -q 'paired with' "$store/a/a.log" 2>/dev/null && break
    sleep 0.2
done
grep -h 'paired with' "$store/a/a.log"
for j in $jobs; do run_fio pair 3281 "$j"; done
rxe_node_kill a TERM
rxe_node_kill b TERM
rxe_node_wait a
rxe_node_wait b
cp "$store/a/a.log" "$store/b/b.log" "$out/" 2>/dev/null

python3 - "$out" "$bw4k" "$bw128k" "$lat" $jobs <<'PY'
import json, sys
out, bw4k, bw128k, lat = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
jobs = sys.argv[5:]
def load(name, job):
    try:
        w = json.load(open("%s/%s.%s.json" % (out, name, job)))["jobs"][0]["write"]
        return w["bw_bytes"] / 1e6, w["iops"], w["clat_ns"]["mean"] / 1000
    except Exception as e:
        return None
print("%-18s %12s %12s %12s %10s" % ("job", "single MB/s", "pair MB/s", "link MB/s", "pair/bound"))
for j in jobs:
    s, p = load("single", j), load("pair", j)
    link = bw128k if "128k" in j else bw4k
    if not s or not p:
        print("%-18s missing results" % j)
        continue
    bound = min(s[0], link)
    print("%-18s %12.1f %12.1f %12.1f %10.2f" % (j, s[0], p[0], link, p[0] / bound))
    if j.endswith("qd1"):
        print("%-18s latency: single %.0f us, pair %.0f us (+%.0f us), ib_write_lat %.0f us" %
              ("", s[2], p[2], p[2] - s[2], lat))
PY
rm -rf "$store"
