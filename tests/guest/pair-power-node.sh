#!/usr/bin/env bash
# One node of the power-loss test (tests/guest/pair-power-loss.sh), run INSIDE a guest of the
# two-guest shape. Node a keeps its LUN and its log in DIR/state-a, a directory of the host
# shared into the guest (so that they outlive the guest); node b keeps its own in the guest.
# Roles and markers in DIR:
#   a         starts node a, runs a workload (journal DIR/journal-power) and writes
#             DIR/power.ready once it runs; the host then kills this guest (power loss)
#   a-again   in the restarted guest: starts node a on the same state, which must find
#             regions in flight in its log; waits for the pair and for their resync, writes
#             DIR/power.idle, waits for DIR/power.b, writes DIR/power.a (its SHA-256 and the
#             in-flight count), waits for DIR/stop
#   b         applies a's changes; after DIR/power.idle verifies its copy against the journal
#             and writes DIR/power.b (verify exit and SHA-256); stops on DIR/stop
# A failure writes DIR/fail.ROLE with the reason.
# Usage: tests/guest/pair-power-node.sh a|a-again|b DIR BUILD_DIR
set -u
role=$1
dir=$2
build=$3
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
. "$repo/tools/rxe-lib.sh"
iqn=iqn.2026-11.io.twinlun:pair
node=${role%-again}
other=$([ "$node" = a ] && echo b || echo a)
my_ip=$(rxe_guest_ip "$([ "$node" = a ] && echo 1 || echo 2)")
other_ip=$(rxe_guest_ip "$([ "$node" = a ] && echo 2 || echo 1)")
workload=$build/tests/workload/twl-workload
state=$([ "$node" = a ] && echo "$dir/state-a" || echo /tmp/pair-b)
mkdir -p "$state"
say() { echo "$2" >"$dir/$1.tmp" && mv "$dir/$1.tmp" "$dir/$1"; }
cat >"$state/$node.conf" <<CONF
node = { name = "$node"; state_dir = "$state"; admin_socket = "/run/twinlun-$node.sock"; };
iscsi = { listen = "127.0.0.1:3261"; threads = 2; };
pair = { partner = "$other"; listen = "$my_ip:7471"; partner_address = "$other_ip:7471";
  secret = "twinlun guest pair secret"; };
targets = ( { iqn = "$iqn"; luns = ( { id = 0; path = "$state/lun0.img"; size = "64M";
  create = true; owner = "a"; } ); } );
CONF
log=$dir/$role.log
"$build/target/twinlund" --config "$state/$node.conf" >"$log" 2>&1 &
pid=$!
rxe_wait_grep "paired with $other" "$log" 120 || { say "fail.$role" "no handshake"; exit 1; }
sha() { sha256sum <"$state/lun0.img" | cut -c1-64; }

case $role in
b)
    rxe_wait_file "$dir/power.idle" 600 || { say fail.b "no power.idle"; exit 1; }
    "$workload" verify --journal "$dir/journal-power" --file "$state/lun0.img" \
        --block-size 512 >"$dir/verify-power.log" 2>&1
    say power.b "verify $? sha256 $(sha)"
    rxe_wait_file "$dir/stop" 600
    kill -TERM $pid
    wait $pid
    ;;
a)
    "$workload" run --url "iscsi://127.0.0.1:3261/$iqn/0" --journal "$dir/journal-power" \
        --ops 0 --seconds 60 --qd 16 --max 256K --seed 41 --allow-failures \
        >"$dir/workload-power.log" 2>&1 &
    sleep 4
    : >"$dir/power.ready"
    wait # for the power to go
    ;;
a-again)
    inflight=$(grep 'regions were in flight at the last stop' "$log" |
        sed -E 's/.*: ([0-9]+) regions were in flight.*/\1/')
    for _ in $(seq 1 900); do
        grep -q 'resync LUN 0 done' "$log" && break
        sleep 0.2
    done
    grep -q 'resync LUN 0 done' "$log" || { say fail.a-again "no resync within 180 s"; exit 1; }
    : >"$dir/power.idle"
    rxe_wait_file "$dir/power.b" 300 || { say fail.a-again "b did not check its copy"; exit 1; }
    say power.a "sha256 $(sha) inflight ${inflight:-0}"
    rxe_wait_file "$dir/stop" 600
    kill -TERM $pid
    wait $pid
    ;;
esac
