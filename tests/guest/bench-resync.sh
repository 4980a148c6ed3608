#!/usr/bin/env bash
# Resync benchmark, run INSIDE one soft-RoCE guest by `tools/bench --resync`: on the same rxe
# link and in one run, ib_write_bw at the region size (the link's limit), then a pair (two
# daemons, node A owns one LUN on tmpfs, regions of 64 KiB) whose node B is killed while fio
# writes a given share of the LUN sequentially on node A (1 MiB writes of random data), and
# started again: node A's log reports the bytes resynced and the time. Per share: dirty MiB,
# resynced MiB, seconds, MB/s and the rate against ib_write_bw (goal >= 0.8; the link is measured
# before and after, the larger figure counts, since the emulated link is noisy), and the time per
# dirty GiB (resync time should grow with the dirty bytes, not the LUN size). Both copies are
# compared by SHA-256 at the end.
# Usage: tests/guest/bench-resync.sh BUILD_DIR FIO LUN_MIB PERCENTS (e.g. "1 10 100")
# shellcheck source-path=SCRIPTDIR
set -u
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
build=$(cd "${1:?build dir}" && pwd)
fio=${2:?fio binary}
lun_mib=${3:-2048}
percents=${4:-1 10 100}
runtime=10 # ib_write_bw's seconds
# shellcheck source=../../tools/rxe-lib.sh
. "$repo/tools/rxe-lib.sh"
# shellcheck source=bench-lib.sh
. "$here/bench-lib.sh"
ip=${TWL_RXE_IP:?TWL_RXE_IP not set: run under tools/rxe-vm}
dev=${TWL_RXE_DEV:-rxe0}
out=$build/bench-resync
rm -rf "$out"
mkdir -p "$out"
store=/dev/shm/twl-bench-resync
bench_shm_room
rm -rf "$store"
mkdir -p "$store/a" "$store/b"
iqn=iqn.2026-11.io.twinlun:bench

link_bw() {
    bench_bw_server 65536 &
    local spid=$!
    sleep 1
    bench_bw_client 65536 "$ip"
    wait $spid
}
# the emulated link is noisy: measured before and after the resyncs, the larger figure counts
bw_before=$(link_bw)
echo "link: ib_write_bw 64K $bw_before MB/s (before)"

config() { # NAME PARTNER ISCSI_PORT LISTEN PARTNER_ADDRESS
    cat <<CONF
node = { name = "$1"; state_dir = "$store/$1"; admin_socket = "/run/twinlun-$1.sock"; };
iscsi = { listen = "127.0.0.1:$3"; threads = 1; };
pair = { partner = "$2"; listen = "$4"; partner_address = "$5"; region_size = "64K"; timeout_ms = 2000;
  secret = "twinlun bench pair secret"; };
targets = ( { iqn = "$iqn"; luns = ( { id = 0; path = "$store/$1/lun0.img"; size = "${lun_mib}M";
  create = true; owner = "a"; } ); } );
CONF
}
config a b 3291 "$ip:7491" "$ip:7492" >"$out/a.conf"
config b a 3292 "$ip:7492" "$ip:7491" >"$out/b.conf"
# the daemons' logs (and working directories) in $out, to be watched from the host
mkdir -p "$out/a" "$out/b"
start_b() { rxe_node_start b "$out/b" 3292 -- "$build/target/twinlund" --config "$out/b.conf"; }
rxe_node_start a "$out/a" 3291 -- "$build/target/twinlund" --config "$out/a.conf"
start_b
rxe_wait_grep 'paired with b' "$out/a/a.log" 30 || { echo "bench: no handshake"; exit 1; }

rc=0
: >"$out/rows"
for pct in $percents; do
    mib=$((lun_mib * pct / 100))
    [ "$mib" -ge 1 ] || mib=1
    rxe_node_kill b KILL
    rxe_node_wait b
    "$fio" --name=dirty --ioengine=libiscsi \
        --filename="iscsi\://127.0.0.1\:3291/${iqn//:/\\:}/0" --rw=write --bs=1M --iodepth=8 \
        --size="${mib}M" --offset="$(((pct * 7919 % 97) * (lun_mib - mib) / 97))M" \
        --refill_buffers --output="$out/fio.$pct.log" >/dev/null 2>&1 ||
        { echo "bench: fio failed: $(tail -3 "$out/fio.$pct.log")"; rc=1; break; }
    before=$(grep -c 'resync LUN 0 done' "$out/a/a.log")
    start_b
    t0=$SECONDS
    until [ "$(grep -c 'resync LUN 0 done' "$out/a/a.log")" -gt "$before" ]; do
        [ $((SECONDS - t0)) -ge 900 ] && break
        sleep 1
    done
    line=$(grep 'resync LUN 0 done' "$out/a/a.log" | sed -n "$((before + 1))p")
    [ -n "$line" ] || { echo "bench: no resync done within 900 s"; rc=1; break; }
    echo "$line" >>"$out/resync-lines"
    bytes=$(sed -E 's/.*done: ([0-9]+) bytes resynced in this run.*/\1/' <<<"$line")
    secs=$(sed -E 's/.* in ([0-9.]+) s \(.*/\1/' <<<"$line")
    echo "$pct $mib $bytes $secs" >>"$out/rows"
    echo "bench: $pct %: $bytes bytes resynced in $secs s"
done
rxe_node_kill a TERM
rxe_node_kill b TERM
rxe_node_wait a
rxe_node_wait b
bw_after=$(link_bw)
echo "link: ib_write_bw 64K $bw_after MB/s (after)"
bw=$(awk -v a="$bw_before" -v b="$bw_after" 'BEGIN { print (a > b) ? a : b }')
printf '%-6s %10s %12s %8s %8s %8s %10s\n' share "dirty MiB" "resynced MiB" "s" "MB/s" "/link" "s per GiB"
while read -r pct mib bytes secs; do
    awk -v p="$pct" -v d="$mib" -v b="$bytes" -v s="$secs" -v l="$bw" 'BEGIN {
        r = (s > 0) ? b / s / 1e6 : 0
        ratio = (l > 0) ? r / l : 0
        per_gib = (b > 0) ? s / (b / 1073741824) : 0
        printf "%-6s %10d %12.1f %8.1f %8.1f %8.2f %10.1f\n", p "%", d, b / 1048576, s, r, ratio, per_gib
    }'
done <"$out/rows"
sa=$(sha256sum <"$store/a/lun0.img" | cut -c1-64)
sb=$(sha256sum <"$store/b/lun0.img" | cut -c1-64)
echo "sha256 a $sa"
echo "sha256 b $sb"
[ "$sa" = "$sb" ] || { echo "bench: the copies differ after the resyncs"; rc=1; }
rm -rf "$store"
exit $rc
