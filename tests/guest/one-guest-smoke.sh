#!/usr/bin/env bash
# One-guest smoke, run INSIDE a guest by tools/test-guest (or natively with --native):
#   rxe-devices   ibv_devices lists the rxe device
#   ring-64MiB    rdma_ring_smoke: two processes on one rxe device (shape a), 64 MiB of
#                 one-sided WRITE/WRITE_WITH_IMM records, CRC32C verified by the receiver
#   ib_write_bw   perftest's ib_write_bw -R (rdma_cm) against itself; its figure is printed
# Prints one "guest-check: PASS|FAIL NAME" line per check; exits 1 if any failed.
# Usage: tests/guest/one-guest-smoke.sh BUILD_DIR
set -u
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
build=$(cd "${1:?build dir}" && pwd)
. "$repo/tools/rxe-lib.sh"
ip=${TWL_RXE_IP:?TWL_RXE_IP not set: run under tools/rxe-vm}
dev=${TWL_RXE_DEV:-rxe0}
dir=$build/guest-tests/one-guest
rm -rf "$dir"
mkdir -p "$dir"

rxe_devices() {
    ibv_devices | tee "$dir/ibv_devices.txt"
    grep -qw "$dev" "$dir/ibv_devices.txt"
}

ring_smoke() {
    local prog=$build/rdma/rdma_ring_smoke rc_s=0 rc_c=0
    rxe_node_start server "$dir/server" 7471 -- "$prog" --server --addr "$ip" --port 7471 --bytes 64M
    rxe_node_start client "$dir/client" 7471 -- "$prog" --client --addr "$ip" --port 7471 --bytes 64M
    rxe_node_wait client || rc_c=$?
    rxe_node_wait server || rc_s=$?
    grep -hE '^(server|client):' "$dir/server/server.log" "$dir/client/client.log"
    if [ $rc_s != 0 ] || [ $rc_c != 0 ]; then
        echo "ring-64MiB: server exit $rc_s, client exit $rc_c"
        cat "$dir/server/server.log" "$dir/client/client.log"
        return 1
    fi
    grep -q 'verified' "$dir/server/server.log"
}

write_bw() {
    local rc=0 bw
    ib_write_bw -R -d "$dev" -s 65536 -D 3 >"$dir/ib_write_bw.server" 2>&1 &
    local spid=$!
    sleep 1
    timeout 60 ib_write_bw -R -d "$dev" -s 65536 -D 3 "$ip" >"$dir/ib_write_bw.client" 2>&1 || rc=$?
    wait $spid || rc=$?
    bw=$(awk '$1 == 65536 && NF >= 5 { print $4 }' "$dir/ib_write_bw.client")
    if [ $rc != 0 ] || [ -z "$bw" ]; then
        cat "$dir/ib_write_bw.client" "$dir/ib_write_bw.server"
        return 1
    fi
    echo "ib_write_bw -R (64 KiB, 3 s, rc over rdma_cm on $dev): $bw MB/s"
}

rxe_check rxe-devices rxe_devices
rxe_check ring-64MiB ring_smoke
rxe_check ib_write_bw write_bw
exit $rxe_failed
