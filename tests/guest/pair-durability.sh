#!/usr/bin/env bash
# The partner's durability point and the strict policy, run INSIDE one guest by tools/test-guest
# (shape a of ../shared/RXE.md):
#   stranger-not-applied  node B alone: a host without the pair's secret (rdma_stranger)
#                  connects, sends a hello with a wrong MAC and a change record right behind
#                  it: node B refuses and drops it, and neither settling its ring after that
#                  connection nor its next start (replay) writes the stranger's block
#   paired         node A and node B pair; node B acknowledges at ack = "received" (its
#                  inflight ring in a file mapped through libpmem2) and, by fault injection,
#                  applies each change 20 ms late
#   acked-kill     a workload on node A completes (every write acknowledged by node B's ring),
#                  then node B is killed (SIGKILL) while acknowledged changes are still in its
#                  ring, not applied
#   replayed       node B restarted applies those changes from its ring before it serves, says
#                  how many (> 0), and pairs again
#   sha256         node A's and node B's backing files are identical
#   verify-b       node B's copy holds the last acknowledged write of every block
#   strict         node A restarted with policy "strict": node B killed mid-workload makes
#                  writes fail with CHECK CONDITION (never GOOD without the replica) within
#                  the timeouts, and no command hangs
# Prints one "guest-check: PASS|FAIL NAME" line per check; exits 1 if any failed.
# Usage: tests/guest/pair-durability.sh BUILD_DIR
set -u
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
build=$(cd "${1:?build dir}" && pwd)
. "$repo/tools/rxe-lib.sh"
. "$here/pair-lib.sh"
ip=${TWL_RXE_IP:?TWL_RXE_IP not set: run under tools/rxe-vm}
dir=$build/guest-tests/durability
rm -rf "$dir"
mkdir -p "$dir/a" "$dir/b"
iqn=iqn.2026-11.io.twinlun:pair
workload=$build/tests/workload/twl-workload
url="iscsi://127.0.0.1:3261/$iqn/0"
# the ring file must be on a local file system that maps shared (not the 9p share)
ring=/dev/shm/twl-durability-b.ring
rm -f "$ring"
pair_config a b 3261 7471 7472 >"$dir/a.conf"
pair_config a b 3261 7471 7472 64M 'policy = "strict";' >"$dir/a-strict.conf"
pair_config b a 3262 7472 7471 64M "ack = \"received\"; ring_file = \"$ring\";" >"$dir/b.conf"

# stranger_not_applied: the stranger's block (LBA 2048) never reaches node B's copy
stranger_not_applied() {
    local sd=$dir/b-stranger rc=0 src=0 lba=2048 hits
    mkdir -p "$sd/1" "$sd/2"
    rxe_node_start b "$sd/1" 3262 -- "$build/target/twinlund" --config "$dir/b.conf"
    timeout 60 "$build/rdma/rdma_stranger" --addr "$ip" --port 7472 --lun 0 --lba $lba \
        --linger 30 || src=$?
    grep -h "not authenticated" "$sd/1/b.log" | head -1
    [ $src = 3 ] || { echo "the stranger was not dropped (exit $src)"; rc=1; }
    sleep 1 # the ring settled after the refused connection
    rxe_node_kill b KILL
    rxe_node_wait b
    # the next start replays what the ring's header says was acknowledged and not applied
    rxe_node_start b "$sd/2" 3262 -- "$build/target/twinlund" --config "$dir/b.conf"
    rxe_wait_grep 'ready' "$sd/2/b.log" 20
    rxe_node_kill b TERM
    rxe_node_wait b
    grep -q "not authenticated with this node's pair.secret" "$sd/1/b.log" ||
        { echo "node b did not say why it refused"; rc=1; }
    ! grep -h 'durable ring: applied' "$sd/1/b.log" "$sd/2/b.log" ||
        { echo "node b replayed records of the stranger"; rc=1; }
    hits=$(dd if="$dir/b/lun0.img" bs=512 skip=$lba count=1 2>/dev/null | grep -c STRANGER)
    echo "stranger's bytes in node b's block $lba: $hits"
    [ "$hits" = 0 ] || rc=1
    return $rc
}
rxe_check stranger-not-applied stranger_not_applied

rxe_node_start a "$dir/a" 3261 -- "$build/target/twinlund" --config "$dir/a.conf"
rxe_node_start b "$dir/b" 3262 -- env TWINLUN_FAULT_APPLY_DELAY_MS=20 \
    "$build/target/twinlund" --config "$dir/b.conf"

paired() {
    pair_wait_paired || return 1
    grep -h 'ack received' "$dir/b/b.log"
    grep -q 'ack received: the inflight ring is' "$dir/b/b.log"
}

acked_kill() {
    "$workload" run --url "$url" --journal "$dir/journal" --ops 400 --qd 16 --max 262144 \
        --seed 11 >"$dir/workload.log" 2>&1
    local rc=$?
    rxe_node_kill b KILL
    rxe_node_wait b
    tail -1 "$dir/workload.log"
    grep -h 'applied [0-9]* of its records' "$dir/b/b.log"
    [ $rc = 0 ]
}

replayed() {
    rxe_node_start b "$dir/b" 3262 -- "$build/target/twinlund" --config "$dir/b.conf"
    pair_wait_paired 2 1 || return 1
    local line n
    line=$(grep -h 'durable ring: applied' "$dir/b/b.log")
    echo "$line"
    n=$(echo "$line" | sed -n 's/.*applied \([0-9]*\) acknowledged.*/\1/p')
    [ "${n:-0}" -gt 0 ] || { echo "nothing was left to replay: the test did not test it"; return 1; }
}


strict() {
    rxe_node_kill a TERM
    rxe_node_wait a
    mv "$dir/a/a.log" "$dir/a/a-available.log"
    rxe_node_start a "$dir/a" 3261 -- "$build/target/twinlund" --config "$dir/a-strict.conf"
    pair_wait_paired 1 2 || return 1
    "$workload" run --url "$url" --journal "$dir/journal-strict" --ops 2000 --qd 16 \
        --max 262144 --seed 12 >"$dir/workload-strict.log" 2>&1 &
    local wpid=$! rc=0 t0
    sleep 1
    rxe_node_kill b KILL
    rxe_node_wait b
    t0=$(date +%s)
    # bounded: a dead partner is noticed within dead_ms, a stuck replica within timeout_ms
    timeout 120 tail --pid=$wpid -f /dev/null
    wait $wpid || rc=$?
    echo "workload ended $(($(date +%s) - t0)) s after the kill, exit $rc"
    tail -2 "$dir/workload-strict.log"
    grep -h 'replica failed' "$dir/a/a.log" | head -1
    [ $rc != 0 ] || { echo "every write completed GOOD without its replica"; return 1; }
    grep -q 'replica failed' "$dir/a/a.log" || { echo "node a logged no failed replica"; return 1; }
    ! grep -q 'degraded: a write completed' "$dir/a/a.log" ||
        { echo "node a completed a write without its replica"; return 1; }
}

rxe_check paired paired
if [ $rxe_failed = 0 ]; then
    rxe_check acked-kill acked_kill
    rxe_check replayed replayed
    rxe_check sha256 pair_same_sha
    rxe_check verify-b pair_verify journal b
    rxe_check strict strict
fi
rxe_node_kill a TERM 2>/dev/null
rxe_node_kill b KILL 2>/dev/null
rxe_node_wait a
pair_dump_logs
rm -f "$ring"
exit $rxe_failed
