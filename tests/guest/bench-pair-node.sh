#!/usr/bin/env bash
# One guest of the two-guest replication benchmark, run INSIDE a guest by
# tests/guest/bench-pair-two-guests.sh (shape b of ../shared/RXE.md; helpers: bench-lib.sh).
#   a (guest 1, the client side): perftest clients against b, then twinlund alone with fio,
#     then node a of the pair (owner of LUN 0) with the same fio jobs; writes the report
#   b (guest 2): perftest servers, then node b of the pair (applies a's writes)
# Markers in the shared DIR order the two guests; b waits without starting processes so it
# takes no CPU from the host while a is measured alone.
# Usage: tests/guest/bench-pair-node.sh a|b DIR BUILD_DIR FIO RUNTIME_S
# shellcheck source-path=SCRIPTDIR
set -u
role=${1:?a or b}
out=${2:?shared dir}
build=${3:?build dir}
fio=${4:?fio binary}
runtime=${5:-10}
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
# shellcheck source=../../tools/rxe-lib.sh
. "$repo/tools/rxe-lib.sh"
# shellcheck source=bench-lib.sh
. "$here/bench-lib.sh"
dev=${TWL_RXE_DEV:-rxe0}
my_ip=${TWL_RXE_IP:?run under tools/rxe-vm}
peer_ip=${TWL_PEER_IP:?run by bench-pair-two-guests.sh}
store=/dev/shm/twl-bench-pair
bench_shm_room
rm -rf "$store"
mkdir -p "$store/$role"
[ "$role" = a ] && mkdir -p "$store/single"
other=$([ "$role" = a ] && echo b || echo a)
# the longest wait for the other guest: its boot, or a whole phase of fio jobs
long=$((180 + 3 * (runtime + bench_ramp + 30)))

fail() {
    echo "bench-pair-node $role: FAIL: $*"
    : >"$out/$role.failed"
    exit 1
}
wait_marker() { # NAME TIMEOUT_S: wait for DIR/NAME, or for the other guest's failure
    local t0=$SECONDS
    until [ -e "$out/$1" ]; do
        [ -e "$out/$other.failed" ] && fail "guest $other failed"
        [ $((SECONDS - t0)) -ge "$2" ] && fail "no $1 after $2 s"
        rxe_nap 0.2
    done
}
start_node() { # NAME ISCSI_PORT [PARTNER]
    local partner=${3:-}
    bench_config "$1" "$partner" "$2" "$my_ip:7471" "$peer_ip:7471" >"$out/$1.conf"
    rxe_node_start "$1" "$store/$1" "$2" -- "$build/target/twinlund" --config "$out/$1.conf"
}
stop_node() { # NAME
    rxe_node_kill "$1" TERM
    rxe_node_wait "$1"
    cp "$store/$1/$1.log" "$out/" 2>/dev/null
    rm -rf "${store:?}/$1" # room in /dev/shm for the next LUN
}

if [ "$role" = b ]; then
    # ---- the link: perftest servers here, one at a time, each announced once it listens
    # (DIR/srv.NAME.TRY); a fresh one whenever a's client asks again (DIR/cli.NAME.again.TRY)
    for name in bw.4096 bw.131072 lat; do
        for try in 1 2 3; do
            case $name in
            bw.*) bench_bw_server "${name#bw.}" & ;;
            lat) bench_lat_server & ;;
            esac
            spid=$!
            sleep 1
            : >"$out/srv.$name.$try"
            wait $spid
            until [ -e "$out/cli.$name.ok" ] || [ -e "$out/cli.$name.again.$try" ]; do
                [ -e "$out/a.failed" ] && fail "guest a failed"
                rxe_nap 0.2
            done
            [ -e "$out/cli.$name.ok" ] && break
        done
    done
    # ---- idle while a measures twinlund alone, then node b of the pair
    wait_marker single.done "$long"
    bench_perf_start
    start_node b 3282 a
    rxe_wait_grep 'paired with a' "$store/b/b.log" 60 || fail "no handshake with a"
    # CPU snapshots when a asks (its measured windows; a writes DIR/snap.TAG), then a is done
    for j in $bench_jobs; do
        for tag in "pair.$j.start" "pair.$j.end"; do
            until [ -e "$out/snap.$tag" ]; do
                if [ -e "$out/pair.done" ] || [ -e "$out/a.failed" ]; then break 3; fi
                rxe_nap 0.5
            done
            bench_mark "$tag"
        done
    done
    wait_marker pair.done "$long"
    stop_node b
    bench_perf_stop
    : >"$out/b.done"
    exit 0
fi

# ---- role a: the link, as perftest's client against b; a run that moved nothing (seen once
# on the first run over a fresh link: 0 iterations) is tried again against a fresh server
link_figure() { # NAME: sets fig to the client's figure, "" when every try failed
    local name=$1 try
    fig=""
    for try in 1 2 3; do
        wait_marker "srv.$name.$try" "$long"
        case $name in
        bw.*) fig=$(bench_bw_client "${name#bw.}" "$peer_ip") ;;
        lat) fig=$(bench_lat_client "$peer_ip") ;;
        esac
        if awk -v v="$fig" 'BEGIN { exit !(v + 0 > 0) }'; then
            : >"$out/cli.$name.ok"
            return 0
        fi
        echo "bench-pair-node a: $name: no figure (try $try)"
        fig=""
        if [ "$try" = 3 ]; then : >"$out/cli.$name.ok"; else : >"$out/cli.$name.again.$try"; fi
    done
}
link_figure bw.4096
bw4k=$fig
link_figure bw.131072
bw128k=$fig
link_figure lat
lat=$fig
echo "link: ib_write_bw 4K $bw4k MB/s, 128K $bw128k MB/s; ib_write_lat 4K $lat us"
if [ -z "$bw4k" ] || [ -z "$bw128k" ] || [ -z "$lat" ]; then fail "perftest gave no figure"; fi

# ---- twinlund alone, in this guest, same fio jobs
# Every measured window is announced in DIR/snap.TAG: the host and (in the pair) b take their
# CPU snapshots then.
ask_snap() { : >"$out/snap.$1"; }
bench_snap_hook=ask_snap
bench_perf_start
start_node single 3271
sleep 1
for j in $bench_jobs; do bench_run_fio single 3271 "$j"; done
stop_node single
: >"$out/single.done"

# ---- the pair: node a here (fio's target), node b in the other guest
start_node a 3281 b
rxe_wait_grep 'paired with b' "$store/a/a.log" 90 || { stop_node a; fail "no handshake with b"; }
grep -h 'paired with' "$store/a/a.log"
for j in $bench_jobs; do bench_run_fio pair 3281 "$j"; done
bench_snap_hook=""
: >"$out/pair.done"
stop_node a
bench_perf_stop
wait_marker b.done 300

bench_report "$bw4k" "$bw128k" "$lat" | tee "$out/report.txt"
rm -rf "$store"
