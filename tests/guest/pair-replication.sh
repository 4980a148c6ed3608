#!/usr/bin/env bash
# Pair replication, run INSIDE one guest by tools/test-guest (shape a of ../shared/RXE.md: two
# daemons on one rxe device, own iSCSI ports, backplane ports, state directories and backing
# files):
#   refused       node B started with its LUN of another size: each node refuses the other
#                 at connect time with one sentence naming the LUN and both sizes
#   stranger      node B started with another pair.secret, then with none: each time both
#                 nodes refuse the other's handshake as not authenticated with their
#                 pair.secret, node A never pairs, and no secret appears in either log
#   silent-stranger  a program that accepts node A's connection at node B's backplane address
#                 and then sends nothing (rdma_ring_smoke --silent) is dropped by node A
#                 for want of a handshake within 10 s
#   paired        node A and node B connect over the backplane and accept each other's
#                 handshake (same target, LUN table and owners)
#   workload      twl-workload writes to node A's LUN: random LBAs and sizes 512 B..1 MiB,
#                 QD 16, overlapping writes, UNMAP and WRITE SAME mixed in; every op GOOD
#   sha256        once the pair is idle, node A's and node B's backing files are identical
#   verify-b      node B's copy holds the last acknowledged write of every block
#   pr-equal      a registration with APTPL and a reservation made on node A: node B's saved
#                 reservation state is byte for byte node A's
#   partner-restarted  node B is killed (SIGKILL) in the middle of a workload and started
#                 again at once: node A keeps the records in flight, sends them again over the
#                 new connection, never goes degraded; every write GOOD, copies identical
#   stalled       node B is stopped (SIGSTOP) in the middle of a workload: its heartbeats stop,
#                 node A declares it gone, every write still completes GOOD (policy
#                 available); node B resumed (SIGCONT) reconnects and pairs again
#   partner-lost  node B is killed (SIGKILL) in the middle of a second workload: with the
#                 default policy (available) every write still completes GOOD within the
#                 timeouts, node A says it runs degraded, and node A's copy verifies
#   stop          node A drains and exits 0 on SIGTERM
# Prints one "guest-check: PASS|FAIL NAME" line per check; exits 1 if any failed.
# Usage: tests/guest/pair-replication.sh BUILD_DIR
set -u
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
build=$(cd "${1:?build dir}" && pwd)
. "$repo/tools/rxe-lib.sh"
. "$here/pair-lib.sh"
ip=${TWL_RXE_IP:?TWL_RXE_IP not set: run under tools/rxe-vm}
dir=$build/guest-tests/pair
rm -rf "$dir"
mkdir -p "$dir/a" "$dir/b"
iqn=iqn.2026-11.io.twinlun:pair
workload=$build/tests/workload/twl-workload

pair_config a b 3261 7471 7472 >"$dir/a.conf"
pair_config b a 3262 7472 7471 >"$dir/b.conf"
pair_config b a 3262 7472 7471 32M >"$dir/b-wrong.conf"
mkdir -p "$dir/b-wrong"

refused() {
    local want='LUN 0 is 67108864 bytes on this node but 33554432 bytes on partner "b"'
    local want_b='LUN 0 is 33554432 bytes on this node but 67108864 bytes on partner "a"'
    for _ in $(seq 1 100); do
        grep -qF "$want" "$dir/a/a.log" && grep -qF "$want_b" "$dir/b-wrong/b.log" && break
        sleep 0.2
    done
    grep -h 'partner refused' "$dir/a/a.log" "$dir/b-wrong/b.log" | head -2
    grep -qF "$want" "$dir/a/a.log" && grep -qF "$want_b" "$dir/b-wrong/b.log" &&
        ! grep -q 'paired with' "$dir/a/a.log"
}

pair_secret="not the pair's secret" pair_config b a 3262 7472 7471 >"$dir/b-stranger.conf"
pair_secret= pair_config b a 3262 7472 7471 >"$dir/b-nosecret.conf"
mkdir -p "$dir/b-stranger" "$dir/b-nosecret"

# stranger NAME: node B from b-NAME.conf (its log in b-NAME/) is refused for its secret, both
# ways, and never pairs; no secret in the logs
stranger() {
    local la="$dir/a/a.log" lb="$dir/b-$1/b.log" before want rc=0
    want="not authenticated with this node's pair.secret"
    before=$(grep -c "$want" "$la")
    rxe_node_start b "$dir/b-$1" 3262 -- "$build/target/twinlund" --config "$dir/b-$1.conf"
    for _ in $(seq 1 100); do
        [ "$(grep -c "$want" "$la")" -gt "$before" ] && grep -q "$want" "$lb" && break
        sleep 0.2
    done
    rxe_node_kill b TERM
    rxe_node_wait b
    grep -h "$want" "$la" | tail -1
    grep -h "$want" "$lb" | head -1
    [ "$(grep -c "$want" "$la")" -gt "$before" ] && grep -q "$want" "$lb" || {
        echo "no refusal for the secret within 20 s"
        rc=1
    }
    ! grep -q 'paired with' "$la" "$lb" || {
        echo "a node with the wrong secret paired"
        rc=1
    }
    ! grep -qF -e "twinlun guest pair secret" -e "not the pair's secret" "$la" "$lb" || {
        echo "a secret was logged"
        rc=1
    }
    return $rc
}

silent_stranger() {
    local la="$dir/a/a.log" rc out="$dir/silent.log"
    # Set-up can fail at once (exit 1: rdma_create_qp EINVAL seen once, right after node B's
    # process went away); the daemon's own listener retries such failures, so this does too.
    for _ in 1 2 3; do
        rc=0
        timeout 60 "$build/rdma/rdma_ring_smoke" --server --silent --addr "$ip" --port 7472 \
            --linger 40 >"$out" 2>&1 || rc=$?
        tail -2 "$out"
        [ $rc = 1 ] || break
        sleep 1
    done
    grep -h 'sent no handshake' "$la" | tail -1
    # exit 3: node A hung up on it, well before the linger ran out
    [ $rc = 3 ] && grep -q "sent no handshake within 10000 ms" "$la" &&
        ! grep -q 'paired with' "$la"
}

rxe_node_start a "$dir/a" 3261 -- "$build/target/twinlund" --config "$dir/a.conf"
rxe_node_start b "$dir/b-wrong" 3262 -- "$build/target/twinlund" --config "$dir/b-wrong.conf"
rxe_check refused refused
rxe_node_kill b TERM
rxe_node_wait b
rxe_check stranger stranger stranger
rxe_check stranger-without-secret stranger nosecret
rxe_check silent-stranger silent_stranger
rxe_node_start b "$dir/b" 3262 -- "$build/target/twinlund" --config "$dir/b.conf"

run_workload() {
    "$workload" run --url "iscsi://127.0.0.1:3261/$iqn/0" --journal "$dir/journal" \
        --ops 800 --qd 16 --max 1048576 --seed 7 >"$dir/workload.log" 2>&1
    local rc=$?
    tail -3 "$dir/workload.log"
    return $rc
}


prout_a() { # set | clear: PERSISTENT RESERVE OUT on node A through the raw test initiator
    python3 - "$repo/tests/integration" "$1" <<'PY'
import struct, sys
sys.path.insert(0, sys.argv[1])
from iscsi_raw import Initiator
ini = Initiator(3261)
ini.login(target="iqn.2026-11.io.twinlun:pair", isid=b"\x80\x12\x34\x56\x00\x07")
def prout(sa, typ, key, sakey, aptpl):
    param = struct.pack(">QQ", key, sakey) + bytes([0, 0, 0, 0, aptpl, 0, 0, 0])  # APTPL: byte 20
    cdb = bytes([0x5F, sa, typ, 0, 0]) + struct.pack(">I", len(param)) + b"\0"
    p, _ = ini.response(ini.scsi_cmd(cdb, edtl=len(param), write=True, data=param))
    if p.status != 0:
        sys.exit("PR OUT sa %d: status 0x%02x" % (sa, p.status))
if sys.argv[2] == "set":
    prout(0, 0, 0, 0xABCD, 1)   # REGISTER, APTPL
    prout(1, 5, 0xABCD, 0, 0)   # RESERVE Write Exclusive - Registrants Only
    print("registered 0xabcd with APTPL and reserved (WERO) on node a")
else:
    prout(3, 0, 0xABCD, 0, 0)   # CLEAR
    print("cleared the reservations on node a")
ini.logout()
PY
}

pr_equal() {
    prout_a set || return 1
    local pa="$dir/a/$iqn.lun0.pr" pb="$dir/b/$iqn.lun0.pr" rc=0
    ls -l "$pa" "$pb" | awk '{ print $5, $NF }'
    cmp "$pa" "$pb" || rc=1
    prout_a clear || rc=1
    cmp "$pa" "$pb" || rc=1
    return $rc
}

partner_restarted() {
    "$workload" run --url "iscsi://127.0.0.1:3261/$iqn/0" --journal "$dir/journal-restart" \
        --ops 600 --qd 16 --max 1048576 --seed 10 >"$dir/workload-restart.log" 2>&1 &
    local wpid=$! rc=0 before
    before=$(grep -c 'degraded' "$dir/a/a.log")
    sleep 1
    rxe_node_kill b KILL
    rxe_node_wait b
    mv "$dir/b/b.log" "$dir/b/b-killed.log"
    rxe_node_start b "$dir/b" 3262 -- "$build/target/twinlund" --config "$dir/b.conf"
    wait $wpid || rc=$?
    tail -1 "$dir/workload-restart.log"
    [ $rc = 0 ] || return 1
    grep -h 'kept for a new connection' "$dir/a/a.log" | tail -1 | grep . ||
        { echo "node a never lost the connection"; return 1; }
    [ "$(grep -c 'degraded' "$dir/a/a.log")" = "$before" ] ||
        { echo "node a went degraded: node b was not back within timeout_ms"; return 1; }
    pair_wait_paired 1 1 >/dev/null || return 1
    # nothing was left unreplicated: the records kept were sent again, no resync involved
    pair_same_sha && pair_verify journal-restart b
}

partner_stalled() {
    "$workload" run --url "iscsi://127.0.0.1:3261/$iqn/0" --journal "$dir/journal-stall" \
        --ops 800 --qd 16 --max 1048576 --seed 9 >"$dir/workload-stall.log" 2>&1 &
    local wpid=$! rc=0 before
    before=$(grep -c 'paired with b' "$dir/a/a.log")
    sleep 1
    kill -STOP "$(rxe_node_pid b)"
    timeout 120 tail --pid=$wpid -f /dev/null
    wait $wpid || rc=$?
    kill -CONT "$(rxe_node_pid b)"
    tail -1 "$dir/workload-stall.log"
    [ $rc = 0 ] || return 1
    grep -q 'degraded' "$dir/a/a.log" || { echo "node a never said degraded"; return 1; }
    for _ in $(seq 1 150); do
        [ "$(grep -c 'paired with b' "$dir/a/a.log")" -gt "$before" ] && break
        sleep 0.2
    done
    grep -h 'partner connection lost\|paired with b' "$dir/a/a.log" | tail -2
    [ "$(grep -c 'paired with b' "$dir/a/a.log")" -gt "$before" ] ||
        { echo "node b did not pair again within 30 s"; return 1; }
    "$workload" verify --journal "$dir/journal-stall" --url "iscsi://127.0.0.1:3261/$iqn/0" \
        >"$dir/verify-stall.log" 2>&1 || { tail -5 "$dir/verify-stall.log"; return 1; }
}

partner_lost() {
    "$workload" run --url "iscsi://127.0.0.1:3261/$iqn/0" --journal "$dir/journal2" \
        --ops 1500 --qd 16 --max 1048576 --seed 8 >"$dir/workload2.log" 2>&1 &
    local wpid=$! rc=0 before
    before=$(grep -c 'degraded' "$dir/a/a.log")
    sleep 1
    rxe_node_kill b KILL
    rxe_node_wait b
    # bounded: the dead partner is noticed within dead_ms, a stuck replica within timeout_ms
    timeout 120 tail --pid=$wpid -f /dev/null
    wait $wpid || rc=$?
    tail -3 "$dir/workload2.log"
    [ $rc = 0 ] || return 1
    grep -h 'degraded' "$dir/a/a.log" | tail -1
    [ "$(grep -c 'degraded' "$dir/a/a.log")" -gt "$before" ] ||
        { echo "node a did not say degraded after the kill"; return 1; }
    "$workload" verify --journal "$dir/journal2" --url "iscsi://127.0.0.1:3261/$iqn/0" \
        >"$dir/verify2.log" 2>&1 || { tail -5 "$dir/verify2.log"; return 1; }
    tail -1 "$dir/verify2.log"
}

stop_a() {
    local ra=0
    rxe_node_kill a TERM
    rxe_node_wait a || ra=$?
    echo "exit a $ra"
    [ $ra = 0 ]
}

rxe_check paired pair_wait_paired
if [ $rxe_failed = 0 ]; then
    rxe_check workload run_workload
    rxe_check sha256 pair_same_sha
    rxe_check verify-b pair_verify journal b
    rxe_check pr-equal pr_equal
    rxe_check partner-restarted partner_restarted
    rxe_check stalled partner_stalled
    rxe_check partner-lost partner_lost
fi
rxe_node_kill b KILL 2>/dev/null
rxe_check stop stop_a
pair_dump_logs
exit $rxe_failed
