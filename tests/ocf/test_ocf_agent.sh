#!/usr/bin/env bash
# The Pacemaker OCF resource agent tools/ocf/twinlun against a real twinlund on this host, a
# single node (no pair section, so no RDMA): meta-data (well-formed XML; valid against
# ra-api-1.dtd and metadata.rng when resource-agents is installed), validate-all (good and
# broken settings), monitor/start/promote/demote/stop and their exit codes, the SIGKILL after
# the stop timeout, a daemon that dies at start, status JSON that cannot be parsed, and
# ocf-tester when it is installed. A single node serves its LUNs (role "single") from the
# start; monitor says 0 until Pacemaker promotes the instance, 8 after. The pair paths
# (takeover, giveback, promote, the promotion scores) run against a stand-in twinlunctl.
#
# usage: tests/ocf/test_ocf_agent.sh BUILD_DIR
# Prints "ocf-check: PASS NAME" / "ocf-check: FAIL NAME" per check and a last line
# "ocf: N passed, M failed"; exits 1 on any failure.
#   TWL_OCF_WANT_START=N  expect N from the first start (only to check that this test fails)
set -uo pipefail
BUILD=${1:?usage: test_ocf_agent.sh BUILD_DIR}
BUILD=$(cd "$BUILD" && pwd)
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
AGENT=$ROOT/tools/ocf/twinlun
DAEMON=$BUILD/target/twinlund
CTL=$BUILD/ctl/twinlunctl
for f in "$AGENT" "$DAEMON" "$CTL"; do
  [[ -x $f ]] || { echo "ocf: $f is missing or not executable" >&2; exit 2; }
done

TMP=$(mktemp -d "${TWL_TEST_TMPDIR:-/tmp}/twl-ocf-XXXXXX")
chmod 755 "$TMP" # ocf-tester runs meta-data as nobody
passed=0
failed=0
failed_names=()

cleanup() {
  # a daemon a failed check left behind
  local pid
  for pid in $(pgrep -f -- "--config $TMP/" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null; done
  rm -rf "$TMP"
}
trap cleanup EXIT

pass() { echo "ocf-check: PASS $1"; passed=$((passed + 1)); }
fail() {
  echo "ocf-check: FAIL $1${2:+: $2}"
  failed=$((failed + 1))
  failed_names+=("$1")
}

# expect NAME WANT ACTION [VAR=VALUE...]: runs the agent with the extra environment and
# checks its exit code (WANT may be "0|8").
expect() {
  local name=$1 want=$2 action=$3 out rc
  shift 3
  out=$(env "$@" "$AGENT" "$action" 2>&1)
  rc=$?
  if [[ "|$want|" == *"|$rc|"* ]]; then
    pass "$name"
  else
    fail "$name" "$action exited $rc, want $want"
    printf '%s\n' "$out" | sed 's/^/    /'
  fi
  LAST_OUT=$out
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

write_config() { # FILE STATE_DIR PORT
  cat >"$1" <<EOF
node = { name = "ocf-node"; state_dir = "$2"; };
log = { level = "info"; };
iscsi = { listen = "127.0.0.1:$3"; };
targets = ( { iqn = "iqn.2026-11.io.twinlun:ocf";
              luns = ( { id = 0; path = "lun0.img"; size = "16M"; create = true; },
                       { id = 1; path = "lun1.img"; size = "16M"; create = true; } ); } );
EOF
}

# Pacemaker's own PATH puts the system's binaries first (and a python3 shim elsewhere in PATH
# costs a third of a second per call)
export PATH=/usr/sbin:/usr/bin:/sbin:/bin:$PATH

CONF=$TMP/node.conf
write_config "$CONF" "$TMP/state" "$(free_port)"
export HA_RSCTMP=$TMP/rsc
export OCF_ROOT=${OCF_ROOT:-/usr/lib/ocf}
export OCF_RESOURCE_INSTANCE=twinlun-test
export OCF_RESKEY_config=$CONF OCF_RESKEY_daemon=$DAEMON OCF_RESKEY_ctl=$CTL
export OCF_RESKEY_logfile=$TMP/twinlund.log
export OCF_RESKEY_CRM_meta_timeout=20000
PIDFILE=$HA_RSCTMP/twinlun-$(printf '%s' "$CONF" | tr -c 'A-Za-z0-9._-' '_').pid

# ---- meta-data ----
if md=$("$AGENT" meta-data) && [[ -n $md ]]; then pass meta-data; else fail meta-data; fi
printf '%s\n' "$md" >"$TMP/meta.xml"
if command -v xmllint >/dev/null; then
  if xmllint --noout "$TMP/meta.xml" 2>"$TMP/lint"; then pass meta-data-xml
  else fail meta-data-xml "$(cat "$TMP/lint")"; fi
  if [[ -r /usr/share/resource-agents/ra-api-1.dtd ]]; then
    if xmllint --noout --valid --path /usr/share/resource-agents "$TMP/meta.xml" 2>"$TMP/lint"
    then pass meta-data-dtd; else fail meta-data-dtd "$(cat "$TMP/lint")"; fi
  fi
  if [[ -r /usr/share/resource-agents/metadata.rng ]]; then
    if xmllint --noout --relaxng /usr/share/resource-agents/metadata.rng "$TMP/meta.xml" \
      2>"$TMP/lint"; then pass meta-data-rng; else fail meta-data-rng "$(cat "$TMP/lint")"; fi
  fi
else
  echo "ocf: xmllint not installed: the XML is checked by python3 only"
fi
# the parameters and actions the agent must declare
if msg=$(python3 - "$TMP/meta.xml" <<'EOF'
import sys
import xml.etree.ElementTree as ET
r = ET.parse(sys.argv[1]).getroot()
want = {"config", "daemon", "ctl", "admin_socket", "lun", "start_timeout"}
params = {p.get("name") for p in r.iter("parameter")}
acts = [(a.get("name"), a.get("role"), a.get("interval")) for a in r.iter("action")]
names = {a[0] for a in acts}
need = {"start", "stop", "promote", "demote", "monitor", "notify", "validate-all", "meta-data"}
roles = {a[1]: a[2] for a in acts if a[0] == "monitor"}
problems = []
if r.findtext("version") != "1.1":
    problems.append("OCF version %r" % r.findtext("version"))
if want - params:
    problems.append("missing parameters %s" % sorted(want - params))
if need - names:
    problems.append("missing actions %s" % sorted(need - names))
if set(roles) != {"Promoted", "Unpromoted"} or len(set(roles.values())) != 2:
    problems.append("monitor needs role Promoted and Unpromoted at different intervals: %r" % roles)
print("; ".join(problems))
sys.exit(1 if problems else 0)
EOF
); then pass meta-data-content; else fail meta-data-content "$msg"; fi

# ---- validate-all ----
expect validate-all 0 validate-all
expect validate-all-no-config 6 validate-all OCF_RESKEY_config="$TMP/absent.conf"
printf 'node = { name = "x" ;\n' >"$TMP/broken.conf"
expect validate-all-broken-config 6 validate-all OCF_RESKEY_config="$TMP/broken.conf"
expect validate-all-no-daemon 5 validate-all OCF_RESKEY_daemon="$TMP/no-twinlund"
expect validate-all-bad-lun 6 validate-all OCF_RESKEY_lun=abc
expect validate-all-lun-range 6 validate-all OCF_RESKEY_lun=256
expect validate-all-bad-start-timeout 6 validate-all OCF_RESKEY_start_timeout=10s

# ---- the cycle ----
expect probe-no-config 7 monitor OCF_RESKEY_config="$TMP/absent.conf" OCF_RESKEY_CRM_meta_interval=0
expect monitor-stopped 7 monitor
expect start "${TWL_OCF_WANT_START:-0}" start
pid=$(cat "$PIDFILE" 2>/dev/null)
if [[ -n $pid ]] && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q "twinlund --config $CONF"
then pass start-pidfile; else fail start-pidfile "pid file $PIDFILE: '${pid}'"; fi
if "$CTL" --state-dir "$TMP/state" status >/dev/null 2>&1; then pass start-answers
else fail start-answers "twinlunctl status does not answer"; fi
expect monitor-started 0 monitor
expect start-again 0 start
if [[ $(cat "$PIDFILE" 2>/dev/null) == "$pid" ]]; then pass start-again-same-daemon
else fail start-again-same-daemon "pid $(cat "$PIDFILE" 2>/dev/null), was $pid"; fi
expect monitor-lun-absent 1 monitor OCF_RESKEY_lun=7
expect start-lun-absent 1 start OCF_RESKEY_lun=7

expect promote 0 promote
expect monitor-promoted 8 monitor
expect probe-promoted 8 monitor OCF_RESKEY_CRM_meta_interval=0
if command -v jq >/dev/null; then
  expect monitor-promoted-jq 8 monitor TWINLUN_OCF_JSON=jq
fi
expect promote-again 0 promote
expect monitor-lun1-unpromoted 0 monitor OCF_RESKEY_lun=1
expect promote-lun1 0 promote OCF_RESKEY_lun=1
expect monitor-lun1-promoted 8 monitor OCF_RESKEY_lun=1
expect demote-lun1 0 demote OCF_RESKEY_lun=1
expect monitor-lun1-demoted 0 monitor OCF_RESKEY_lun=1
expect notify 0 notify

# status --json that cannot be parsed: a twinlunctl that answers garbage
cat >"$TMP/garbage-ctl" <<'EOF'
#!/bin/sh
case " $* " in *" status "*) echo '{"node":"x","luns":[{"id":0,'; exit 0 ;; esac
exit 2
EOF
chmod +x "$TMP/garbage-ctl"
expect monitor-bad-json 1 monitor OCF_RESKEY_ctl="$TMP/garbage-ctl"
if command -v jq >/dev/null; then
  expect monitor-bad-json-jq 1 monitor OCF_RESKEY_ctl="$TMP/garbage-ctl" TWINLUN_OCF_JSON=jq
fi
# valid JSON without the luns: also unreadable
printf '#!/bin/sh\necho %s\n' "'{\"node\":\"x\",\"pair\":null}'" >"$TMP/garbage-ctl"
expect monitor-json-no-luns 1 monitor OCF_RESKEY_ctl="$TMP/garbage-ctl"

expect demote 0 demote
expect monitor-demoted 0 monitor
expect demote-again 0 demote
expect stop 0 stop
if [[ -n $pid ]] && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q twinlund; then
  fail stop-daemon-gone "pid $pid still runs"
else
  pass stop-daemon-gone
fi
if grep -q "twinlund: stopped" "$TMP/twinlund.log"; then pass stop-clean
else fail stop-clean "the daemon did not log a clean stop"; fi
expect monitor-after-stop 7 monitor
expect stop-again 0 stop
expect demote-stopped 7 demote
expect promote-stopped 7 promote

# a daemon that does not end on SIGTERM (SIGSTOPped): SIGKILL after the stop timeout less 5 s
expect start-for-kill 0 start
pid=$(cat "$PIDFILE" 2>/dev/null)
kill -STOP "$pid" 2>/dev/null
t0=$(date +%s)
expect stop-sigkill 0 stop OCF_RESKEY_CRM_meta_timeout=8000
t1=$(date +%s)
if tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q twinlund; then
  fail stop-sigkill-gone "pid $pid survived"
elif (( t1 - t0 < 4 || t1 - t0 > 20 )); then
  fail stop-sigkill-gone "stop took $((t1 - t0)) s, want about 5"
else
  pass stop-sigkill-gone
fi
expect monitor-after-kill 7 monitor
# the killed daemon's socket is stale: a new start replaces it
expect start-after-kill 0 start
expect stop-after-kill 0 stop

# the daemon's output to syslog (logger) when no logfile is set
if command -v logger >/dev/null; then
  expect start-syslog 0 start OCF_RESKEY_logfile=
  expect monitor-syslog 0 monitor OCF_RESKEY_logfile=
  expect stop-syslog 0 stop OCF_RESKEY_logfile=
fi

# a daemon that exits at start: its portal is taken
python3 -c '
import socket, sys, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", 0)); s.listen(1)
print(s.getsockname()[1], flush=True)
time.sleep(60)' >"$TMP/busy-port" &
holder=$!
for _ in $(seq 50); do [[ -s $TMP/busy-port ]] && break; sleep 0.1; done
write_config "$TMP/busy.conf" "$TMP/busy-state" "$(cat "$TMP/busy-port")"
expect start-daemon-dies 1 start OCF_RESKEY_config="$TMP/busy.conf"
if [[ $LAST_OUT == *"exited during start"* ]]; then pass start-daemon-dies-reason
else fail start-daemon-dies-reason "no reason in: $LAST_OUT"; fi
expect monitor-daemon-died 7 monitor OCF_RESKEY_config="$TMP/busy.conf"
kill "$holder" 2>/dev/null
wait "$holder" 2>/dev/null

# ---- the pair paths, through a stand-in twinlunctl (no RDMA here) ----
# It answers status from $PAIR/status.json, records every request in $PAIR/calls, and moves
# the LUNs as takeover, giveback and promote would; crm_attribute records the scores.
PAIR=$TMP/pair
mkdir -p "$PAIR/bin"
pair_status() { # CONNECTED ROLE0 SYNC0 ROLE1 SYNC1
  printf '{"node":"a","pair":{"partner":"b","connected":%s,"degraded":false},"luns":[%s,%s]}\n' \
    "$1" "{\"id\":0,\"alua\":\"x\",\"role\":\"$2\",\"sync\":\"$3\"}" \
    "{\"id\":1,\"alua\":\"x\",\"role\":\"$4\",\"sync\":\"$5\"}" >"$PAIR/status.json"
}
cat >"$PAIR/bin/twinlunctl" <<'EOF'
#!/bin/sh
dir=$(dirname "$(dirname "$0")")
while [ $# -gt 0 ]; do case $1 in --socket | --state-dir) shift 2 ;; *) break ;; esac; done
echo "$*" >>"$dir/calls"
c=$(sed -n 's/.*"connected":\([a-z]*\).*/\1/p' "$dir/status.json")
case $1 in
status) cat "$dir/status.json" ;;
takeover)
  if [ -f "$dir/refuse" ]; then echo "LUN 1: the copies differ (resync-pending)" >&2; exit 1; fi
  [ "$c" = true ] || { echo "partner not connected" >&2; exit 1; }
  sed -i 's/"secondary"/"primary"/g' "$dir/status.json" ;;
promote)
  [ "$c" = false ] || { echo "refused: the partner is connected" >&2; exit 1; }
  sed -i 's/"secondary"/"primary"/g' "$dir/status.json" ;;
giveback)
  [ "$c" = true ] || { echo "partner not connected" >&2; exit 1; }
  sed -i 's/"primary"/"secondary"/g' "$dir/status.json" ;;
*) exit 2 ;;
esac
EOF
cat >"$PAIR/bin/crm_attribute" <<'EOF'
#!/bin/sh
dir=$(dirname "$(dirname "$0")")
case $1 in --help) echo "  --promotion   the promotion score" ; exit 0 ;; esac
echo "$*" >"$dir/score"
EOF
chmod +x "$PAIR/bin/twinlunctl" "$PAIR/bin/crm_attribute"
cp "$CONF" "$PAIR/pair.conf"
pair_env=(OCF_RESKEY_config="$PAIR/pair.conf" OCF_RESKEY_ctl="$PAIR/bin/twinlunctl"
          PATH="$PAIR/bin:$PATH")
# expect_pair NAME WANT ACTION CALLS SCORE [VAR=VALUE...]: the exit code, the requests the
# agent made besides status ("" none), and the score it set last ("-D": deleted)
expect_pair() {
  local name=$1 want=$2 action=$3 calls=$4 score=$5 got
  shift 5
  : >"$PAIR/calls"
  rm -f "$PAIR/score"
  expect "$name" "$want" "$action" "${pair_env[@]}" "$@"
  got=$(grep -v '^status' "$PAIR/calls" | paste -sd, -)
  if [[ $got == "$calls" ]]; then pass "$name-requests"
  else fail "$name-requests" "requests '$got', want '$calls'"; fi
  got=$(sed -E 's/.*--promotion (-v ([0-9]+)|(-D)).*/\2\3/' "$PAIR/score" 2>/dev/null)
  if [[ $got == "$score" ]]; then pass "$name-score"
  else fail "$name-score" "score '$got', want '$score'"; fi
}
pair_status true primary in-sync secondary in-sync
expect_pair pair-monitor-mixed 0 monitor "" 50
expect_pair pair-promote 0 promote "takeover" 100
expect_pair pair-monitor-promoted 8 monitor "" 100
expect_pair pair-demote 0 demote "giveback all" 50
expect_pair pair-monitor-demoted 0 monitor "" 50
expect_pair pair-promote-lun 0 promote "takeover 1" 100 OCF_RESKEY_lun=1
expect_pair pair-demote-lun 0 demote "giveback 1" 50 OCF_RESKEY_lun=1
expect_pair pair-demote-serving-none 0 demote "" 50
touch "$PAIR/refuse"
expect_pair pair-takeover-refused 1 promote "takeover" ""
if [[ $LAST_OUT == *"ocf-exit-reason:"*"copies differ"* ]]; then pass pair-takeover-refused-reason
else fail pair-takeover-refused-reason "no reason in: $LAST_OUT"; fi
rm -f "$PAIR/refuse"
pair_status false primary partner-away secondary partner-away
expect_pair pair-away-monitor 0 monitor "" 10
expect_pair pair-away-promote 0 promote "promote" 100
expect_pair pair-away-demote 0 demote "" 100
if [[ $LAST_OUT == *"nothing can be handed over"* ]]; then pass pair-away-demote-logged
else fail pair-away-demote-logged "$LAST_OUT"; fi
pair_status true primary split-brain secondary split-brain
expect_pair pair-split-brain-no-score 0 monitor "" -D
pair_status true primary resyncing secondary sync-target
expect_pair pair-resync-target-no-score 0 monitor "" -D

# ---- ocf-tester (Debian package resource-agents) ----
if command -v ocf-tester >/dev/null; then
  # its own parameters only (-o), not this script's
  if (unset OCF_RESKEY_config OCF_RESKEY_daemon OCF_RESKEY_ctl OCF_RESKEY_logfile \
      OCF_RESKEY_CRM_meta_timeout
      ocf-tester -n twinlun -o config="$CONF" -o daemon="$DAEMON" -o ctl="$CTL" \
        -o logfile="$TMP/ocf-tester-twinlund.log" "$AGENT") >"$TMP/ocf-tester.out" 2>&1; then
    pass ocf-tester
  else
    fail ocf-tester
  fi
  sed 's/^/    /' "$TMP/ocf-tester.out"
  expect monitor-after-ocf-tester 7 monitor
else
  echo "ocf: ocf-tester not installed (Debian package resource-agents): skipped"
fi

if ((failed)); then echo "ocf: failed: ${failed_names[*]}"; fi
echo "ocf: $passed passed, $failed failed"
((failed == 0))
