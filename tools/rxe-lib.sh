# shellcheck shell=bash
# rxe-lib.sh: pair-shape helpers for twinlun's RDMA tests. Source it: . tools/rxe-lib.sh
#
# Shape (a), two daemons on one rxe device in one guest (run inside `tools/rxe-vm`):
#   rxe_node_start NAME DIR PORT -- CMD...   start CMD in the background as node NAME, with
#                                            TWL_NODE_NAME/TWL_NODE_DIR/TWL_NODE_PORT set,
#                                            cwd DIR (created), output in DIR/NAME.log
#   rxe_node_pid NAME | rxe_node_kill NAME [SIG] | rxe_node_wait NAME (returns its status)
#   NOTE: on one rxe device, traffic between the two processes takes rxe's internal loopback
#   and never reaches netfilter or tc: backplane faults need the two-guest shape.
#
# Shape (b), two guests joined by a virtual link (run on the host):
#   rxe_guest_start NAME IDX DIR -- CMD...   boot guest IDX (1 or 2) running CMD; its rxe0 runs
#                                            on eth0 = 10.78.0.IDX/24, linked to the other index
#                                            by UDP on 127.0.0.1 (ports TWL_RXE_LINK_PORT+IDX);
#                                            output in DIR/NAME.out, QEMU pid in DIR/NAME.pid,
#                                            monitor socket DIR/NAME.mon
#   rxe_guest_ip IDX                         the guest's address (10.78.0.IDX)
#   rxe_guest_kill NAME                      SIGKILL its QEMU: power loss
#   rxe_guest_link NAME on|off               QEMU monitor set_link: cable pulled / plugged
#   rxe_guest_monitor NAME CMD...            any QEMU monitor command
#   rxe_guest_wait NAME                      wait for the guest; returns rxe-vm's status
#   rxe_wait_file PATH TIMEOUT_S             wait until PATH exists (markers in a shared dir)
#   rxe_nap SECONDS                          sleep without starting a process (a process start
#                                            costs 50-250 ms of a TCG vCPU): for polling in a
#                                            guest while something is being measured
#   rxe_wait_grep PATTERN FILE TIMEOUT_S     wait until FILE contains PATTERN (a log line)
#
# Backplane-only faults (RoCE v2 = UDP 4791; iSCSI's TCP is untouched), inside a guest of the
# two-guest shape, on the interface that carries RoCE (eth0; TWL_BP_DEV overrides):
#   rxe_bp_cut | rxe_bp_uncut                iptables DROP of UDP 4791 in and out
#   rxe_bp_delay MS [JITTER_MS]              netem delay on UDP 4791 egress
#   rxe_bp_drop PERCENT                      netem loss on UDP 4791 egress
#   rxe_bp_rate RATE                         rate limit UDP 4791 egress (tc rate, e.g. 2mbit)
#   rxe_bp_clear                             remove all of the above
#   rxe_bp_dev                               prints the interface that carries RoCE
# None of these touch two daemons that share one rxe device: rxe delivers a packet for its own
# netdev's MAC inside the driver, so no interface (not even lo) ever carries it. To shape the
# backplane inside one guest, give each node its own rxe device on a veth pair:
#   rxe_veth_pair                            rxeA on vA (10.78.0.1) and rxeB on vB (10.78.0.2),
#                                            with policy routing so A->B leaves through vA
#   rxe_veth_rate RATE                       htb on vA's UDP 4791: the A->B direction limited
#                                            to RATE (e.g. 64mbit); again to change it live
#   rxe_veth_unlimit                         the same class at 10gbit (no limit)

TWL_RXE_LIB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
: "${TWL_RXE_LINK_PORT:=47900}"

declare -gA _rxe_node_pid=()
declare -gA _rxe_guest_pid=()
declare -gA _rxe_guest_dir=()

# ---- checks inside a guest script ----
# rxe_check NAME CMD...: runs CMD; prints "guest-check: PASS NAME (MS ms)" or "guest-check: FAIL
# NAME" (what tools/test-guest counts) and sets rxe_failed=1 on failure.
rxe_failed=0
rxe_check() {
    local name=$1 t0 t1
    shift
    t0=$(date +%s%N)
    if "$@"; then
        t1=$(date +%s%N)
        echo "guest-check: PASS $name ($(((t1 - t0) / 1000000)) ms)"
    else
        echo "guest-check: FAIL $name"
        rxe_failed=1
    fi
}

# ---- shape (a): two daemons in one guest ----

rxe_node_start() {
    local name=$1 dir=$2 port=$3
    shift 3
    [ "${1:-}" = -- ] && shift
    mkdir -p "$dir"
    (
        cd "$dir" || exit 1
        export TWL_NODE_NAME=$name TWL_NODE_DIR=$dir TWL_NODE_PORT=$port
        exec "$@"
    ) >"$dir/$name.log" 2>&1 &
    _rxe_node_pid[$name]=$!
}

rxe_node_pid() { echo "${_rxe_node_pid[$1]}"; }

rxe_node_kill() {
    kill -"${2:-KILL}" "${_rxe_node_pid[$1]}" 2>/dev/null
}

rxe_node_wait() {
    local rc=0
    wait "${_rxe_node_pid[$1]}" || rc=$?
    return $rc
}

# ---- shape (b): two guests ----

rxe_guest_ip() { echo "10.78.0.$1"; }

rxe_guest_start() {
    local name=$1 idx=$2 dir=$3 other
    shift 3
    [ "${1:-}" = -- ] && shift
    other=$((3 - idx))
    mkdir -p "$dir"
    rm -f "$dir/$name.pid" "$dir/$name.mon"
    _rxe_guest_dir[$name]=$dir
    "$TWL_RXE_LIB_DIR/rxe-vm" --name "$name" --cpus "${TWL_RXE_PAIR_CPUS:-1}" \
        --mem "${TWL_RXE_PAIR_MEM:-1024}" --timeout "${TWL_RXE_PAIR_TIMEOUT:-300}" \
        --ip "$(rxe_guest_ip "$idx")/24" \
        --net-udp "$((TWL_RXE_LINK_PORT + idx)):$((TWL_RXE_LINK_PORT + other))" \
        --monitor "$dir/$name.mon" --pidfile "$dir/$name.pid" \
        --env "TWL_PEER_IP=$(rxe_guest_ip "$other")" -- "$@" >"$dir/$name.out" 2>&1 &
    _rxe_guest_pid[$name]=$!
}

_rxe_qemu_pid() {
    local f=${_rxe_guest_dir[$1]}/$1.pid i
    for _ in $(seq 50); do
        [ -s "$f" ] && { cat "$f"; return 0; }
        sleep 0.1
    done
    return 1
}

rxe_guest_kill() {
    local pid
    pid=$(_rxe_qemu_pid "$1") || return 1
    kill -KILL "$pid"
}

rxe_guest_monitor() {
    local name=$1
    shift
    printf '%s\n' "$*" | socat -t 1 - "UNIX-CONNECT:${_rxe_guest_dir[$name]}/$name.mon" >/dev/null
}

rxe_guest_link() {
    rxe_guest_monitor "$1" set_link n0 "$2"
}

rxe_guest_wait() {
    local rc=0
    wait "${_rxe_guest_pid[$1]}" || rc=$?
    return $rc
}

rxe_wait_file() {
    local path=$1 tmo=$2 t0
    t0=$(date +%s)
    while [ ! -e "$path" ]; do
        [ $(($(date +%s) - t0)) -ge "$tmo" ] && return 1
        sleep 0.05
    done
}

# A private FIFO held open read-write: a read on it with -t times out without any process.
rxe_nap() {
    if [ -z "${_rxe_nap_fd:-}" ]; then
        local f
        f=$(mktemp -u "${TMPDIR:-/tmp}/rxe-nap.XXXXXX")
        mkfifo "$f" && exec {_rxe_nap_fd}<>"$f"
        rm -f "$f"
    fi
    if [ -n "${_rxe_nap_fd:-}" ]; then
        read -r -t "$1" -u "$_rxe_nap_fd" _ 2>/dev/null
    else
        sleep "$1"
    fi
    return 0
}

rxe_wait_grep() {
    local pat=$1 file=$2 tmo=$3 t0=$SECONDS
    until grep -q -- "$pat" "$file" 2>/dev/null; do
        [ $((SECONDS - t0)) -ge "$tmo" ] && return 1
        sleep 0.2
    done
    return 0
}

# ---- backplane faults (inside the guest) ----

rxe_bp_dev() {
    if [ -n "${TWL_BP_DEV:-}" ]; then
        echo "$TWL_BP_DEV"
        return
    fi
    rdma link show rxe0/1 2>/dev/null | sed -n 's/.* netdev \([^ ]*\).*/\1/p'
}

rxe_bp_cut() {
    modprobe -q iptable_filter 2>/dev/null
    iptables -I OUTPUT -p udp --dport 4791 -j DROP &&
        iptables -I INPUT -p udp --dport 4791 -j DROP
}

rxe_bp_uncut() {
    iptables -D OUTPUT -p udp --dport 4791 -j DROP 2>/dev/null
    iptables -D INPUT -p udp --dport 4791 -j DROP 2>/dev/null
    return 0
}

# A prio qdisc whose band 3 (1:3) gets UDP 4791; the netem/tbf goes on that band.
_rxe_bp_qdisc() {
    local dev
    dev=$(rxe_bp_dev)
    modprobe -q -a sch_prio sch_netem sch_tbf cls_u32 2>/dev/null
    tc qdisc del dev "$dev" root 2>/dev/null
    tc qdisc add dev "$dev" root handle 1: prio bands 3 priomap 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 &&
        tc filter add dev "$dev" parent 1: protocol ip prio 1 u32 \
            match ip protocol 17 0xff match ip dport 4791 0xffff flowid 1:3 &&
        tc qdisc add dev "$dev" parent 1:3 handle 30: "$@"
}

rxe_bp_delay() { _rxe_bp_qdisc netem delay "${1}ms" ${2:+"${2}ms"}; }
rxe_bp_drop() { _rxe_bp_qdisc netem loss "${1}%"; }
rxe_bp_rate() { _rxe_bp_qdisc tbf rate "$1" burst 32kbit latency 400ms; }

rxe_veth_a=10.78.0.1
rxe_veth_b=10.78.0.2

rxe_veth_pair() {
    local a=$rxe_veth_a b=$rxe_veth_b d
    modprobe -q -a veth sch_htb cls_u32 2>/dev/null
    ip link add vA type veth peer name vB || return 1
    ip addr add $a/24 dev vA && ip addr add $b/24 dev vB || return 1
    ip link set vA up && ip link set vB up || return 1
    for d in all default vA vB; do
        sysctl -qw net.ipv4.conf.$d.accept_local=1 net.ipv4.conf.$d.rp_filter=0
    done
    # Both addresses are local, so the local table would loop A->B back at once: consult it
    # only for packets arriving on the veths, and route each peer address out of the other end.
    ip rule add pref 1000 lookup local && ip rule del pref 0 lookup local || return 1
    ip rule add pref 10 iif vA lookup local && ip rule add pref 11 iif vB lookup local
    ip route add $b/32 dev vA src $a table 100 && ip rule add pref 20 to $b/32 lookup 100
    ip route add $a/32 dev vB src $b table 101 && ip rule add pref 21 to $a/32 lookup 101
    ip neigh replace $b lladdr "$(cat /sys/class/net/vB/address)" dev vA nud permanent
    ip neigh replace $a lladdr "$(cat /sys/class/net/vA/address)" dev vB nud permanent
    rdma link add rxeA type rxe netdev vA && rdma link add rxeB type rxe netdev vB || return 1
    sleep 1
}

# htb's default burst delivers ~75 % of the rate under TCG: 64k bursts give ~97 %. The pfifo
# holds more than rxe ever queues (~64 packets per connection), so nothing is dropped.
rxe_veth_rate() {
    if tc class show dev vA 2>/dev/null | grep -q 'class htb 1:10'; then
        tc class change dev vA parent 1:1 classid 1:10 htb rate "$1" ceil "$1" burst 64k \
            cburst 64k quantum 60000
        return
    fi
    tc qdisc add dev vA root handle 1: htb default 20 &&
        tc class add dev vA parent 1: classid 1:1 htb rate 10gbit quantum 60000 &&
        tc class add dev vA parent 1:1 classid 1:10 htb rate "$1" ceil "$1" burst 64k \
            cburst 64k quantum 60000 &&
        tc class add dev vA parent 1:1 classid 1:20 htb rate 10gbit quantum 60000 &&
        tc qdisc add dev vA parent 1:10 handle 10: pfifo limit 10000 &&
        tc filter add dev vA parent 1: protocol ip prio 1 u32 match ip protocol 17 0xff \
            match ip dport 4791 0xffff flowid 1:10
}

rxe_veth_unlimit() { rxe_veth_rate 10gbit; }

rxe_bp_clear() {
    local dev
    dev=$(rxe_bp_dev)
    tc qdisc del dev "$dev" root 2>/dev/null
    rxe_bp_uncut
}
