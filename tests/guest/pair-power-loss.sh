#!/usr/bin/env bash
# Power loss of the owner across two guests (shape b of ../shared/RXE.md), run on the host; the
# roles are in tests/guest/pair-power-node.sh. Node a (guest 1) keeps its LUN and its log in a
# host directory shared into its guest; in the middle of a workload the host kills guest 1's
# QEMU (SIGKILL: the guest's power goes), then boots it again and starts node a on the same
# state:
#   inflight      node a's log held regions in flight at the power loss
#   resynced      node a resynced them once paired with b again
#   copies        both copies identical (SHA-256), and b's holds the last acknowledged write of
#                 every block the workload touched (writes without a completion record may or
#                 may not be there)
#   guests-exit-0 both guests end cleanly
# The share is written through to the host (9p without a cache), so a guest's power loss loses
# no write the daemon made, only what was in flight between the nodes.
# Prints "pair-power-loss: PASS|FAIL NAME" per check; exits 1 if any failed.
# Usage: tests/guest/pair-power-loss.sh BUILD_DIR
set -u
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
build=$(cd "${1:-${TWL_BUILD_DIR:-$repo/build}}" && pwd)
. "$repo/tools/rxe-lib.sh"
export TWL_BUILD_DIR=$build
dir=$build/guest-tests/pair-power-loss
rm -rf "$dir"
mkdir -p "$dir"
failed=0
check() { # NAME STATUS
    if [ "$2" = 0 ]; then
        echo "pair-power-loss: PASS $1"
    else
        echo "pair-power-loss: FAIL $1"
        failed=1
    fi
}
abort() {
    echo "pair-power-loss: FAIL $*"
    for f in a a-again b; do
        echo "---- node $f ----"
        tail -25 "$dir/$f.log" 2>/dev/null
    done
    rxe_guest_kill a 2>/dev/null
    rxe_guest_kill b 2>/dev/null
    wait
    exit 1
}
wait_marker() { # NAME TIMEOUT_S
    local t0=$SECONDS
    until [ -e "$dir/$1" ]; do
        for f in "$dir"/fail.*; do
            [ -e "$f" ] && abort "${f##*/fail.}: $(cat "$f")"
        done
        [ $((SECONDS - t0)) -ge "$2" ] && abort "no $1 within $2 s"
        sleep 0.5
    done
}
rxe_guest_start a 1 "$dir" -- "$here/pair-power-node.sh" a "$dir" "$build"
rxe_guest_start b 2 "$dir" -- "$here/pair-power-node.sh" b "$dir" "$build"
wait_marker power.ready 300
sleep 2
rxe_guest_kill a || abort "guest a could not be killed"
rxe_guest_wait a
echo "pair-power-loss: guest a killed mid-workload: $(tail -1 "$dir/workload-power.log" 2>/dev/null)"
rxe_guest_start a 1 "$dir" -- "$here/pair-power-node.sh" a-again "$dir" "$build"
wait_marker power.a 600
: >"$dir/stop"
rc_a=0
rxe_guest_wait a || rc_a=$?
rc_b=0
rxe_guest_wait b || rc_b=$?
for f in "$dir"/fail.*; do
    [ -e "$f" ] && abort "${f##*/fail.}: $(cat "$f")"
done
read -r _ sha_a _ inflight <"$dir/power.a"
read -r _ vrc _ sha_b <"$dir/power.b"
grep -h 'regions were in flight\|resync LUN 0 done' "$dir/a-again.log" | sed 's/^/pair-power-loss: /'
tail -1 "$dir/verify-power.log" | sed 's/^/pair-power-loss: /'
echo "pair-power-loss: sha256 a $sha_a, b $sha_b; b verify exit $vrc"
[ "${inflight:-0}" -gt 0 ]
check inflight $?
grep -q 'resync LUN 0 done' "$dir/a-again.log"
check resynced $?
[ "$vrc" = 0 ] && [ -n "$sha_a" ] && [ "$sha_a" = "$sha_b" ]
check copies $?
[ "$rc_a" = 0 ] && [ "$rc_b" = 0 ]
check guests-exit-0 $?
exit $failed
