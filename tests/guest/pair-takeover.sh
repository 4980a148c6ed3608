#!/usr/bin/env bash
# Planned takeover and giveback under Linux's own multipath stack, run INSIDE one guest by
# tools/test-guest (two daemons on one rxe device, as pair-lib.sh sets them up; LUN 0 owned by
# node a, node b standby for it). open-iscsi logs in to both portals, dm-multipath (multipathd,
# a config written here: ALUA handler, group_by_prio, prio alua, failback immediate,
# no_path_retry queue, tur checker, 1 s polling) builds one device of the two paths, ext4 on it
# carries a file workload and a timing writer while node b takes LUN 0 over and gives it back.
#   paired        the two nodes pair
#   paths         two iSCSI sessions, two SCSI disks, one multipath map with both as paths
#   mkfs          ext4 made on the map and mounted
#   workload-started  the file writer and the timing writer are under way before round 1
#   takeover-N    `twinlunctl takeover` on node b exits 0 and node b reports LUN 0
#                 active/optimized (node a standby) within 30 s
#   giveback-N    `twinlunctl giveback` on node b exits 0 and node a serves LUN 0 again
#                 (node b standby) within 30 s; N = 1..3
#   io-moved      node b executed writes while it served LUN 0, node a after each giveback
#   pauses        the I/O pause of each transition: the longest gap between two completed
#                 timing writes (4 KiB O_DIRECT|O_DSYNC every ~10 ms) from the command's start
#                 to 5 s after it; fails over 30 s, or if I/O resumed only after the next
#                 command (it never moved); the 2 s goal is printed, not asserted
#   workload      the file writer (random data, fsync, SHA-256 recorded) and the timing writer
#                 saw no I/O error
#   verify        every file's content matches its last recorded SHA-256 (page cache dropped)
#   fsck          fsck.ext4 -fn on the map after umount: clean
#   dmesg-dm      dmesg has no I/O error, buffer I/O or ext4/jbd2 error about the multipath
#                 device or the filesystem (what the workload could have seen)
#   dmesg-paths   on the SCSI paths, every refusal dmesg shows is ALUA's (standby or transition):
#                 a write already sent down the old path when a move happens is refused there
#                 and dm-multipath sends it again down the new one (the kernel logs an "I/O
#                 error" for the path; their count is printed, not asserted); no other sense,
#                 no critical target/medium error
#   in-sync       after logout both nodes report LUN 0 in-sync
#   sha256        node a's and node b's backing files are byte-identical
#   stop          both nodes drain and exit 0 on SIGTERM
# Figures: "takeover: round N takeover|giveback pause P s (command C s)".
# Environment: TWL_TAKEOVER_ROUNDS (3), TWL_TAKEOVER_HOLD_S (3: the I/O time after each
# transition). For diagnosis only, never in CI: TWL_TAKEOVER_PRIO_ARGS (multipath prio_args,
# e.g. exclusive_pref_bit), TWL_TAKEOVER_DIAG_RESCAN=1 (re-read the new owner's path's capacity
# after each command). Logs in BUILD_DIR/guest-tests/takeover (dmesg, multipathd, the topology
# at each step, the timing log and marks, the ALUA polls).
# Usage: tests/guest/pair-takeover.sh BUILD_DIR
set -u
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
build=$(cd "${1:?build dir}" && pwd)
. "$repo/tools/rxe-lib.sh"
. "$here/pair-lib.sh"
ip=${TWL_RXE_IP:?TWL_RXE_IP not set: run under tools/rxe-vm}
dir=$build/guest-tests/takeover
rm -rf "$dir"
mkdir -p "$dir/a" "$dir/b"
iqn=iqn.2026-11.io.twinlun:pair
ctl=$build/ctl/twinlunctl
io=$here/takeover-io.py
rounds=${TWL_TAKEOVER_ROUNDS:-3}
hold=${TWL_TAKEOVER_HOLD_S:-3}
limit_s=30
goal_s=2
tmp=/tmp/takeover # the guest's tmpfs: the writers' logs, not on the device under test
mnt=/mnt/takeover
rm -rf "$tmp"
mkdir -p "$tmp" "$mnt"
map=
files_pid=
timing_pid=
mpd_pid=

pair_config a b 3261 7471 7472 64M >"$dir/a.conf"
pair_config b a 3262 7472 7471 64M >"$dir/b.conf"

ctl_a() { "$ctl" --socket /run/twinlun-a.sock "$@"; }
ctl_b() { "$ctl" --socket /run/twinlun-b.sock "$@"; }
now() { echo "$EPOCHREALTIME"; }
usecs() { printf '%d.%06d' $(($1 / 1000000)) $(($1 % 1000000)); } # µs -> seconds
secs() { # START END (EPOCHREALTIME values): END - START in seconds, 2 decimals
    local d=$((${2/./} - ${1/./}))
    printf '%d.%02d' $((d / 1000000)) $((d % 1000000 / 10000))
}
# LUN 0's ALUA state as NODE reports it (twinlunctl luns --json)
alua_of() {
    "$ctl" --socket "/run/twinlun-$1.sock" luns --json 2>/dev/null |
        grep -o '"alua":"[^"]*"' | head -1 | cut -d'"' -f4
}
# LUN 0's write commands executed on NODE
writes_of() {
    "$ctl" --socket "/run/twinlun-$1.sock" luns --json 2>/dev/null |
        grep -o '"write":{"commands":[0-9]*' | head -1 | grep -o '[0-9]*$'
}
snapshot() { # NAME: the multipath topology and the paths' ALUA view into the logs
    {
        echo "== $1 $(now)"
        timeout 5 multipathd show maps topology 2>&1
        for d in /sys/block/sd*; do
            [ -e "$d/device/access_state" ] &&
                echo "${d##*/}: $(cat "$d/device/access_state") dh=$(cat "$d/device/dh_state")"
        done
    } >>"$dir/topology.log" 2>&1
}

initiator_up() {
    modprobe -a iscsi_tcp sd_mod dm_multipath dm_round_robin dm_service_time scsi_dh_alua ||
        return 1
    # udev names the map (/dev/mapper) and gives multipathd the paths' properties; no
    # coldplug needed: only devices added from here on matter
    /lib/systemd/systemd-udevd --daemon || return 1
    mkdir -p /etc/iscsi /var/lib/iscsi /etc/multipath
    echo "InitiatorName=iqn.2026-11.io.twinlun:guest-initiator" >/etc/iscsi/initiatorname.iscsi
    local prio_args=
    [ -n "${TWL_TAKEOVER_PRIO_ARGS:-}" ] && prio_args="prio_args \"$TWL_TAKEOVER_PRIO_ARGS\""
    cat >/etc/multipath.conf <<CONF
defaults {
    polling_interval 1
    max_polling_interval 1
    find_multipaths no
    user_friendly_names yes
}
blacklist {
    devnode "^(ram|loop|fd|md|sr|scd|st|nbd|vd|zram)"
}
devices {
    device {
        vendor "TWINLUN"
        product "twinlun disk"
        hardware_handler "1 alua"
        path_grouping_policy group_by_prio
        # the configured prioritizer, not the one detect_prio would pick (sysfs, which reads
        # the kernel's cached access_state)
        detect_prio no
        prio alua
        $prio_args
        failback immediate
        no_path_retry queue
        path_checker tur
    }
}
CONF
    cp /etc/multipath.conf "$dir/multipath.conf"
    iscsid || return 1
    multipathd -d -s >"$tmp/multipathd.log" 2>&1 &
    mpd_pid=$!
    local p
    for p in 3261 3262; do
        iscsiadm -m discovery -t sendtargets -p "127.0.0.1:$p" >/dev/null || return 1
        # a dropped session is given up (its path failed) after 10 s, not 120
        iscsiadm -m node -T "$iqn" -p "127.0.0.1:$p" -o update \
            -n node.session.timeo.replacement_timeout -v 10 || return 1
    done
    iscsiadm -m node -T "$iqn" --login >/dev/null || return 1
}

disk_a=
disk_b=
disk_of() { # PORT: the SCSI disk of the session to that portal
    iscsiadm -m session -P3 2>/dev/null | awk -v p="127.0.0.1:$1," '
        /Current Portal:/ { cur = index($0, p) > 0 }
        cur && /Attached scsi disk/ { print $4; exit }'
}

# two sessions, two disks, one multipath map holding both (60 s at most)
paths_formed() {
    local n=0 disks end=$((SECONDS + 60))
    while [ $SECONDS -lt $end ]; do
        map=$(dmsetup ls --target multipath 2>/dev/null | awk 'NR == 1 { print $1 }')
        if [ -n "$map" ] && [ -b "/dev/mapper/$map" ]; then
            n=$(dmsetup table "$map" | grep -oE ' [0-9]+:[0-9]+ ' | wc -l)
            [ "$n" = 2 ] && break
        fi
        rxe_nap 0.2
    done
    disks=$(iscsiadm -m session -P3 2>/dev/null | grep -c 'Attached scsi disk')
    # which disk is which node's path (portal 3261: node a, 3262: node b)
    disk_a=$(disk_of 3261)
    disk_b=$(disk_of 3262)
    echo "sessions $(iscsiadm -m session 2>/dev/null | wc -l), disks $disks (node a ${disk_a:-none}, node b ${disk_b:-none}), map ${map:-none} with $n paths"
    multipath -ll 2>&1 | sed 's/\x1b\[[0-9;]*m//g'
    snapshot formed
    [ "$disks" = 2 ] && [ "$n" = 2 ]
}

make_fs() {
    mkfs.ext4 -q -F -E nodiscard,lazy_itable_init=0,lazy_journal_init=0 "/dev/mapper/$map" &&
        mount "/dev/mapper/$map" "$mnt" &&
        mkdir -p "$mnt/files" &&
        dd if=/dev/zero of="$mnt/timing" bs=1M count=1 conv=fsync status=none
}

workload_start() {
    python3 "$io" files "$mnt/files" "$tmp/manifest" 7 >"$tmp/files.out" 2>&1 &
    files_pid=$!
    python3 "$io" timing "$mnt/timing" "$tmp/timing.log" 0.01 >"$tmp/timing.out" 2>&1 &
    timing_pid=$!
}

# both writers under way: 20 timing writes and a file recorded (30 s at most)
workload_started() {
    local end=$((SECONDS + 30)) n=0 f=0
    while [ $SECONDS -lt $end ]; do
        n=$(cat "$tmp/timing.log" 2>/dev/null | wc -l)
        f=$(cat "$tmp/manifest" 2>/dev/null | wc -l)
        [ "$n" -ge 20 ] && [ "$f" -ge 1 ] && break
        rxe_nap 0.2
    done
    echo "under way: $n timing writes, $f files"
    [ "$n" -ge 20 ] && [ "$f" -ge 1 ]
}

workload_stop() {
    local rf=0 rt=0
    kill -TERM "$files_pid" "$timing_pid" 2>/dev/null
    wait "$files_pid" || rf=$?
    wait "$timing_pid" || rt=$?
    files_pid=
    timing_pid=
    cat "$tmp/files.out" "$tmp/timing.out"
    [ $rf = 0 ] && [ $rt = 0 ]
}

# wait_serves NODE OTHER: NODE reports LUN 0 active/optimized and OTHER standby (30 s at most);
# sets served_at
served_at=
wait_serves() {
    local sa so end=$((SECONDS + 30))
    served_at=
    while [ $SECONDS -lt $end ]; do
        local p0=$EPOCHREALTIME
        sa=$(alua_of "$1")
        so=$(alua_of "$2")
        echo "$p0 $(now) $1 $sa $2 $so" >>"$dir/poll.log"
        if [ "$sa" = active/optimized ] && [ "$so" = standby ]; then
            served_at=$(now)
            return 0
        fi
        rxe_nap 0.2
    done
    echo "after 30 s: node $1 reports $sa, node $2 reports $so"
    return 1
}

# transition ROUND VERB NEW OLD: twinlunctl VERB on node b; NEW must serve LUN 0 afterwards.
# Appends the mark line for the pause (the window: the command's start + 5 s, or its end if
# later) and lets I/O run HOLD s after NEW reported it, and at least to the window's end.
transition() {
    local round=$1 verb=$2 new=$3 old=$4 t0 t1 rc=0 wend w0 w1 out until_us left_us
    w0=$(writes_of "$new")
    t0=$(now)
    out=$(ctl_b "$verb" 2>&1) || rc=$?
    t1=$(now)
    echo "twinlunctl $verb on b: exit $rc ($(secs "$t0" "$t1") s): $out"
    if [ "${TWL_TAKEOVER_DIAG_RESCAN:-0}" = 1 ]; then
        # diagnosis only (not a fix): re-read the new owner's path, whose capacity the standby
        # port refused at login (READ CAPACITY in standby)
        local d
        [ "$new" = a ] && d=$disk_a || d=$disk_b
        [ "$(cat "/sys/block/$d/size")" = 0 ] && echo 1 >"/sys/block/$d/device/rescan"
        echo "diagnosis: rescanned $d: $(cat "/sys/block/$d/size") sectors"
    fi
    wait_serves "$new" "$old" || rc=1
    wend=$((${t0/./} + 5000000))
    [ "${t1/./}" -gt "$wend" ] && wend=${t1/./}
    echo "round_${round}_$verb $t0 $t1 $(usecs "$wend")" >>"$tmp/marks"
    [ -n "$served_at" ] && echo "node $new serves LUN 0 $(secs "$t0" "$served_at") s after the command's start"
    local base=${served_at:-$t1}
    until_us=$((${base/./} + hold * 1000000))
    [ "$wend" -gt "$until_us" ] && until_us=$wend
    left_us=$((until_us - ${EPOCHREALTIME/./}))
    [ "$left_us" -gt 0 ] && rxe_nap "$(usecs "$left_us")"
    snapshot "round-$round-$verb-held"
    w1=$(writes_of "$new")
    echo "node $new executed $((${w1:-0} - ${w0:-0})) writes since the command"
    [ "$((${w1:-0} - ${w0:-0}))" -gt 0 ] || moved_ok=1
    return $rc
}

pauses() {
    cp "$tmp/timing.log" "$tmp/marks" "$dir/" 2>/dev/null
    python3 "$io" pauses "$tmp/timing.log" "$tmp/marks" "$limit_s" "$goal_s"
}

verify_files() {
    sync
    echo 3 >/proc/sys/vm/drop_caches
    python3 "$io" verify "$mnt/files" "$tmp/manifest"
}

fsck_clean() {
    umount "$mnt" || return 1
    fsck.ext4 -fn "/dev/mapper/$map"
}

# dmesg_clean dm|paths: no error lines about the multipath device and the filesystem on it
# (what the workload could have seen), or about the SCSI paths under it
dmesg_clean() {
    dmesg >"$dir/dmesg.log"
    local pat='I/O error|blk_update_request|critical (target|medium|nexus|space|allocation)|Buffer I/O error|EXT4-fs (error|warning)|JBD2.*(abort|error)|Remounting filesystem read-only'
    grep -E "$pat" "$dir/dmesg.log" >"$tmp/dmesg-bad"
    if [ "$1" = dm ]; then
        grep -E "dm-[0-9]|EXT4|JBD2|Remounting" "$tmp/dmesg-bad" >"$tmp/dmesg-bad-$1"
    else
        grep -vE "dm-[0-9]|EXT4|JBD2|Remounting" "$tmp/dmesg-bad" >"$tmp/dmesg-bad-$1"
    fi
    if [ "$1" = paths ]; then
        local senses others
        senses=$(grep -E 'Add\. Sense:' "$dir/dmesg.log" | grep -vE 'dm-[0-9]')
        others=$(echo "$senses" | grep -vE 'standby state|asymmetric access state transition|^$')
        echo "dmesg: $(grep -c 'I/O error' "$tmp/dmesg-bad-$1") path-level I/O errors (dm-multipath resent them), $(echo "$senses" | grep -c 'standby state') standby and $(echo "$senses" | grep -c 'transition') transition refusals; other senses: ${others:-none}"
        head -4 "$tmp/dmesg-bad-$1"
        [ -z "$others" ] && ! grep -qE 'critical (target|medium)' "$tmp/dmesg-bad-$1"
        return
    fi
    if [ -s "$tmp/dmesg-bad-$1" ]; then
        echo "dmesg: $(wc -l <"$tmp/dmesg-bad-$1") error lines ($1), the first (the whole log in $dir/dmesg.log):"
        head -12 "$tmp/dmesg-bad-$1"
        return 1
    fi
    echo "dmesg: no error lines ($1); $(grep -c 'device-mapper: multipath' "$dir/dmesg.log") multipath lines, $(grep -c 'alua:' "$dir/dmesg.log") alua lines"
}

initiator_down() {
    multipath -f "$map" >/dev/null 2>&1 || dmsetup remove "$map" 2>/dev/null
    iscsiadm -m node --logoutall=all >/dev/null 2>&1
    [ -n "$mpd_pid" ] && kill "$mpd_pid" 2>/dev/null
    mpd_pid=
}

in_sync() {
    local ja jb end=$((SECONDS + 30))
    while [ $SECONDS -lt $end ]; do
        ja=$(ctl_a luns --json 2>/dev/null | grep -o '"sync":"[^"]*"' | head -1)
        jb=$(ctl_b luns --json 2>/dev/null | grep -o '"sync":"[^"]*"' | head -1)
        [ "$ja" = '"sync":"in-sync"' ] && [ "$jb" = '"sync":"in-sync"' ] && break
        rxe_nap 0.2
    done
    echo "node a $ja, node b $jb"
    [ "$ja" = '"sync":"in-sync"' ] && [ "$jb" = '"sync":"in-sync"' ]
}

diagnose() {
    [ "$rxe_failed" != 0 ] || return 0
    echo "---- LUN 0 lines, node a ----"
    grep -h 'LUN 0\|takeover\|giveback' "$dir/a/a.log" | tail -30
    echo "---- LUN 0 lines, node b ----"
    grep -h 'LUN 0\|takeover\|giveback' "$dir/b/b.log" | tail -30
    echo "---- topology snapshots (tail) ----"
    tail -60 "$dir/topology.log" 2>/dev/null
    echo "---- multipathd (tail) ----"
    tail -40 "$tmp/multipathd.log" 2>/dev/null
    echo "---- dmesg (tail) ----"
    dmesg | tail -40
}

cleanup() {
    [ -n "$files_pid" ] && kill -TERM "$files_pid" 2>/dev/null
    [ -n "$timing_pid" ] && kill -TERM "$timing_pid" 2>/dev/null
    cp "$tmp"/*.log "$tmp"/*.out "$tmp/marks" "$tmp/manifest" "$dir/" 2>/dev/null
}
trap cleanup EXIT

rxe_node_start a "$dir/a" 3261 -- "$build/target/twinlund" --config "$dir/a.conf"
rxe_node_start b "$dir/b" 3262 -- "$build/target/twinlund" --config "$dir/b.conf"
rxe_check paired pair_wait_paired
if [ $rxe_failed = 0 ]; then
    initiator_up || { echo "initiator set-up failed"; rxe_failed=1; }
fi
[ $rxe_failed = 0 ] && rxe_check paths paths_formed
[ $rxe_failed = 0 ] && rxe_check mkfs make_fs
if [ $rxe_failed = 0 ]; then
    : >"$tmp/marks"
    moved_ok=0
    workload_start
    rxe_check workload-started workload_started
    rxe_nap 2
    for r in $(seq 1 "$rounds"); do
        [ $rxe_failed = 0 ] || break
        rxe_check "takeover-$r" transition "$r" takeover b a
        [ $rxe_failed = 0 ] || break
        rxe_check "giveback-$r" transition "$r" giveback a b
        [ $rxe_failed = 0 ] || break
    done
    rxe_nap 1
    timeout 10 multipath -ll 2>&1 | sed 's/\x1b\[[0-9;]*m//g'
    rxe_check io-moved test "$moved_ok" = 0
    rxe_check workload workload_stop
    rxe_check pauses pauses
    rxe_check verify verify_files
    rxe_check fsck fsck_clean
    rxe_check dmesg-dm dmesg_clean dm
    rxe_check dmesg-paths dmesg_clean paths
fi
[ -n "$map" ] && initiator_down
# kernel warnings (the whole run, the teardown included) are printed, not asserted
dmesg >"$dir/dmesg-end.log"
echo "kernel: $(grep -cE 'WARNING:|BUG:|Call Trace:' "$dir/dmesg-end.log") warning/trace lines in dmesg$(
    grep -m1 -E 'WARNING:|BUG:' "$dir/dmesg-end.log" | sed 's/^/, the first: /')"
rxe_check in-sync in_sync
rxe_check sha256 pair_same_sha
rxe_check stop pair_stop_both
diagnose
pair_dump_logs
exit $rxe_failed
