#!/usr/bin/env bash
# One node of a pair across two guests (shape b of ../shared/RXE.md), run INSIDE a guest by
# tests/guest/pair-two-guests.sh. Markers in the shared DIR order the two guests.
#   a: serves LUN 0 (owner), waits for the handshake, runs twl-workload against itself, then
#      writes DIR/a.done with its copy's SHA-256 and waits for DIR/b.done before stopping
#   b: applies a's changes; once DIR/a.done exists, writes DIR/b.done with its copy's SHA-256
#      and the result of verifying its copy against the workload's journal
# Usage: tests/guest/pair-node.sh a|b DIR BUILD_DIR
set -u
role=$1
dir=$2
build=$3
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
. "$repo/tools/rxe-lib.sh"
iqn=iqn.2026-11.io.twinlun:pair
me=$role
other=$([ "$role" = a ] && echo b || echo a)
my_ip=$(rxe_guest_ip "$([ "$role" = a ] && echo 1 || echo 2)")
other_ip=$(rxe_guest_ip "$([ "$role" = a ] && echo 2 || echo 1)")
state=/tmp/pair-$me
mkdir -p "$state"
cat >"$state/$me.conf" <<CONF
node = { name = "$me"; state_dir = "$state"; };
iscsi = { listen = "127.0.0.1:3261"; threads = 2; };
pair = { partner = "$other"; listen = "$my_ip:7471"; partner_address = "$other_ip:7471";
  secret = "twinlun guest pair secret"; };
targets = ( { iqn = "$iqn"; luns = ( { id = 0; path = "$state/lun0.img"; size = "64M";
  create = true; owner = "a"; } ); } );
CONF
"$build/target/twinlund" --config "$state/$me.conf" >"$dir/$me.log" 2>&1 &
pid=$!
for _ in $(seq 1 300); do
    grep -q "paired with $other" "$dir/$me.log" && break
    sleep 0.2
done
grep -q "paired with $other" "$dir/$me.log" || { echo "fail: no handshake" >"$dir/$me.done"; exit 1; }
if [ "$role" = a ]; then
    "$build/tests/workload/twl-workload" run --url "iscsi://127.0.0.1:3261/$iqn/0" \
        --journal "$dir/journal" --ops 600 --qd 16 --seed 11 >"$dir/workload.log" 2>&1
    wrc=$?
    echo "workload $wrc sha256 $(sha256sum <"$state/lun0.img" | cut -c1-64)" >"$dir/a.done"
    rxe_wait_file "$dir/b.done" 300
else
    rxe_wait_file "$dir/a.done" 600
    "$build/tests/workload/twl-workload" verify --journal "$dir/journal" \
        --file "$state/lun0.img" --block-size 512 >"$dir/verify.log" 2>&1
    vrc=$?
    echo "verify $vrc sha256 $(sha256sum <"$state/lun0.img" | cut -c1-64)" >"$dir/b.done"
fi
kill -TERM $pid
wait $pid
echo "$me: twinlund exit $?"
