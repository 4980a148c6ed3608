#!/usr/bin/env bash
# Linux's own initiator against twinlund, inside the soft-RoCE guest (the host kernel has no
# iscsi_tcp): discovery, login with header and data digests, O_DIRECT writes of random data
# through the SCSI disk, read back through the kernel, logout, a clean daemon stop; then the
# backing file must hold exactly what was written.
# Usage (host): tools/rxe-vm -- tests/guest/kernel-initiator.sh BUILD_DIR
set -euo pipefail
BUILD=$(cd "${1:-${TWL_BUILD_DIR:-build}}" && pwd)
IQN=iqn.2026-11.io.twinlun:default
work=$(mktemp -d /tmp/kinit.XXXXXX)
daemon=
fail() {
  echo "kernel-initiator: FAIL: $*" >&2
  echo "--- twinlund log (tail)" >&2
  tail -20 "$work/twinlund.log" >&2 || true
  exit 1
}
cleanup() {
  iscsiadm -m node --logoutall=all >/dev/null 2>&1 || true
  [[ -n $daemon ]] && kill "$daemon" 2>/dev/null || true
}
trap cleanup EXIT

modprobe iscsi_tcp
modprobe sd_mod
mkdir -p /run/lock /etc/iscsi /var/lib/iscsi
echo "InitiatorName=iqn.2026-11.io.twinlun:guest-initiator" >/etc/iscsi/initiatorname.iscsi
iscsid
"$BUILD/target/twinlund" --state-dir "$work/state" --port 3260 2>"$work/twinlund.log" &
daemon=$!
for _ in $(seq 50); do
  grep -q 'listening on' "$work/twinlund.log" 2>/dev/null && break
  sleep 0.2
done

iscsiadm -m discovery -t sendtargets -p 127.0.0.1:3260 | grep -q "$IQN" || fail "discovery does not list $IQN"
iscsiadm -m node -T "$IQN" -p 127.0.0.1:3260 -o update -n node.conn[0].iscsi.HeaderDigest -v CRC32C
iscsiadm -m node -T "$IQN" -p 127.0.0.1:3260 -o update -n node.conn[0].iscsi.DataDigest -v CRC32C
iscsiadm -m node -T "$IQN" -p 127.0.0.1:3260 --login >/dev/null || fail "login"
dev=
for _ in $(seq 50); do
  dev=$(iscsiadm -m session -P3 2>/dev/null | sed -n 's/.*Attached scsi disk \(sd[a-z]*\).*/\1/p' | head -1)
  [[ -n $dev && -b /dev/$dev ]] && break
  sleep 0.2
done
[[ -n $dev && -b /dev/$dev ]] || fail "no SCSI disk appeared"
size=$(blockdev --getsize64 "/dev/$dev")
[[ $size -eq 1073741824 ]] || fail "/dev/$dev is $size bytes, expected 1073741824"
iscsiadm -m session -P2 | grep -E 'HeaderDigest: CRC32C' >/dev/null || fail "header digest not negotiated"

head -c 16M /dev/urandom >"$work/pattern"
# 1 MiB writes at the start, 4 KiB writes near the end: R2T and immediate-data paths
dd if="$work/pattern" of="/dev/$dev" bs=1M count=12 oflag=direct status=none
dd if="$work/pattern" of="/dev/$dev" bs=4k skip=3072 seek=$((size / 4096 - 1024)) count=1024 oflag=direct status=none
sync
echo 3 >/proc/sys/vm/drop_caches
got1=$(dd if="/dev/$dev" bs=1M count=12 iflag=direct status=none | sha256sum | cut -d' ' -f1)
got2=$(dd if="/dev/$dev" bs=4k skip=$((size / 4096 - 1024)) count=1024 iflag=direct status=none | sha256sum | cut -d' ' -f1)
want1=$(head -c 12M "$work/pattern" | sha256sum | cut -d' ' -f1)
want2=$(tail -c 4M "$work/pattern" | sha256sum | cut -d' ' -f1)
[[ $got1 == "$want1" ]] || fail "read back of the first 12 MiB differs"
[[ $got2 == "$want2" ]] || fail "read back of the last 4 MiB differs"

iscsiadm -m node -T "$IQN" -p 127.0.0.1:3260 --logout >/dev/null || fail "logout"
kill -TERM "$daemon"
wait "$daemon" || fail "twinlund did not exit cleanly"
daemon=
file1=$(head -c 12M "$work/state/lun0.img" | sha256sum | cut -d' ' -f1)
file2=$(tail -c 4M "$work/state/lun0.img" | sha256sum | cut -d' ' -f1)
[[ $file1 == "$want1" && $file2 == "$want2" ]] || fail "backing file differs from what was written"
echo "kernel-initiator: ok (/dev/$dev, 16 MiB written and verified through iscsi_tcp with CRC32C digests)"
