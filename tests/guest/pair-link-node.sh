#!/usr/bin/env bash
# One node of the link-fault test (tests/guest/pair-link-faults.sh), run INSIDE a guest of the
# two-guest shape. Node a owns LUN 0 and drives the phases; node b applies and checks its copy.
# Markers in the shared DIR order the guests and the host:
#   cut:  a runs a workload; once it runs a writes DIR/cut.ready, the host pulls a's cable for
#         10 s and writes DIR/cut.restored; a waits for its workload (every write must end GOOD:
#         policy available) and for the resync of what b missed, then writes DIR/cut.idle
#   loss: a drops TWL_LINK_LOSS_PCT % (default 5) of its outgoing RoCE packets (tc netem on UDP
#         4791) for a 20 s workload of writes up to TWL_LINK_LOSS_MAX (default 64K): every write
#         GOOD; connections lost and times degraded are counted (a degraded pair is resynced
#         before the copies are compared); then DIR/loss.idle
# After each PHASE.idle, b writes DIR/PHASE.b: its copy's SHA-256 and the verification of its
# copy against the phase's journal; a adds its own SHA-256 in DIR/PHASE.a and goes on.
# Usage: tests/guest/pair-link-node.sh a|b DIR BUILD_DIR
set -u
role=$1
dir=$2
build=$3
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
. "$repo/tools/rxe-lib.sh"
iqn=iqn.2026-11.io.twinlun:pair
other=$([ "$role" = a ] && echo b || echo a)
my_ip=$(rxe_guest_ip "$([ "$role" = a ] && echo 1 || echo 2)")
other_ip=$(rxe_guest_ip "$([ "$role" = a ] && echo 2 || echo 1)")
state=/tmp/pair-$role
workload=$build/tests/workload/twl-workload
loss_pct=${TWL_LINK_LOSS_PCT:-5}
loss_max=${TWL_LINK_LOSS_MAX:-64K}
mkdir -p "$state"
# the default pair.timeout_ms (5 s): the 10 s cut leaves writes unreplicated
cat >"$state/$role.conf" <<CONF
node = { name = "$role"; state_dir = "$state"; };
iscsi = { listen = "127.0.0.1:3261"; threads = 2; };
pair = { partner = "$other"; listen = "$my_ip:7471"; partner_address = "$other_ip:7471";
  secret = "twinlun guest pair secret"; };
targets = ( { iqn = "$iqn"; luns = ( { id = 0; path = "$state/lun0.img"; size = "128M";
  create = true; owner = "a"; } ); } );
CONF
log=$dir/$role.log
"$build/target/twinlund" --config "$state/$role.conf" >"$log" 2>&1 &
pid=$!
say() { echo "$*" >"$dir/$1.$role.tmp" && mv "$dir/$1.$role.tmp" "$dir/$1.$role"; }
rxe_wait_grep "paired with $other" "$log" 120 || { say fail "no handshake"; exit 1; }
# a new pair's first handshake ends with a (here empty) first copy: the phases count from it
if [ "$role" = a ]; then
    rxe_wait_grep 'resync LUN 0 done' "$log" 60 || { say fail "no first copy"; exit 1; }
fi

sha() { sha256sum <"$state/lun0.img" | cut -c1-64; }

if [ "$role" = b ]; then
    for phase in cut loss; do
        rxe_wait_file "$dir/$phase.idle" 600 || { say fail "no $phase.idle"; exit 1; }
        "$workload" verify --journal "$dir/journal-$phase" --file "$state/lun0.img" \
            --block-size 512 >"$dir/verify-$phase.log" 2>&1
        echo "verify $? sha256 $(sha)" >"$dir/$phase.b.tmp" && mv "$dir/$phase.b.tmp" "$dir/$phase.b"
    done
    rxe_wait_file "$dir/stop" 600
    kill -TERM $pid
    wait $pid
    exit 0
fi

run_workload() { # PHASE SECONDS [MAX_BYTES]
    "$workload" run --url "iscsi://127.0.0.1:3261/$iqn/0" --journal "$dir/journal-$1" \
        --ops 0 --seconds "$2" --qd 8 --max "${3:-256K}" --seed "${#1}" >"$dir/workload-$1.log" 2>&1
}
idle() { # PHASE: b checks its copy; then this node's sha
    : >"$dir/$1.idle"
    rxe_wait_file "$dir/$1.b" 300 || { say fail "b did not check $1"; exit 1; }
    echo "sha256 $(sha)" >"$dir/$1.a"
}

# ---- cut
resyncs=$(grep -c 'resync LUN 0 done' "$log")
run_workload cut 24 &
wpid=$!
sleep 3
: >"$dir/cut.ready"
wait $wpid
echo "workload $?" >"$dir/cut.workload"
rxe_wait_file "$dir/cut.restored" 60
for _ in $(seq 1 600); do
    [ "$(grep -c 'resync LUN 0 done' "$log")" -gt "$resyncs" ] && break
    sleep 0.2
done
# only a resync that ended after the cut counts (the first copy's line is older)
if [ "$(grep -c 'resync LUN 0 done' "$log")" -gt "$resyncs" ]; then
    grep 'resync LUN 0 done' "$log" | tail -1 >"$dir/cut.resync"
else
    echo "no resync finished within 120 s of the link coming back" >"$dir/cut.resync"
fi
idle cut

# ---- loss
lost=$(grep -c 'partner connection lost' "$log")
degraded=$(grep -c 'degraded' "$log")
resyncs=$(grep -c 'resync LUN 0 done' "$log")
rxe_bp_drop "$loss_pct" || { say fail "tc netem"; exit 1; }
run_workload loss 20 "$loss_max"
echo "workload $?" >"$dir/loss.workload"
tc -s qdisc show dev "$(rxe_bp_dev)" | grep -A2 netem | grep -o 'dropped [0-9]*' | head -1 \
    >"$dir/loss.dropped"
rxe_bp_clear
now_degraded=$(($(grep -c 'degraded' "$log") - degraded))
echo "lost $(($(grep -c 'partner connection lost' "$log") - lost)) degraded $now_degraded" \
    >"$dir/loss.events"
# a connection given up for under loss leaves regions dirty: the copies meet after the resync
if [ "$now_degraded" -gt 0 ]; then
    for _ in $(seq 1 600); do
        [ "$(grep -c 'resync LUN 0 done' "$log")" -gt "$resyncs" ] && break
        sleep 0.2
    done
fi
idle loss

: >"$dir/stop"
kill -TERM $pid
wait $pid
exit 0
