#!/usr/bin/env bash
# Two-guest smoke: rdma_ring_smoke across two guests joined by a virtual link (shape b of
# RXE.md); then the client's guest is killed (SIGKILL QEMU = power loss) and the server must
# report the dead peer within 5 s and exit cleanly with status 3.
# Usage: tests/guest/two-guest-smoke.sh BUILD_DIR
set -u
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
build=$(cd "${1:-${TWL_BUILD_DIR:-$repo/build}}" && pwd)
. "$repo/tools/rxe-lib.sh"
export TWL_BUILD_DIR=$build

prog=$build/rdma/rdma_ring_smoke
bytes=${TWL_TWO_GUEST_BYTES:-64M}
dir=$build/guest-tests/two-guest
rm -rf "$dir"
mkdir -p "$dir"
fail() {
    echo "two-guest: FAIL: $*"
    for g in a b; do
        echo "---- guest $g output ----"
        cat "$dir/$g.out" 2>/dev/null
    done
    rxe_guest_kill a 2>/dev/null
    rxe_guest_kill b 2>/dev/null
    wait
    exit 1
}

t0=$(date +%s%N)
rxe_guest_start a 1 "$dir" -- "$prog" --server --addr "$(rxe_guest_ip 1)" --bytes "$bytes" \
    --linger 120 --marker "$dir/a.marker"
rxe_guest_start b 2 "$dir" -- "$prog" --client --addr "$(rxe_guest_ip 1)" --bytes "$bytes" \
    --linger 120 --marker "$dir/b.marker"
rxe_wait_file "$dir/a.marker" 200 || fail "server did not finish the transfer"
rxe_wait_file "$dir/b.marker" 30 || fail "client did not finish the transfer"
grep -q "done" "$dir/a.marker" || fail "server: $(cat "$dir/a.marker")"
t1=$(date +%s%N)
echo "two-guest: transfer of $bytes done and verified, $(((t1 - t0) / 1000000)) ms from boot"

rxe_guest_kill b || fail "cannot kill guest b"
tk=$(date +%s%N)
while ! grep -q dead "$dir/a.marker" 2>/dev/null; do
    [ $((($(date +%s%N) - tk) / 1000000)) -gt 15000 ] && fail "server did not report the dead peer in 15 s"
    sleep 0.05
done
td=$(date +%s%N)
rc_a=0
rxe_guest_wait a || rc_a=$?
rc_b=0
rxe_guest_wait b || rc_b=$?
ms=$(((td - tk) / 1000000))
grep -hE '^(server|client):' "$dir/a.out" "$dir/b.out"
echo "two-guest: dead peer detected $ms ms after the kill ($(cut -d' ' -f2 "$dir/a.marker")); server exit $rc_a, killed guest $rc_b"
[ "$rc_a" = 3 ] || fail "server exit $rc_a, expected 3 (peer dead)"
[ "$rc_b" = 125 ] || fail "killed guest: rxe-vm exit $rc_b, expected 125 (no status)"
[ "$ms" -le 5000 ] || fail "dead peer detection took $ms ms (> 5000)"
echo "two-guest: PASS"
