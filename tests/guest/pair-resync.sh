#!/usr/bin/env bash
# Failure and resynchronisation of a pair, run INSIDE one guest by tools/test-guest (two daemons
# on one rxe device; node a owns LUN 0, 256 MiB, regions of 64 KiB):
#   paired          the two nodes pair
#   baseline        a stamped workload on node a; both copies identical afterwards, and node
#                   b's holds the last acknowledged write of every block
#   partner-killed  (writes of 4 KiB..1 MiB: a region is copied whole, so writes much smaller
#                   than a region cost more than twice their size to resync)
#                   node b is killed (SIGKILL) in the middle of a workload and started again
#                   5 s later: every write completes GOOD (policy available), node a marks
#                   what node b missed and, once b is back, resyncs it while the workload goes
#                   on; the bytes resynced are at most 2 x the bytes written without replica
#                   + 16 MiB (writes in flight), and no more than the quarter of the LUN that
#                   was written (and a region beyond it, for a write across its end)
#   sha256          both backing files identical after the resync
#   verify-b        node b's copy holds the last acknowledged write of every block of that run
#   owner-killed    node a is killed (SIGKILL) in the middle of a workload and started again:
#                   its log turns the regions in flight into dirty regions, which it resyncs
#   sha256-owner    both backing files identical again, and node b's copy verifies against the
#                   killed run's journal (a write it never acknowledged may or may not be there)
#   stop            both nodes drain and exit 0 on SIGTERM
# Prints one "guest-check: PASS|FAIL NAME" line per check; exits 1 if any failed.
# Usage: tests/guest/pair-resync.sh BUILD_DIR
set -u
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
build=$(cd "${1:?build dir}" && pwd)
. "$repo/tools/rxe-lib.sh"
. "$here/pair-lib.sh"
ip=${TWL_RXE_IP:?TWL_RXE_IP not set: run under tools/rxe-vm}
dir=$build/guest-tests/resync
rm -rf "$dir"
mkdir -p "$dir/a" "$dir/b"
iqn=iqn.2026-11.io.twinlun:pair
workload=$build/tests/workload/twl-workload
lun_bytes=$((256 << 20))
apart_bytes=$((64 << 20)) # the span written while node b is away: a quarter of the LUN
url="iscsi://127.0.0.1:3261/$iqn/0"

# a partner away for 5 s is given up for after 2 s: writes meanwhile go unreplicated
pair_timeout_ms=2000
pair_extra_groups='metrics = { listen = "127.0.0.1:9471"; };' \
    pair_config a b 3261 7471 7472 256M 'region_size = "64K";' >"$dir/a.conf"
pair_config b a 3262 7472 7471 256M 'region_size = "64K";' >"$dir/b.conf"
ctl_a() { "$build/ctl/twinlunctl" --socket /run/twinlun-a.sock "$@"; }
ctl_b() { "$build/ctl/twinlunctl" --socket /run/twinlun-b.sock "$@"; }
# lun0_json NODE FIELD: a field of LUN 0 in NODE's `twinlunctl luns --json`
lun0_json() {
    "$build/ctl/twinlunctl" --socket "/run/twinlun-$1.sock" luns --json |
        python3 -c "import json,sys; print(json.load(sys.stdin)['luns'][0]['$2'])"
}
# metric NAME: its value on node a's Prometheus endpoint
metric() {
    python3 - "$1" <<'PY'
import sys, urllib.request
page = urllib.request.urlopen("http://127.0.0.1:9471/metrics", timeout=10).read().decode()
vals = [l.split()[-1] for l in page.splitlines() if l.split(" ")[0] == sys.argv[1]]
print(vals[0] if vals else "missing")
PY
}
start_a() { rxe_node_start a "$dir/a" 3261 -- "$build/target/twinlund" --config "$dir/a.conf"; }
start_b() { rxe_node_start b "$dir/b" 3262 -- "$build/target/twinlund" --config "$dir/b.conf"; }


# resync_done N: until node a's log (a restarted node starts a new one) says its Nth resync is
# done, at most 180 s; prints that line
resync_done() {
    for _ in $(seq 1 900); do
        [ "$(grep -c 'resync LUN 0 done' "$dir/a/a.log")" -ge "$1" ] && break
        sleep 0.2
    done
    grep 'resync LUN 0 done' "$dir/a/a.log" | sed -n "$1p" | grep . ||
        { echo "no resync done within 180 s"; grep -h 'resync\|degraded' "$dir/a/a.log" | tail; return 1; }
}

baseline() {
    "$workload" run --url "$url" --journal "$dir/journal1" --ops 300 --qd 16 --max 1M \
        --seed 21 --prior-zero >"$dir/workload1.log" 2>&1 || { tail -3 "$dir/workload1.log"; return 1; }
    tail -1 "$dir/workload1.log"
    pair_same_sha || return 1
    # later runs overwrite some of these blocks: node b's copy is checked against it now
    pair_verify journal1 b
}

partner_killed() {
    local before
    before=$(grep -c 'resync LUN 0 done' "$dir/a/a.log") # the new pair's first copy, if over
    "$workload" run --url "$url" --journal "$dir/journal2" --ops 0 --seconds 16 --qd 2 \
        --min 4K --max 1M --lba-count $((apart_bytes / 512)) --seed 22 >"$dir/workload2.log" 2>&1 &
    local wpid=$! rc=0
    sleep 3
    rxe_node_kill b KILL
    rxe_node_wait b
    sleep 5
    start_b
    wait $wpid || rc=$?
    tail -1 "$dir/workload2.log"
    [ $rc = 0 ] || { echo "the workload saw failures (policy available must complete them)"; return 1; }
    grep -q 'degraded' "$dir/a/a.log" || { echo "node a never said degraded"; return 1; }
    local line resynced unrep
    line=$(resync_done $((before + 1))) || { echo "$line"; return 1; }
    echo "$line"
    resynced=$(sed -E 's/.* ([0-9]+) since the copies last differed.*/\1/' <<<"$line")
    unrep=$(sed -E 's/.*; ([0-9]+) bytes were written without replica.*/\1/' <<<"$line")
    echo "resynced $resynced bytes; written without replica $unrep bytes in a span of $apart_bytes; LUN $lun_bytes bytes"
    [ "$unrep" -gt 0 ] || { echo "nothing was written while node b was away"; return 1; }
    [ "$resynced" -gt 0 ] && [ "$resynced" -le $((2 * unrep + (16 << 20))) ] &&
        [ "$resynced" -le $((apart_bytes + (1 << 20))) ]
}


owner_killed() {
    "$workload" run --url "$url" --journal "$dir/journal3" --ops 0 --seconds 30 --qd 16 \
        --max 1M --seed 23 --allow-failures --timeout 20 >"$dir/workload3.log" 2>&1 &
    local wpid=$!
    sleep 4
    rxe_node_kill a KILL
    rxe_node_wait a
    wait $wpid
    tail -1 "$dir/workload3.log"
    cp "$dir/a/a.log" "$dir/a/a.log.killed"
    start_a
    pair_wait_paired 1 2 || return 1
    grep 'regions were in flight at the last stop' "$dir/a/a.log" | tail -1
    local inflight
    inflight=$(grep 'regions were in flight at the last stop' "$dir/a/a.log" | tail -1 |
        sed -E 's/.*: ([0-9]+) regions were in flight.*/\1/')
    [ "${inflight:-0}" -gt 0 ] || { echo "node a's log held nothing in flight"; return 1; }
    resync_done 1
}

# The admin holds a resync back and lets it go: with node a's resync paused, node b comes back
# after writes it missed; the LUN stays resync-paused with its dirty bytes unchanged, node b
# (which does not copy) refuses the request, and once resumed the copies converge.
resync_paused() {
    local before dirty dirty2 sync rc=0 out
    before=$(grep -c 'resync LUN 0 done' "$dir/a/a.log")
    out=$(ctl_a resync pause) || { echo "resync pause on a: $out"; return 1; }
    echo "a: $out"
    out=$(ctl_b resync pause 0 2>&1) && { echo "b accepted a pause of a LUN it does not copy"; return 1; }
    echo "b refuses: $out"
    [ "$(lun0_json b role)/$(lun0_json b alua)" = "secondary/standby" ] ||
        { echo "b's LUN 0 is $(lun0_json b role)/$(lun0_json b alua), want secondary/standby"; return 1; }
    rxe_node_kill b KILL
    rxe_node_wait b
    "$workload" run --url "$url" --journal "$dir/journal4" --ops 0 --seconds 4 --qd 4 \
        --max 256K --lba-count $((apart_bytes / 512)) --seed 24 >"$dir/workload4.log" 2>&1 ||
        rc=$?
    tail -1 "$dir/workload4.log"
    [ $rc = 0 ] || { echo "the workload saw failures"; return 1; }
    start_b
    pair_wait_paired 3 1 >/dev/null || { echo "not paired again"; return 1; }
    sleep 3
    sync=$(lun0_json a sync)
    dirty=$(lun0_json a dirty_bytes)
    sleep 2
    dirty2=$(lun0_json a dirty_bytes)
    echo "paused: a's LUN 0 $sync, dirty $dirty then $dirty2 bytes; metrics dirty $(metric 'twinlun_lun_dirty_bytes{lun="0"}'), connected $(metric twinlun_pair_connected), replicated $(metric twinlun_replication_bytes_total) bytes"
    ctl_a status | grep -E '^0 '
    [ "$sync" = resync-paused ] && [ "$dirty" -gt 0 ] && [ "$dirty" = "$dirty2" ] ||
        { echo "the resync did not stay paused"; return 1; }
    [ "$(grep -c 'resync LUN 0 done' "$dir/a/a.log")" = "$before" ] ||
        { echo "a resync finished while paused"; return 1; }
    [ "$(metric 'twinlun_lun_dirty_bytes{lun="0"}')" = "$dirty" ] &&
        [ "$(metric twinlun_pair_connected)" = 1 ] ||
        { echo "the metrics endpoint disagrees with twinlunctl"; return 1; }
    out=$(ctl_a resync resume 0) || { echo "resync resume on a: $out"; return 1; }
    echo "a: $out"
    resync_done $((before + 1)) || return 1
    [ "$(lun0_json a sync)" = in-sync ] || { echo "a's LUN 0 is $(lun0_json a sync) after the resume"; return 1; }
    # the copies' SHA-256 are compared after the next step (which resyncs only what was in
    # flight), so a difference left here shows there too
    pair_verify journal4 b
}

sha_owner() {
    pair_same_sha && pair_verify journal3 b
}

start_a
start_b
rxe_check paired pair_wait_paired
rxe_check baseline baseline
rxe_check partner-killed partner_killed
rxe_check sha256 pair_same_sha
rxe_check verify-b pair_verify journal2 b
rxe_check resync-paused resync_paused
rxe_check owner-killed owner_killed
rxe_check sha256-owner sha_owner
rxe_check stop pair_stop_both
pair_dump_logs
exit $rxe_failed
