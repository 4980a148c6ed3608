#!/usr/bin/env bash
# Randomized fault soak of a pair, run INSIDE one guest (tools/test-guest's soak stage, or by
# hand under tools/rxe-vm). Two daemons, each on its own rxe device of a veth pair
# (rxe_veth_pair), so the backplane can be cut and shaped: node a owns LUN 0 (in /dev/shm) and
# serves it to twl-workload on 127.0.0.1; node b's copy lives on a small ext4 file system on
# dm-delay over a loop device (O_DIRECT, so a slow device is felt and a full one refuses writes
# into holes).
#
# A schedule of TWL_SOAK_FAULTS faults (default 10) is drawn from TWL_SOAK_SEED (default random;
# printed first: the same seed and count replay the same schedule; tests/soak/schedule.py) from
#   kill-a     SIGKILL of node a (it serves the client: the workload may see failures), restarted
#   kill-b     SIGKILL of node b, restarted after a pause
#   link-down  `ip link set vA down` (node a's end) for a few seconds, then up. Not vB: after
#              vB (node b's end) went down and up, rdma_cm connections between rxeA and rxeB
#              never came back in this one-guest shape, not even for freshly started daemons
#              (seen with TWL_SOAK_SEED=3 TWL_SOAK_KINDS=link-down before vB was left out)
#   netem      loss and/or delay on the backplane (UDP 4791) out of vA, vB or both
#   disk-full  node b's file system filled (a sparse LUN: writes into holes fail), then freed
#   disk-slow  dm-delay on node b's device: every write waits 10..150 ms, then 0 again
# Fault k is injected in the middle of workload k (overlapping writes, QD 8..32, writes up to
# 64..256 KiB, its own journal and its own slice of the LUN, so that no later segment writes
# what an earlier journal checks). After each fault: the node restarted if killed, then
#   faultK/workload   every command GOOD (kill-a: the run ends; failures allowed)
#   faultK/in-sync    node a reports the partner connected and LUN 0 in sync (within
#                     TWL_SOAK_SYNC_S, default 120 s)
#   faultK/verify-a   node a's and node b's backing files hold every acknowledged write of the
#   faultK/verify-b   segment (twl-workload verify of its journal, --prior-zero)
#   faultK/identical  both backing files have the same SHA-256
#   faultK/daemons    both daemons alive (only the killed one restarted), no sanitizer report
#                     or assertion in any log
# At the end: every journal verified again on both copies (all/verify-a, all/verify-b),
# all/identical, all/daemons, and all/stop (both exit 0 on SIGTERM). A per-fault line "soak:
# fault ..." and a final "soak: summary ..." line; figures in BUILD_DIR/guest-tests/soak
# (faults.tsv, summary.txt, schedule.txt, logs). A failed in-sync or a dead daemon ends the
# schedule early (what follows could not be judged); the final checks still run.
# Knobs: TWL_SOAK_FAULTS, TWL_SOAK_SEED, TWL_SOAK_KINDS (comma list: only these kinds),
# TWL_SOAK_LUN_MB (64), TWL_SOAK_SYNC_S (120), TWL_SOAK_AFTER_MS (workload time after the
# fault is lifted, 1000), TWL_SOAK_LOG_LEVEL (the daemons' log.level, info).
# Usage: tests/soak/pair-soak.sh BUILD_DIR
#   the long soak by hand: TWL_SOAK_FAULTS=50 tools/rxe-vm --timeout 3600 -- \
#       tests/soak/pair-soak.sh BUILD_DIR
# shellcheck source-path=SCRIPTDIR
set -u
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
build=$(cd "${1:?build dir}" && pwd)
# shellcheck source=../../tools/rxe-lib.sh
. "$repo/tools/rxe-lib.sh"
# shellcheck source=../guest/pair-lib.sh
. "$repo/tests/guest/pair-lib.sh"
ip=${TWL_RXE_IP:?TWL_RXE_IP not set: run under tools/rxe-vm}

faults=${TWL_SOAK_FAULTS:-10}
seed=${TWL_SOAK_SEED:-$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')}
kinds=${TWL_SOAK_KINDS:-}
lun_mb=${TWL_SOAK_LUN_MB:-64}
sync_s=${TWL_SOAK_SYNC_S:-120}
after_ms=${TWL_SOAK_AFTER_MS:-1000}
log_level=${TWL_SOAK_LOG_LEVEL:-info}
echo "soak: seed $seed, $faults faults${kinds:+ of kinds $kinds} (replay: TWL_SOAK_SEED=$seed TWL_SOAK_FAULTS=$faults${kinds:+ TWL_SOAK_KINDS=$kinds})"
case "$seed$faults$lun_mb$sync_s$after_ms" in
*[!0-9]*)
    echo "soak: TWL_SOAK_SEED, TWL_SOAK_FAULTS, TWL_SOAK_LUN_MB, TWL_SOAK_SYNC_S and TWL_SOAK_AFTER_MS are integers"
    exit 2
    ;;
esac

dir=/dev/shm/twl-soak
out=$build/guest-tests/soak
mnt=/mnt/twl-soak-b
dm=twl-soak-b
iqn=iqn.2026-11.io.twinlun:soak
workload=$build/tests/workload/twl-workload
ctl=$build/ctl/twinlunctl
url="iscsi://127.0.0.1:3261/$iqn/0"
rm -rf "$dir" "$out"
mkdir -p "$dir/a" "$dir/b" "$out"
t_start=$SECONDS

schedule=$(python3 "$here/schedule.py" "$seed" "$faults" "$kinds") || exit 2
echo "$schedule" >"$out/schedule.txt"

# ---- setup: the veth pair, node b's device, the two daemons

# soak_config NAME PARTNER ISCSI_PORT BP_PORT PARTNER_BP_PORT: pair_config with each node's
# backplane on its own veth end; node b's copy opened with O_DIRECT
soak_config() {
    local mine=$rxe_veth_a theirs=$rxe_veth_b direct=
    [ "$1" = b ] && mine=$rxe_veth_b theirs=$rxe_veth_a direct='direct = true;'
    pair_config "$1" "$2" "$3" "$4" "$5" "${lun_mb}M" |
        sed "s|listen = \"$ip:$4\"; partner_address = \"$ip:$5\"|listen = \"$mine:$4\"; partner_address = \"$theirs:$5\"|;
             s|create = true; owner|create = true; $direct owner|;
             s|level = \"info\"|level = \"$log_level\"|"
}

# Node b's disk: ext4 (no blocks reserved for root, which the daemon is) on dm-delay over a
# loop device over a file in memory, a little larger than the LUN; the LUN file (sparse)
# reached through a symlink at the usual place, so pair_same_sha and pair_verify read it.
loopdev=
disk_setup() {
    modprobe -q -a loop dm-delay || { echo "modprobe loop dm-delay failed"; return 1; }
    truncate -s $((lun_mb + 48))M "$dir/b.disk" || return 1
    loopdev=$(losetup -f --show "$dir/b.disk") || return 1
    echo "0 $(blockdev --getsz "$loopdev") delay $loopdev 0 0 $loopdev 0 0" |
        dmsetup --noudevsync create "$dm" || return 1
    dmsetup --noudevsync mknodes "$dm"
    mkfs.ext4 -q -m 0 "/dev/mapper/$dm" || return 1
    mkdir -p "$mnt" && mount "/dev/mapper/$dm" "$mnt" || return 1
    truncate -s "${lun_mb}M" "$mnt/lun0.img" && ln -s "$mnt/lun0.img" "$dir/b/lun0.img" || return 1
    echo "node b's copy on $(dmsetup table "$dm") ($loopdev), ext4 at $mnt: $(df -h --output=size "$mnt" | tail -1 | tr -d ' ')"
}

# disk_delay MS: every write to node b's device waits MS ms (0: none)
disk_delay() {
    local sz
    sz=$(blockdev --getsz "$loopdev")
    dmsetup --noudevsync suspend --nolockfs "$dm" &&
        echo "0 $sz delay $loopdev 0 0 $loopdev 0 $1" | dmsetup --noudevsync load "$dm" &&
        dmsetup --noudevsync resume "$dm"
}

# disk_fill: files take every free block of node b's file system (a large fallocate may stop
# short for the extent tree's own blocks: the rest in smaller steps); prints what was left
disk_fill() {
    local left i
    for i in 1 2 3 4 5 6 7 8 9 10; do
        left=$(df --output=avail -B1 "$mnt" | tail -1)
        [ "$left" -gt 0 ] || break
        fallocate -l "$left" "$mnt/filler.$i" 2>/dev/null ||
            fallocate -l $((left / 2)) "$mnt/filler.$i" 2>/dev/null ||
            fallocate -l 4096 "$mnt/filler.$i" 2>/dev/null || break
    done
    df --output=avail -B1 "$mnt" | tail -1
}

disk_free() { rm -f "$mnt"/filler*; }

# netem_on DEV LOSS_TENTHS DELAY_MS: netem on DEV's RoCE packets (UDP 4791)
netem_on() {
    local args=()
    [ "$2" -gt 0 ] && args+=(loss "$(awk -v l="$2" 'BEGIN { printf "%.1f%%", l / 10 }')")
    [ "$3" -gt 0 ] && args+=(delay "${3}ms")
    TWL_BP_DEV=$1 _rxe_bp_qdisc netem "${args[@]}"
}

# netem_off DEV: prints "SENT DROPPED" (packets through netem and dropped by it), then removes it
netem_off() {
    tc -s qdisc show dev "$1" | grep -A1 'qdisc netem' |
        sed -n 's/.* \([0-9]*\) pkt (dropped \([0-9]*\),.*/\1 \2/p' | head -1
    tc qdisc del dev "$1" root 2>/dev/null
}

start_node() {
    local port=3261
    [ "$1" = b ] && port=3262
    rxe_node_start "$1" "$dir/$1" "$port" -- "$build/target/twinlund" --config "$dir/$1.conf"
}

# restart_node NAME K: its old log kept as NAME.log.K, then started again
restart_node() {
    mv "$dir/$1/$1.log" "$dir/$1/$1.log.$2"
    start_node "$1"
}

status_a() { "$ctl" --socket /run/twinlun-a.sock status --json 2>/dev/null; }

# wait_in_sync BOUND_S: until node a reports a connected partner and LUN 0 in sync on two polls
# half a second apart
wait_in_sync() {
    local t0 s ok=0
    t0=$(date +%s%N)
    while [ $((($(date +%s%N) - t0) / 1000000000)) -lt "$1" ]; do
        if ! kill -0 "$(rxe_node_pid a)" 2>/dev/null || ! kill -0 "$(rxe_node_pid b)" 2>/dev/null; then
            echo "a daemon is not running"
            return 1
        fi
        s=$(status_a)
        if [[ $s == *'"connected":true'* && $s == *'"sync":"in-sync"'* ]]; then
            ok=$((ok + 1))
            [ $ok -ge 2 ] && return 0
        else
            ok=0
        fi
        rxe_nap 0.5
    done
    echo "not in sync after $1 s: $s"
    grep -h 'degraded\|resync\|lost\|refus\|failed' "$dir/a/a.log" | tail -8
    return 1
}

# resynced_total: bytes node a's logs (all its lives) say its resyncs copied
resynced_total() {
    cat "$dir"/a/a.log* 2>/dev/null |
        sed -n 's/.*resync LUN 0 done: \([0-9]*\) bytes resynced in this run.*/\1/p' |
        awk '{ s += $1 } END { print s + 0 }'
}

# count_a PATTERN: lines of node a's logs (all its lives) that hold PATTERN
count_a() { cat "$dir"/a/a.log* 2>/dev/null | grep -c -- "$1"; }

# same_sha: pair_same_sha with both files read at once (two vCPUs)
same_sha() {
    local sa sb
    sha256sum <"$dir/b/lun0.img" >"$dir/sha-b" &
    sa=$(sha256sum <"$dir/a/lun0.img" | cut -c1-64)
    wait $!
    sb=$(cut -c1-64 "$dir/sha-b")
    echo "sha256 a $sa"
    echo "sha256 b $sb"
    [ -n "$sa" ] && [ "$sa" = "$sb" ]
}

# logs_clean: no sanitizer report or assertion in any daemon log
logs_clean() {
    local hits
    hits=$(grep -h -E 'AddressSanitizer|LeakSanitizer|ThreadSanitizer|UndefinedBehaviorSanitizer|runtime error:|[Aa]ssertion|assert' \
        "$dir"/a/a.log* "$dir"/b/b.log* 2>/dev/null | head -5)
    [ -z "$hits" ] || { echo "in the logs: $hits"; return 1; }
}

# daemons_ok: both daemons alive (kill -0 on the pids this script started) and the logs clean
daemons_ok() {
    local n bad=0
    for n in a b; do
        if ! kill -0 "$(rxe_node_pid "$n")" 2>/dev/null; then
            echo "node $n (pid $(rxe_node_pid "$n")) is not running"
            tail -5 "$dir/$n/$n.log"
            bad=1
        fi
    done
    logs_clean || bad=1
    return "$bad"
}

# verify_one JOURNAL NODE: pair_verify, its blocks and bad blocks added to the totals
blocks_verified=0
blocks_bad=0
verify_one() {
    local line rc=0
    line=$(pair_verify "$1" "$2") || rc=$?
    echo "$2: $line"
    if [[ $line =~ verify:\ ([0-9]+)\ blocks\ checked,\ ([0-9]+)\ bad ]]; then
        blocks_verified=$((blocks_verified + BASH_REMATCH[1]))
        blocks_bad=$((blocks_bad + BASH_REMATCH[2]))
    else
        blocks_bad=unknown
        rc=1
    fi
    return "$rc"
}

# ---- one fault

declare -A kind_count=()
acked_total=0
failed_total=0
blocks_per_slice=0

# workload_counts LOG: prints "ACKED FAILED" summed over WRITE, WRITE SAME and UNMAP
workload_counts() {
    sed -n 's/.*summary: write issued=[0-9]* acked=\([0-9]*\) failed=\([0-9]*\); writesame issued=[0-9]* acked=\([0-9]*\) failed=\([0-9]*\); unmap issued=[0-9]* acked=\([0-9]*\) failed=\([0-9]*\);.*/\1 \2 \3 \4 \5 \6/p' "$1" |
        awk '{ print $1 + $3 + $5, $2 + $4 + $6 } END { if (NR == 0) print "? ?" }'
}

# wait_writing PROGRESS_FILE: until the workload's progress shows bytes written (30 s at most)
wait_writing() {
    local t0=$SECONDS bytes
    while [ $((SECONDS - t0)) -lt 30 ]; do
        if [ -s "$1" ]; then
            while read -r _ _ bytes _; do
                [ "${bytes:-0}" -gt 0 ] 2>/dev/null && return 0
            done <"$1"
        fi
        rxe_nap 0.1
    done
    return 1
}

ms_sleep() { rxe_nap "$(awk -v m="$1" 'BEGIN { printf "%.3f", m / 1000 }')"; }

# run_fault K KIND AT_MS HOLD_MS QD MAX_KIB WSEED P1 P2: one workload segment with one fault,
# then its checks; returns 1 when the soak cannot go on (not in sync, a daemon dead)
run_fault() {
    local k=$1 kind=$2 at_ms=$3 hold_ms=$4 qd=$5 max_kib=$6 wseed=$7 p1=$8 p2=$9
    local name tag seconds params="" wpid wrc=0 t_lift r0 r1 counts allow=() ok=0 lift_ms dev dropped
    local a f t_wend lost0 lost1 deg0 deg1
    lost0=$(count_a 'partner connection lost')
    deg0=$(count_a 'degraded')
    tag=$(printf 'fault%02d' "$k")
    name=$tag
    seconds=$(((at_ms + hold_ms + after_ms + 999) / 1000 + 1))
    [ "$kind" = kill-a ] && allow=(--allow-failures) && seconds=$(((at_ms + 999) / 1000 + 3))
    r0=$(resynced_total)
    rm -f "$dir/$name.progress"
    "$workload" run --url "$url" --journal "$dir/$name.journal" --ops 0 --seconds "$seconds" \
        --qd "$qd" --max "${max_kib}K" --lba-start $(((k - 1) * blocks_per_slice)) \
        --lba-count "$blocks_per_slice" --seed "$wseed" --prior-zero --timeout 30 \
        --progress "$dir/$name.progress" "${allow[@]}" >"$dir/$name.workload.log" 2>&1 &
    wpid=$!
    wait_writing "$dir/$name.progress" || echo "$tag: the workload did not start writing within 30 s"
    ms_sleep "$at_ms"
    case "$kind" in
    kill-a)
        rxe_node_kill a KILL
        rxe_node_wait a
        params="a exit $?"
        restart_node a "$k"
        ;;
    kill-b)
        rxe_node_kill b KILL
        rxe_node_wait b
        params="b exit $?, restarted after ${hold_ms} ms"
        ms_sleep "$hold_ms"
        restart_node b "$k"
        ;;
    link-down)
        # The backplane cut both ways: every RoCE packet dropped on both veth ends. Taking a
        # veth end down and up instead left the one-guest veth/rxe routing broken for good
        # (fresh daemons could not pair either); a real carrier loss is the two-guest
        # link-faults stage's (QEMU set_link).
        local n_sent n_dropped
        dropped=0
        netem_on vA 1000 0 && netem_on vB 1000 0 || echo "$tag: the cut failed"
        ms_sleep "$hold_ms"
        for dev in vA vB; do
            read -r n_sent n_dropped <<<"$(netem_off "$dev")"
            dropped=$((dropped + ${n_dropped:-0}))
        done
        params="backplane cut both ways for ${hold_ms} ms: $dropped RoCE packets dropped"
        ;;
    netem)
        local where=$((p1 / 10000)) loss=$((p1 % 10000)) devs=()
        case $where in 0) devs=(vA) ;; 1) devs=(vB) ;; *) devs=(vA vB) ;; esac
        for dev in "${devs[@]}"; do
            netem_on "$dev" "$loss" "$p2" || echo "$tag: netem on $dev failed"
        done
        ms_sleep "$hold_ms"
        local sent=0 n_sent n_dropped
        dropped=0
        for dev in "${devs[@]}"; do
            read -r n_sent n_dropped <<<"$(netem_off "$dev")"
            sent=$((sent + ${n_sent:-0}))
            dropped=$((dropped + ${n_dropped:-0}))
        done
        params="${devs[*]} loss $(awk -v l="$loss" 'BEGIN { printf "%.1f", l / 10 }')% delay ${p2} ms for ${hold_ms} ms: $sent RoCE packets, $dropped dropped"
        ;;
    disk-full)
        local left
        left=$(disk_fill)
        ms_sleep "$hold_ms"
        disk_free
        params="b's fs full (${left:-?} bytes left) for ${hold_ms} ms"
        [ "${left:-1}" = 0 ] || echo "$tag: node b's file system kept ${left:-?} bytes free"
        ;;
    disk-slow)
        disk_delay "$p1" || echo "$tag: dm-delay $p1 failed"
        ms_sleep "$hold_ms"
        disk_delay 0 || echo "$tag: dm-delay 0 failed"
        params="b's writes +${p1} ms for ${hold_ms} ms"
        ;;
    esac
    t_lift=$(date +%s%N)
    wait "$wpid" || wrc=$?
    t_wend=$(date +%s%N)
    counts=$(workload_counts "$dir/$name.workload.log")
    tail -1 "$dir/$name.workload.log" | sed "s/^/$tag: /"
    if [ "$wrc" = 0 ] && grep -q 'summary:' "$dir/$name.workload.log"; then
        echo "guest-check: PASS $tag/workload"
    else
        echo "guest-check: FAIL $tag/workload"
        echo "$tag: workload exit $wrc"
        grep -m5 'not acknowledged\|connection lost' "$dir/$name.workload.log"
        rxe_failed=1
    fi
    local sync_line
    if wait_in_sync "$sync_s"; then
        lift_ms=$((($(date +%s%N) - t_wend) / 1000000))
        sync_line=$(awk -v m="$lift_ms" -v l=$(((t_wend - t_lift) / 1000000)) 'BEGIN { printf "%.1f s after the workload ended (%.1f s after the fault was lifted)", m / 1000, (m + l) / 1000 }')
        echo "guest-check: PASS $tag/in-sync ($lift_ms ms)"
    else
        sync_line=never
        echo "guest-check: FAIL $tag/in-sync"
        rxe_failed=1
        ok=1
    fi
    rxe_check "$tag/verify-a" verify_one "$name.journal" a
    rxe_check "$tag/verify-b" verify_one "$name.journal" b
    rxe_check "$tag/identical" same_sha
    local before=$rxe_failed
    rxe_failed=0
    rxe_check "$tag/daemons" daemons_ok
    [ "$rxe_failed" = 0 ] || ok=1
    [ "$before" = 0 ] || rxe_failed=1
    r1=$(resynced_total)
    lost1=$(count_a 'partner connection lost')
    deg1=$(count_a 'degraded')
    kind_count[$kind]=$((${kind_count[$kind]:-0} + 1))
    read -r a f <<<"$counts"
    [[ $a =~ ^[0-9]+$ ]] && acked_total=$((acked_total + a))
    [[ $f =~ ^[0-9]+$ ]] && failed_total=$((failed_total + f))
    echo "soak: fault $k/$faults seed $seed kind $kind ($params; at ${at_ms} ms, QD $qd, max ${max_kib}K, workload seed $wseed) acked $a failed $f; a lost the partner's connection $((lost1 - lost0)) times, degraded $((deg1 - deg0)); resynced $((r1 - r0)) bytes; in sync ${sync_line}"
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$k" "$kind" "$params" "$a" "$f" \
        $((lost1 - lost0)) $((deg1 - deg0)) $((r1 - r0)) "${lift_ms:-never}" "$wrc" >>"$out/faults.tsv"
    return $ok
}

# ---- the soak

finish() {
    mkdir -p "$out/logs"
    cp "$dir"/a/a.log* "$dir"/b/b.log* "$dir"/*.workload.log "$dir"/verify-*.log "$out/logs/" 2>/dev/null
    # a failed run keeps what a replay needs to look at
    if [ "$rxe_failed" != 0 ]; then
        cp "$dir"/*.journal "$out/logs/" 2>/dev/null
        pair_dump_logs
    fi
}

rxe_veth_pair || {
    echo "guest-check: FAIL setup"
    exit 1
}
if ! disk_setup; then
    echo "guest-check: FAIL setup"
    exit 1
fi
soak_config a b 3261 7471 7472 >"$dir/a.conf"
soak_config b a 3262 7472 7471 >"$dir/b.conf"
lun_blocks=$((lun_mb * 2048))
blocks_per_slice=$((lun_blocks / faults / 128 * 128)) # whole 64 KiB regions
[ "$blocks_per_slice" -ge 256 ] || {
    echo "soak: $faults faults leave less than 128 KiB of a ${lun_mb} MiB LUN to each: use a larger TWL_SOAK_LUN_MB"
    exit 2
}
echo "soak: LUN ${lun_mb} MiB, $((blocks_per_slice / 2)) KiB per fault"
printf 'index\tkind\tparams\tacked\tfailed\tconnections_lost\tdegraded\tresynced_bytes\tin_sync_ms_after_workload\tworkload_exit\n' >"$out/faults.tsv"
start_node a
start_node b
rxe_check paired pair_wait_paired
rxe_check first-sync wait_in_sync 60
if [ "$rxe_failed" != 0 ]; then
    finish
    exit 1
fi
resynced_base=$(resynced_total) # the new pair's first copy
done_faults=0
while read -r k kind at hold qd max wseed p1 p2; do
    if ! run_fault "$k" "$kind" "$at" "$hold" "$qd" "$max" "$wseed" "$p1" "$p2"; then
        done_faults=$k
        echo "soak: stopped after fault $k: the pair is not back in sync or a daemon died"
        # a diagnosis, not a check: do fresh daemons on the same network and state pair?
        pair_stop_both
        restart_node a "$k.stop"
        restart_node b "$k.stop"
        if wait_in_sync 60 >/dev/null; then
            echo "soak: diagnosis: both daemons restarted: paired and in sync again (the network is fine; what failed was in the running daemons)"
        else
            echo "soak: diagnosis: both daemons restarted: still not in sync within 60 s"
        fi
        break
    fi
    done_faults=$k
done <<<"$schedule"

# ---- over all segments
all_verify() {
    local j rc=0
    for j in "$dir"/fault*.journal; do
        [ -e "$j" ] || continue
        verify_one "${j##*/}" "$1" >/dev/null || { echo "${j##*/} on $1: $(tail -1 "$dir/verify-${j##*/}-$1.log")"; rc=1; }
    done
    echo "$1: every journal verified"
    return "$rc"
}
blocks_verified=0
blocks_bad=0
rxe_check all/in-sync wait_in_sync 30
rxe_check all/verify-a all_verify a
final_verified=$blocks_verified # per copy: b's journals are the same
rxe_check all/verify-b all_verify b
final_bad=$blocks_bad
rxe_check all/identical same_sha
rxe_check all/daemons daemons_ok
rxe_check all/stop pair_stop_both
by_kind=$(for kd in kill-a kill-b link-down netem disk-full disk-slow; do
    echo "$kd ${kind_count[$kd]:-0}"
done | paste -sd, | sed 's/,/, /g')
summary="soak: summary seed $seed: $done_faults of $faults faults injected ($by_kind); commands acknowledged $acked_total (failed $failed_total); blocks verified $final_verified on each copy; bytes resynced $(($(resynced_total) - resynced_base)); lost $final_bad; $((SECONDS - t_start)) s"
echo "$summary"
echo "$summary" >"$out/summary.txt"
finish
umount "$mnt" 2>/dev/null
dmsetup --noudevsync remove "$dm" 2>/dev/null
losetup -d "$loopdev" 2>/dev/null
rm -rf "$dir"
[ "$done_faults" = "$faults" ] || rxe_failed=1
exit $rxe_failed
