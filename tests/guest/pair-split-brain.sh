#!/usr/bin/env bash
# Generations and split brain, run INSIDE one guest by tools/test-guest (two daemons on one rxe
# device; node a owns LUN 0, 64 MiB, regions of 64 KiB):
#   first-copy      node a's copy holds data before the pair ever met (8 MiB of it random);
#                   node b's is new: the first handshake says "new pair", node a copies every
#                   region (the never-written ones as deallocation) and both copies end equal
#   status          twinlunctl status, text and --json, on both nodes: valid JSON, node a
#                   primary and node b secondary, both in sync
#   apart           node b killed, node a written alone (journal a); node a stopped, node b
#                   started alone and promoted by twinlunctl (refused while... nothing: the
#                   partner is away), then written alone (journal b, overlapping a's span)
#   split-brain     node a started: both nodes refuse to pair, saying "split brain"; no resync
#                   runs; twinlunctl status says split-brain; each copy still verifies against
#                   its own journal and the two copies differ
#   resolve-refused twinlunctl resolve --discard with a name that is neither node: exit 1
#   resolve         twinlunctl resolve --discard b on node b: the nodes pair, node a resyncs
#                   the union of both sides' dirty regions (at most both spans + 1 MiB, not the
#                   LUN), both copies end identical and node b's verifies against journal a
#   promote-refused twinlunctl promote while the partner is connected: exit 1, and why
#   stop            both nodes drain and exit 0 on SIGTERM
# Prints one "guest-check: PASS|FAIL NAME" line per check; exits 1 if any failed.
# Usage: tests/guest/pair-split-brain.sh BUILD_DIR
set -u
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
build=$(cd "${1:?build dir}" && pwd)
. "$repo/tools/rxe-lib.sh"
. "$here/pair-lib.sh"
ip=${TWL_RXE_IP:?TWL_RXE_IP not set: run under tools/rxe-vm}
dir=$build/guest-tests/split-brain
rm -rf "$dir"
mkdir -p "$dir/a" "$dir/b"
iqn=iqn.2026-11.io.twinlun:pair
workload=$build/tests/workload/twl-workload
ctl=$build/ctl/twinlunctl
span=$((16 << 20)) # bytes each node writes alone; b's span starts in the middle of a's

pair_timeout_ms=2000
pair_config a b 3261 7471 7472 64M 'region_size = "64K";' >"$dir/a.conf"
pair_config b a 3262 7472 7471 64M 'region_size = "64K";' >"$dir/b.conf"
start_a() { rxe_node_start a "$dir/a" 3261 -- "$build/target/twinlund" --config "$dir/a.conf"; }
start_b() { rxe_node_start b "$dir/b" 3262 -- "$build/target/twinlund" --config "$dir/b.conf"; }
ctl_a() { "$ctl" --socket /run/twinlun-a.sock "$@"; }
ctl_b() { "$ctl" --socket /run/twinlun-b.sock "$@"; }

# done_count NODE: how many resyncs NODE's log reports done
done_count() { grep -c 'resync LUN 0 done' "$dir/$1/$1.log"; }
# wait_done NODE N: until NODE's log reports N resyncs done (at most 120 s); prints the last
wait_done() {
    for _ in $(seq 1 600); do
        [ "$(done_count "$1")" -ge "$2" ] && break
        sleep 0.2
    done
    grep 'resync LUN 0 done' "$dir/$1/$1.log" | sed -n "$2p" | grep . ||
        { echo "no resync done within 120 s"; grep -h 'resync\|LUN 0' "$dir/$1/$1.log" | tail; return 1; }
}

first_copy() {
    grep -q 'new pair; this copy is the sync source, every region copied' "$dir/a/a.log" ||
        { echo "node a did not start a full copy as a new pair"; grep 'LUN 0' "$dir/a/a.log"; return 1; }
    wait_done a 1 || return 1
    pair_same_sha
}

# status_json NODE ROLE SYNC: NODE's status --json parses, and LUN 0 has ROLE and SYNC
status_json() {
    local out
    out=$("ctl_$1" status --json) || { echo "status --json on $1 failed"; return 1; }
    python3 -c '
import json, sys
s = json.loads(sys.argv[1])
lun = s["luns"][0]
print("%s: LUN 0 %s, %s, %d dirty bytes, pair connected %s" % (s["node"], lun["role"], lun["sync"], lun["dirty_bytes"], s["pair"]["connected"]))
sys.exit(0 if (lun["role"], lun["sync"]) == (sys.argv[2], sys.argv[3]) else 1)
' "$out" "$2" "$3"
}

status() {
    ctl_a status && ctl_b status || return 1
    status_json a primary in-sync && status_json b secondary in-sync
}

apart() {
    rxe_node_kill b KILL
    rxe_node_wait b
    "$workload" run --url "iscsi://127.0.0.1:3261/$iqn/0" --journal "$dir/journal-a" --ops 0 \
        --seconds 4 --qd 4 --min 4K --max 256K --lba-count $((span / 512)) --seed 31 \
        >"$dir/workload-a.log" 2>&1 || { tail -3 "$dir/workload-a.log"; return 1; }
    tail -1 "$dir/workload-a.log"
    rxe_node_kill a TERM
    rxe_node_wait a || { echo "node a did not stop cleanly"; return 1; }
    start_b
    sleep 1
    ctl_b promote 0 || { echo "promote refused"; return 1; }
    status_json b primary partner-away || status_json b primary degraded || return 1
    "$workload" run --url "iscsi://127.0.0.1:3262/$iqn/0" --journal "$dir/journal-b" --ops 0 \
        --seconds 4 --qd 4 --min 4K --max 256K --lba-start $((span / 2 / 512)) \
        --lba-count $((span / 512)) --seed 32 >"$dir/workload-b.log" 2>&1 ||
        { tail -3 "$dir/workload-b.log"; return 1; }
    tail -1 "$dir/workload-b.log"
}

split_brain() {
    local before_a
    start_a
    rxe_wait_grep 'split brain' "$dir/a/a.log" 30 || { echo "node a never said split brain"; tail "$dir/a/a.log"; return 1; }
    rxe_wait_grep 'split brain' "$dir/b/b.log" 30 || { echo "node b never said split brain"; tail "$dir/b/b.log"; return 1; }
    grep -h 'not pairing' "$dir/a/a.log" "$dir/b/b.log"
    before_a=$(done_count a)
    sleep 3 # retries of the handshake must keep refusing
    grep -q 'paired with' "$dir/a/a.log" && { echo "node a paired despite the split brain"; return 1; }
    [ "$(done_count a)" = "$before_a" ] || { echo "a resync ran in split brain"; return 1; }
    [ "$(grep -c 'not pairing' "$dir/a/a.log")" = 1 ] || { echo "the refusal was logged more than once"; return 1; }
    status_json a primary split-brain && status_json b primary split-brain || return 1
    ctl_a status | grep 'refused:' || return 1
    pair_verify journal-a a && pair_verify journal-b b || return 1
    ! pair_same_sha
}

resolve_refused() {
    local rc=0
    ctl_a resolve --discard c || rc=$?
    [ $rc = 1 ]
}

resolve() {
    ctl_b resolve --discard b || return 1
    pair_wait_paired 1 1 || return 1
    local line bytes
    line=$(wait_done a 1) || { echo "$line"; return 1; }
    echo "$line"
    bytes=$(sed -E 's/.* ([0-9]+) since the copies last differed.*/\1/' <<<"$line")
    echo "resynced $bytes bytes; each node wrote a span of $span alone, the spans overlapping by half"
    rxe_wait_grep 'this copy equals a' "$dir/b/b.log" 10 || { echo "node b did not take the new generation"; return 1; }
    pair_same_sha && pair_verify journal-a b || return 1
    status_json a primary in-sync && status_json b secondary in-sync || return 1
    [ "$bytes" -gt 0 ] && [ "$bytes" -le $((span * 3 / 2 + (1 << 20))) ]
}

promote_refused() {
    local out rc=0
    out=$(ctl_b promote 2>&1) || rc=$?
    echo "$out"
    [ $rc = 1 ] && grep -q 'is connected' <<<"$out"
}

# node a's copy has data before the pair first meets
truncate -s 64M "$dir/a/lun0.img"
dd if=/dev/urandom of="$dir/a/lun0.img" bs=1M seek=16 count=8 conv=notrunc status=none
start_a
start_b
rxe_check paired pair_wait_paired
rxe_check first-copy first_copy
rxe_check status status
rxe_check apart apart
rxe_check split-brain split_brain
rxe_check resolve-refused resolve_refused
rxe_check resolve resolve
rxe_check promote-refused promote_refused
rxe_check stop pair_stop_both
pair_dump_logs
exit $rxe_failed
