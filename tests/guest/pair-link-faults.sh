#!/usr/bin/env bash
# Backplane faults across two guests (shape b of ../shared/RXE.md), run on the host; the
# phases are in tests/guest/pair-link-node.sh:
#   cut   node a's cable pulled for 10 s (QEMU set_link) in the middle of a workload: every
#         write completes GOOD (policy available), node a goes degraded, and once the link is
#         back it resyncs what b missed; both copies identical, b's verifies
#   loss  5 % of node a's RoCE packets dropped (tc netem) during a 20 s workload of writes up to
#         64 KiB: the transport's retries, and records sent again over a new connection when
#         one is lost, keep every write GOOD; the copies are identical (after a resync, if the
#         pair went degraded all the same: the connections lost and times degraded are printed,
#         not judged) and b's verifies. TWL_LINK_LOSS_PCT and TWL_LINK_LOSS_MAX change the loss
#         and the largest write.
# Prints "pair-link-faults: PASS|FAIL NAME" per check; exits 1 if any failed.
# Usage: tests/guest/pair-link-faults.sh BUILD_DIR
set -u
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
build=$(cd "${1:-${TWL_BUILD_DIR:-$repo/build}}" && pwd)
. "$repo/tools/rxe-lib.sh"
export TWL_BUILD_DIR=$build
: "${TWL_RXE_PAIR_TIMEOUT:=600}"
export TWL_RXE_PAIR_TIMEOUT
dir=$build/guest-tests/pair-link-faults
rm -rf "$dir"
mkdir -p "$dir"
failed=0
check() { # NAME STATUS: one PASS or FAIL line
    if [ "$2" = 0 ]; then
        echo "pair-link-faults: PASS $1"
    else
        echo "pair-link-faults: FAIL $1"
        failed=1
    fi
}
abort() {
    echo "pair-link-faults: FAIL $*"
    for g in a b; do
        echo "---- node $g ----"
        tail -25 "$dir/$g.log" "$dir/$g.out" 2>/dev/null
    done
    rxe_guest_kill a 2>/dev/null
    rxe_guest_kill b 2>/dev/null
    wait
    exit 1
}
rxe_guest_start a 1 "$dir" -- "$here/pair-link-node.sh" a "$dir" "$build"
rxe_guest_start b 2 "$dir" -- "$here/pair-link-node.sh" b "$dir" "$build"

# wait_marker NAME TIMEOUT_S: until DIR/NAME exists; a node's failure marker ends the wait
wait_marker() {
    local t0=$SECONDS
    until [ -e "$dir/$1" ]; do
        [ -e "$dir/fail.a" ] && abort "node a: $(cat "$dir/fail.a")"
        [ -e "$dir/fail.b" ] && abort "node b: $(cat "$dir/fail.b")"
        [ $((SECONDS - t0)) -ge "$2" ] && abort "no $1 within $2 s"
        sleep 0.5
    done
}
wait_marker cut.ready 300
rxe_guest_link a off || abort "set_link off"
sleep 10
rxe_guest_link a on || abort "set_link on"
: >"$dir/cut.restored"

wait_marker stop 600
rc_a=0
rxe_guest_wait a || rc_a=$?
rc_b=0
rxe_guest_wait b || rc_b=$?
[ -e "$dir/fail.a" ] && abort "node a: $(cat "$dir/fail.a")"
[ -e "$dir/fail.b" ] && abort "node b: $(cat "$dir/fail.b")"

for phase in cut loss; do
    tail -1 "$dir/workload-$phase.log" | sed 's/^/pair-link-faults: /'
    read -r _ wrc <"$dir/$phase.workload"
    read -r _ vrc _ sha_b <"$dir/$phase.b"
    read -r _ sha_a <"$dir/$phase.a"
    echo "pair-link-faults: $phase: workload exit $wrc; sha256 a $sha_a, b $sha_b; b verify exit $vrc"
    tail -1 "$dir/verify-$phase.log" | sed 's/^/pair-link-faults: /'
    [ "$wrc" = 0 ]
    check "$phase/every-write-good" $?
    [ "$vrc" = 0 ] && [ -n "$sha_a" ] && [ "$sha_a" = "$sha_b" ]
    check "$phase/copies-identical" $?
done
echo "pair-link-faults: cut: $(grep -h 'degraded\|kept for a new' "$dir/a.log" | head -2 | tr '\n' ' ')"
echo "pair-link-faults: cut: $(cat "$dir/cut.resync")"
grep -q 'degraded' "$dir/a.log" && grep -q 'resync LUN 0 done' "$dir/cut.resync"
check cut/degraded-then-resynced $?
# How much of the loss the retries absorbed is reported, not judged: on emulated CPUs a
# starved vCPU can miss the transport's retransmission deadlines now and then.
echo "pair-link-faults: loss: $(cat "$dir/loss.dropped") packets dropped; connections $(cat "$dir/loss.events") times (0 and 0: fully absorbed)"
grep -q 'dropped [1-9]' "$dir/loss.dropped"
check loss/packets-dropped $?
[ "$rc_a" = 0 ] && [ "$rc_b" = 0 ]
check guests-exit-0 $?
exit $failed
