#!/usr/bin/env bash
# Takeover and giveback with libiscsi initiators, run INSIDE one guest by tools/test-guest (two
# daemons on one rxe device, as pair-replication.sh): LUN 0 is node a's.
#   takeover-loaded  'twinlunctl takeover' on node b while twl-workload writes through node a:
#                    exit 0, node a hands over (drained), node b serves
#   workload-ok      every write the workload saw fail was refused with a retryable NOT READY
#                    (ALUA transitioning or standby) or the unit attention of the ALUA change
#   acked-on-b       once in sync, node b's copy holds every acknowledged write, and the two
#                    copies are identical
#   giveback         'twinlunctl giveback' on node b: node a serves again
#   pr-before        initiator X registers (ALL_TG_PT) and reserves Write Exclusive -
#                    Registrants Only through node a; initiator Z registers through node b,
#                    which stands by and has node a carry it out; both nodes report the same
#                    keys, generation and holder
#   pr-takeover      'twinlunctl takeover' on node b, idle
#   pr-after         node b reports what node a did before; initiator Y (not registered) is
#                    fenced through node b (RESERVATION CONFLICT), X writes through node b, and
#                    node a's port refuses media access as standby
#   pr-giveback      'twinlunctl giveback' on node b: node a serves again, X writes through it,
#                    and X clears the reservations
#   refused-resync   node a wrote with node b away and its resync is paused: 'takeover' on b
#                    and 'giveback all' on a are refused (exit 1) with the reason
#   forced           after 'resync resume', 'takeover --force' on b waits for the copies to
#                    converge and moves the LUN; copies identical, node b's holds every write
# Prints one "guest-check: PASS|FAIL NAME" line per check; exits 1 if any failed.
# Usage: tests/guest/pair-takeover-pr.sh BUILD_DIR
set -u
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
build=$(cd "${1:?build dir}" && pwd)
. "$repo/tools/rxe-lib.sh"
. "$here/pair-lib.sh"
ip=${TWL_RXE_IP:?TWL_RXE_IP not set: run under tools/rxe-vm}
dir=$build/guest-tests/takeover-pr
rm -rf "$dir"
mkdir -p "$dir/a" "$dir/b"
iqn=iqn.2026-11.io.twinlun:pair
workload=$build/tests/workload/twl-workload
prcheck=$build/tests/twl-prcheck
ctl=$build/ctl/twinlunctl
url_a="iscsi://127.0.0.1:3261/$iqn/0"
url_b="iscsi://127.0.0.1:3262/$iqn/0"
x=iqn.2026-11.io.twinlun:host-x
y=iqn.2026-11.io.twinlun:host-y
z=iqn.2026-11.io.twinlun:host-z

pair_config a b 3261 7481 7482 >"$dir/a.conf"
pair_config b a 3262 7482 7481 >"$dir/b.conf"

ctl_on() { # NODE ARGS...: twinlunctl on NODE's admin socket, its output in $dir/ctl.out
    local node=$1 rc=0
    shift
    "$ctl" --socket "/run/twinlun-$node.sock" "$@" >"$dir/ctl.out" 2>&1 || rc=$?
    echo "twinlunctl on $node $*: exit $rc: $(head -c 600 "$dir/ctl.out")"
    return $rc
}

start_node() { rxe_node_start "$1" "$dir/$1" "$2" -- "$build/target/twinlund" --config "$dir/$1.conf"; }

# in_sync NODE: NODE says LUN 0 is in-sync with its partner connected, within 30 s
in_sync() {
    for _ in $(seq 1 150); do
        "$ctl" --socket "/run/twinlun-$1.sock" status --json 2>/dev/null |
            python3 -c 'import json,sys; s=json.load(sys.stdin); sys.exit(0 if s["pair"]["connected"] and s["luns"][0]["sync"]=="in-sync" else 1)' &&
            return 0
        sleep 0.2
    done
    "$ctl" --socket "/run/twinlun-$1.sock" status
    return 1
}

serves() { # NODE: NODE's LUN 0 is primary there
    "$ctl" --socket "/run/twinlun-$1.sock" status --json 2>/dev/null |
        python3 -c 'import json,sys; s=json.load(sys.stdin); sys.exit(0 if s["luns"][0]["role"]=="primary" else 1)'
}

pr_before() {
    "$prcheck" "$url_a" "$x" register 0xa1 && "$prcheck" "$url_b" "$z" register 0xc3 &&
        "$prcheck" "$url_a" "$x" reserve 0xa1 || return 1
    grep -h 'carried out here' "$dir/a/a.log" | tail -1 | grep -q "host-z through b's port 2" ||
        { echo "node a did not carry out Z's registration"; return 1; }
    "$prcheck" "$url_a" "$x" show >"$dir/pr-a.txt" && "$prcheck" "$url_b" "$y" show >"$dir/pr-b.txt" ||
        return 1
    echo "a: $(cat "$dir/pr-a.txt")"
    echo "b: $(cat "$dir/pr-b.txt")"
    grep -q 'keys a1,c3 holder a1 type 5' "$dir/pr-a.txt" && cmp -s "$dir/pr-a.txt" "$dir/pr-b.txt"
}

takeover_loaded() {
    "$workload" run --url "$url_a" --journal "$dir/journal1" --ops 1500 --qd 16 \
        --max 262144 --seed 21 --allow-failures >"$dir/workload1.log" 2>&1 &
    local wpid=$! rc=0
    sleep 2
    ctl_on b takeover || rc=1
    wait $wpid
    tail -1 "$dir/workload1.log"
    grep -h 'handed over to b\|handing over' "$dir/a/a.log" | tail -2
    grep -h 'handed over by a' "$dir/b/b.log" | tail -1
    [ $rc = 0 ] && grep -q 'taken over from a' "$dir/ctl.out" && serves b && ! serves a
}

workload_ok() {
    # failed commands are listed with their sense: only NOT READY, ALUA transitioning (04/0A)
    # or standby (04/0B), and the UNIT ATTENTION of the change (2A/06) may appear
    local bad
    grep 'not acknowledged' "$dir/workload1.log" | head -2
    bad=$(grep 'not acknowledged' "$dir/workload1.log" |
        grep -Ev 'sense key 0x2 .*ASC/ASCQ 0x040(a|b)|sense key 0x6 .*ASC/ASCQ 0x2a06')
    echo "$(grep -c 'not acknowledged' "$dir/workload1.log") listed failures, of another kind:"
    echo "${bad:-none}" | head -5
    [ -z "$bad" ]
}

acked_on_b() {
    in_sync b || return 1
    pair_verify journal1 b && pair_same_sha
}

pr_after() {
    local rc=0 out
    "$prcheck" "$url_b" "$x" show >"$dir/pr-b-after.txt" || return 1
    echo "b after: $(cat "$dir/pr-b-after.txt")"
    cmp -s "$dir/pr-a.txt" "$dir/pr-b-after.txt" || { echo "differs from before"; rc=1; }
    out=$("$prcheck" "$url_b" "$y" write 100)
    echo "Y through b: $out"
    [ "$out" = RESERVATION-CONFLICT ] || rc=1
    out=$("$prcheck" "$url_b" "$x" write 100)
    echo "X through b: $out"
    [ "$out" = GOOD ] || rc=1
    out=$("$prcheck" "$url_a" "$x" write 100)
    echo "X through a: $out"
    [ "$out" = "SENSE 2/040b" ] || rc=1
    return $rc
}

giveback() {
    ctl_on b giveback && serves a && ! serves b
}

pr_takeover() {
    ctl_on b takeover && serves b
}

pr_giveback() {
    ctl_on b giveback || return 1
    local out
    out=$("$prcheck" "$url_a" "$x" write 101)
    echo "X through a: $out"
    serves a && ! serves b && [ "$out" = GOOD ] && "$prcheck" "$url_a" "$x" clear 0xa1
}

refused_resync() {
    local rc=0
    rxe_node_kill b KILL
    rxe_node_wait b
    mv "$dir/b/b.log" "$dir/b/b-killed.log"
    "$workload" run --url "$url_a" --journal "$dir/journal2" --ops 300 --qd 8 \
        --max 262144 --seed 22 >"$dir/workload2.log" 2>&1 || rc=1
    tail -1 "$dir/workload2.log"
    ctl_on a resync pause || rc=1
    start_node b 3262
    pair_wait_paired 1 1 >/dev/null || return 1
    sleep 1
    ctl_on b takeover && rc=1
    grep -q 'resync paused' "$dir/ctl.out" || rc=1
    ctl_on a giveback all && rc=1
    grep -q 'resync paused' "$dir/ctl.out" || rc=1
    serves a || rc=1
    return $rc
}

forced() {
    ctl_on a resync resume || return 1
    ctl_on b takeover --force || return 1
    serves b && in_sync b && pair_verify journal2 b && pair_same_sha
}

start_node a 3261
start_node b 3262
rxe_check paired pair_wait_paired
if [ $rxe_failed = 0 ]; then
    rxe_check takeover-loaded takeover_loaded
    rxe_check workload-ok workload_ok
    rxe_check acked-on-b acked_on_b
    rxe_check giveback giveback
    rxe_check pr-before pr_before
    rxe_check pr-takeover pr_takeover
    rxe_check pr-after pr_after
    rxe_check pr-giveback pr_giveback
    rxe_check refused-resync refused_resync
    rxe_check forced forced
fi
rxe_check stop pair_stop_both
pair_dump_logs
exit $rxe_failed
