#!/usr/bin/env bash
# Replication benchmark, run INSIDE one soft-RoCE guest by `tools/bench --pair`: on the same
# rxe link and in one run, perftest's ib_write_bw / ib_write_lat (the link's limit), twinlund
# alone (the target's limit) and a replicated pair (node A owns the LUN, node B applies every
# write), each driven by the same fio (libiscsi engine) with the same jobs:
#   randwrite-4k-qd32, write-128k-qd8, randwrite-4k-qd1 (latency)
# Prints a table and, per job, replicated MB/s against the slower of the two bounds (goal:
# >= 0.9) and the QD1 latency overhead against ib_write_lat; then the guest's CPU use in each
# measured window. The two-guest form (one node per guest): bench-pair-two-guests.sh.
# Usage: tests/guest/bench-pair.sh BUILD_DIR FIO RUNTIME_S
# shellcheck source-path=SCRIPTDIR
set -u
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
build=$(cd "${1:?build dir}" && pwd)
fio=${2:?fio binary}
runtime=${3:-10}
# shellcheck source=../../tools/rxe-lib.sh
. "$repo/tools/rxe-lib.sh"
# shellcheck source=bench-lib.sh
. "$here/bench-lib.sh"
ip=${TWL_RXE_IP:?TWL_RXE_IP not set: run under tools/rxe-vm}
dev=${TWL_RXE_DEV:-rxe0}
out=$build/bench-pair
rm -rf "$out"
mkdir -p "$out"
store=/dev/shm/twl-bench-pair
bench_shm_room
rm -rf "$store"
mkdir -p "$store/a" "$store/b" "$store/single"

# ---- the link: both ends on rxe0
link_bw() {
    bench_bw_server "$1" &
    local spid=$!
    sleep 1
    bench_bw_client "$1" "$ip"
    wait $spid
}
link_lat() {
    bench_lat_server &
    local spid=$!
    sleep 1
    bench_lat_client "$ip"
    wait $spid
}
bw4k=$(link_bw 4096)
bw128k=$(link_bw 131072)
lat=$(link_lat)
echo "link: ib_write_bw 4K $bw4k MB/s, 128K $bw128k MB/s; ib_write_lat 4K $lat us"

# ---- twinlund alone
bench_perf_start
bench_config single "" 3271 >"$out/single.conf"
rxe_node_start single "$store/single" 3271 -- "$build/target/twinlund" --config "$out/single.conf"
sleep 1
for j in $bench_jobs; do bench_run_fio single 3271 "$j"; done
rxe_node_kill single TERM
rxe_node_wait single
rm -rf "$store/single" # /dev/shm is half the guest's memory: room for the pair's two LUNs

# ---- the pair: two daemons on the same rxe device
bench_config a b 3281 "$ip:7481" "$ip:7482" >"$out/a.conf"
bench_config b a 3282 "$ip:7482" "$ip:7481" >"$out/b.conf"
rxe_node_start a "$store/a" 3281 -- "$build/target/twinlund" --config "$out/a.conf"
rxe_node_start b "$store/b" 3282 -- "$build/target/twinlund" --config "$out/b.conf"
rxe_wait_grep 'paired with' "$store/a/a.log" 20
grep -h 'paired with' "$store/a/a.log"
for j in $bench_jobs; do bench_run_fio pair 3281 "$j"; done
rxe_node_kill a TERM
rxe_node_kill b TERM
rxe_node_wait a
rxe_node_wait b
cp "$store/a/a.log" "$store/b/b.log" "$out/" 2>/dev/null

bench_perf_stop
bench_report "$bw4k" "$bw128k" "$lat"
rm -rf "$store"
