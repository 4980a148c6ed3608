#!/usr/bin/env bash
# Replication benchmark across two guests, run on the HOST by `tools/bench --pair --two-guests`:
# guest 1 runs fio (the client), twinlund alone and node a of the pair; guest 2 runs node b;
# the rxe link between them is the two-guest test's virtual link (shape b of
# ../shared/RXE.md). On that link and in one run: ib_write_bw (4 KiB, 128 KiB) and
# ib_write_lat (4 KiB) from guest 1 to guest 2, twinlund alone in guest 1 and the pair, the
# same fio jobs against each. Prints the same table as the one-guest form (bench-pair.sh),
# then each guest's CPU use in each measured window. Results in BUILD_DIR/bench-pair-two-guests.
# Usage: tests/guest/bench-pair-two-guests.sh BUILD_DIR FIO RUNTIME_S
# Environment: TWL_BENCH_CPUS_A / TWL_BENCH_CPUS_B vCPUs of guest 1 / guest 2 (default
# TWL_RXE_PAIR_CPUS, else 1 each: this machine kind has 2 host cores), TWL_RXE_PAIR_MEM,
# TWL_RXE_LINK_PORT (the link's UDP ports are that + 1 and + 2; default 47930).
# shellcheck source-path=SCRIPTDIR
set -u
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
build=$(cd "${1:?build dir}" && pwd)
fio=${2:?fio binary}
runtime=${3:-10}
# its own UDP ports for the link, apart from the pair tests' (47901/47902)
: "${TWL_RXE_LINK_PORT:=47930}"
# shellcheck source=../../tools/rxe-lib.sh
. "$repo/tools/rxe-lib.sh"
# shellcheck source=bench-lib.sh
. "$here/bench-lib.sh"
export TWL_BUILD_DIR=$build
: "${TWL_RXE_PAIR_TIMEOUT:=$((400 + 12 * (runtime + 2)))}"
export TWL_RXE_PAIR_TIMEOUT
cpus_a=${TWL_BENCH_CPUS_A:-${TWL_RXE_PAIR_CPUS:-1}}
cpus_b=${TWL_BENCH_CPUS_B:-${TWL_RXE_PAIR_CPUS:-1}}
dir=$build/bench-pair-two-guests
rm -rf "$dir"
mkdir -p "$dir"
echo "bench-pair-two-guests: guest a $cpus_a vCPU (fio, twinlund alone, node a), guest b $cpus_b vCPU (node b), ${runtime} s per job"
TWL_RXE_PAIR_CPUS=$cpus_a rxe_guest_start a 1 "$dir" -- \
    "$here/bench-pair-node.sh" a "$dir" "$build" "$fio" "$runtime"
TWL_RXE_PAIR_CPUS=$cpus_b rxe_guest_start b 2 "$dir" -- \
    "$here/bench-pair-node.sh" b "$dir" "$build" "$fio" "$runtime"
# The host's CPU and both QEMUs' threads in each measured window (guest a announces them)
host_snaps() {
    local m
    while [ ! -e "$dir/b.done" ] && [ ! -e "$dir/a.failed" ] && [ ! -e "$dir/b.failed" ]; do
        for m in "$dir"/snap.*; do
            [ -e "$m" ] && [ ! -e "$dir/cpu/host.${m#"$dir/snap."}" ] &&
                bench_qemu_snap "$dir/cpu/host.${m#"$dir/snap."}" "$dir" a b
        done
        sleep 0.1
    done
}
mkdir -p "$dir/cpu"
host_snaps &
sampler=$!
rc_a=0
rxe_guest_wait a || rc_a=$?
if [ "$rc_a" != 0 ]; then
    : >"$dir/a.failed"
    rxe_wait_file "$dir/b.done" 30 || rxe_guest_kill b
fi
rc_b=0
rxe_guest_wait b || rc_b=$?
kill "$sampler" 2>/dev/null
wait "$sampler" 2>/dev/null
if [ "$rc_a" != 0 ] || [ "$rc_b" != 0 ] || [ ! -s "$dir/report.txt" ]; then
    echo "bench-pair-two-guests: FAIL: guest exits a $rc_a, b $rc_b"
    for g in a b; do
        echo "---- guest $g ----"
        tail -n 30 "$dir/$g.out"
    done
    exit 1
fi
grep -h '^link:\|paired with' "$dir/a.out"
cat "$dir/report.txt"
echo "bench-pair-two-guests: raw output in $dir"
