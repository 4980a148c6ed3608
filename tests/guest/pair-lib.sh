# Shared by the one-guest pair tests (sourced): the config of one node of a pair on one rxe
# device, waiting for the pair's handshake, comparing and verifying the two copies. Needs dir,
# ip and iqn set by the caller (and workload, for pair_verify).

# pair_config NAME PARTNER ISCSI_PORT BP_PORT PARTNER_BP_PORT [SIZE] [EXTRA_PAIR_KEYS]
# (pair.timeout_ms from $pair_timeout_ms, default 5000; the admin socket on the guest's tmpfs,
# since Unix sockets cannot live on the 9p share: twinlunctl --socket /run/twinlun-NAME.sock;
# $pair_extra_groups is added at the top level, e.g. a metrics group; pair.secret from
# $pair_secret, default the guest tests' secret, none when set empty)
pair_config() {
    local secret=${pair_secret-twinlun guest pair secret} secret_kv=
    [ -n "$secret" ] && secret_kv="secret = \"$secret\";"
    cat <<CONF
node = { name = "$1"; state_dir = "$dir/$1"; admin_socket = "/run/twinlun-$1.sock"; };
log = { level = "info"; };
iscsi = { listen = "127.0.0.1:$3"; threads = 2; };
pair = { partner = "$2"; listen = "$ip:$4"; partner_address = "$ip:$5"; timeout_ms = ${pair_timeout_ms:-5000}; $secret_kv ${7:-} };
targets = ( { iqn = "$iqn"; luns = ( { id = 0; path = "$dir/$1/lun0.img"; size = "${6:-64M}";
  create = true; owner = "a"; } ); } );
${pair_extra_groups:-}
CONF
}

# pair_wait_paired [COUNT_A COUNT_B]: until node a's log says "paired with b" COUNT_A times
# and node b's "paired with a" COUNT_B times (default once each; a restarted node starts a
# new log), at most 20 s
pair_wait_paired() {
    local la=$dir/a/a.log lb=$dir/b/b.log ca=${1:-1} cb=${2:-1}
    for _ in $(seq 1 100); do
        if [ "$(grep -c 'paired with b' "$la")" -ge "$ca" ] &&
            [ "$(grep -c 'paired with a' "$lb")" -ge "$cb" ]; then
            grep -h 'paired with' "$la" "$lb" | tail -2
            return 0
        fi
        sleep 0.2
    done
    echo "paired: no handshake within 20 s"
    tail -n 20 "$la" "$lb"
    return 1
}

# pair_same_sha: node a's and node b's backing files have the same SHA-256 (both printed)
pair_same_sha() {
    local sa sb
    sa=$(sha256sum <"$dir/a/lun0.img" | cut -c1-64)
    sb=$(sha256sum <"$dir/b/lun0.img" | cut -c1-64)
    echo "sha256 a $sa"
    echo "sha256 b $sb"
    [ "$sa" = "$sb" ]
}

# pair_verify JOURNAL NODE: NODE's backing file holds the last acknowledged write of every
# block the journal touched (twl-workload verify; its output in DIR/verify-JOURNAL-NODE.log)
pair_verify() {
    local log="$dir/verify-$1-$2.log" rc
    "$workload" verify --journal "$dir/$1" --file "$dir/$2/lun0.img" --block-size 512 >"$log" 2>&1
    rc=$?
    tail -1 "$log"
    return $rc
}

# pair_stop_both: both nodes drain and exit 0 on SIGTERM (the exits printed)
pair_stop_both() {
    local ra=0 rb=0
    rxe_node_kill a TERM
    rxe_node_kill b TERM
    rxe_node_wait a || ra=$?
    rxe_node_wait b || rb=$?
    echo "exit a $ra, b $rb"
    [ $ra = 0 ] && [ $rb = 0 ]
}

# pair_dump_logs: after a failed check, the tail of both nodes' logs
pair_dump_logs() {
    [ "$rxe_failed" != 0 ] || return 0
    echo "---- node a ----"
    tail -40 "$dir/a/a.log"
    echo "---- node b ----"
    tail -40 "$dir/b/b.log"
}
