#!/usr/bin/env bash
# A replicated pair across two guests joined by a virtual link (shape b of ../shared/RXE.md),
# run on the host: node a (guest 1) owns LUN 0 and runs twl-workload against itself, node b
# (guest 2) applies a's changes over the rxe link; afterwards both copies have the same
# SHA-256 and b's copy verifies against the workload's journal.
# Usage: tests/guest/pair-two-guests.sh BUILD_DIR
set -u
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
build=$(cd "${1:-${TWL_BUILD_DIR:-$repo/build}}" && pwd)
. "$repo/tools/rxe-lib.sh"
export TWL_BUILD_DIR=$build
dir=$build/guest-tests/pair-two-guests
rm -rf "$dir"
mkdir -p "$dir"
fail() {
    echo "pair-two-guests: FAIL: $*"
    for g in a b; do
        echo "---- guest $g ----"
        tail -30 "$dir/$g.out" "$dir/$g.log" 2>/dev/null
    done
    rxe_guest_kill a 2>/dev/null
    rxe_guest_kill b 2>/dev/null
    wait
    exit 1
}
rxe_guest_start a 1 "$dir" -- "$here/pair-node.sh" a "$dir" "$build"
rxe_guest_start b 2 "$dir" -- "$here/pair-node.sh" b "$dir" "$build"
rxe_wait_file "$dir/a.done" 600 || fail "node a did not finish its workload"
rxe_wait_file "$dir/b.done" 300 || fail "node b did not check its copy"
rc_a=0
rxe_guest_wait a || rc_a=$?
rc_b=0
rxe_guest_wait b || rc_b=$?
echo "pair-two-guests: a: $(cat "$dir/a.done")"
echo "pair-two-guests: b: $(cat "$dir/b.done")"
tail -1 "$dir/workload.log" | sed 's/^/pair-two-guests: /'
tail -1 "$dir/verify.log" | sed 's/^/pair-two-guests: /'
read -r _ wrc _ sha_a <"$dir/a.done"
read -r _ vrc _ sha_b <"$dir/b.done"
[ "$wrc" = 0 ] || fail "workload on node a: exit $wrc"
[ "$vrc" = 0 ] || fail "node b's copy does not verify"
[ "$sha_a" = "$sha_b" ] || fail "the copies differ: a $sha_a, b $sha_b"
[ "$rc_a" = 0 ] && [ "$rc_b" = 0 ] || fail "guest exits a $rc_a, b $rc_b"
echo "pair-two-guests: PASS"
