#!/usr/bin/env bash
# bench/audit_overhead.sh: is auditing nearly free? The C-STORE ingest of
# small objects (peer harness bench_dimse.sh) and QIDO-RS by PatientID
# (bench_dicomweb.sh, wrk) run against two installations in one run, rounds
# interleaved:
#   local:  the audit trail in its local store only (no export);
#   syslog: the same plus export of every record as a DICOM audit message
#           over RFC 5425 mutual TLS to a real rsyslog (rsyslog-gnutls) on
#           loopback, started here with its own certificates.
# Prints the medians of both, their ratio, and the collector's count against
# the records emitted. Knobs: ROUNDS [3], SMALL_COUNT [1000], DURATION [5],
# WRK_RUNS [2]. Loopback only.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PB=${PB_HOME:-$ROOT/../shared/bench}
export PB_WORK=${PB_WORK:-${TMPDIR:-/tmp}/bastion-peerbench}
ROUNDS=${ROUNDS:-3}
PARTS=" ${PARTS:-ingest qido} "
"$ROOT/scripts/install-deps.sh" --bench
"$ROOT/scripts/build.sh" release >/dev/null
source "$ROOT/bench/lib/start_bastion.sh"
mkdir -p "$PB_WORK/results"
STAMP=$(date +%Y%m%d-%H%M%S)
declare -A PIDS PORTS HTTPS TOKENS RESULTS CFGS
PORTS[local]=14281; HTTPS[local]=14283
PORTS[syslog]=14282; HTTPS[syslog]=14284
COL="$PB_WORK/run/collector"
RSYSLOG_PID=""
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  [ -n "$RSYSLOG_PID" ] && kill "$RSYSLOG_PID" 2>/dev/null || true
}
trap cleanup EXIT

# The collector: its own CA, server certificate, and a client certificate for Bastion.
rm -rf "$COL" && mkdir -p "$COL/work"
ec() { openssl req "$@" -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes 2>/dev/null; }
ec -x509 -new -keyout "$COL/ca.key" -out "$COL/ca.pem" -days 2 -subj /CN=bench-collector-ca \
  -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign
for leaf in server:serverAuth:IP:127.0.0.1 client:clientAuth:DNS:bastion; do
  IFS=: read -r name usage san_kind san <<<"$leaf"
  ec -new -keyout "$COL/$name.key" -out "$COL/$name.csr" -subj "/CN=$san"
  printf 'basicConstraints=CA:FALSE\nextendedKeyUsage=%s\nsubjectAltName=%s:%s\n' "$usage" "$san_kind" "$san" \
    >"$COL/$name.ext"
  openssl x509 -req -in "$COL/$name.csr" -CA "$COL/ca.pem" -CAkey "$COL/ca.key" -CAcreateserial -days 2 \
    -out "$COL/$name.pem" -extfile "$COL/$name.ext" 2>/dev/null
done
SYSLOG_PORT=14285
cat >"$COL/rsyslog.conf" <<CONF
global(workDirectory="$COL/work" maxMessageSize="1m" defaultNetstreamDriver="gtls"
  defaultNetstreamDriverCAFile="$COL/ca.pem" defaultNetstreamDriverCertFile="$COL/server.pem"
  defaultNetstreamDriverKeyFile="$COL/server.key")
module(load="imtcp" streamDriver.name="gtls" streamDriver.mode="1" streamDriver.authMode="x509/certvalid"
  maxFrameSize="1100000")
template(name="RawLine" type="string" string="%rawmsg:::drop-last-lf%\n")
input(type="imtcp" address="127.0.0.1" port="$SYSLOG_PORT" ruleset="collect")
ruleset(name="collect") { action(type="omfile" file="$COL/messages.log" template="RawLine") }
CONF
rsyslogd -n -f "$COL/rsyslog.conf" -i "$COL/work/pid" >"$COL/rsyslogd.log" 2>&1 &
RSYSLOG_PID=$!

for target in local syslog; do
  extra=""
  if [ "$target" = syslog ]; then
    extra=$(printf "[[audit.syslog]]\nhost = '127.0.0.1'\nport = %s\nca = '%s'\ncert = '%s'\nkey = '%s'\n" \
      "$SYSLOG_PORT" "$COL/ca.pem" "$COL/client.pem" "$COL/client.key")
  fi
  EXTRA_CONFIG="$extra" PORT=${PORTS[$target]} HTTPS_PORT=${HTTPS[$target]} \
    start_bastion "audit-$target" echo,store,find,get,move
  PIDS[$target]=$PID
  TOKENS[$target]=$HTTP_TOKEN
  CFGS[$target]=$CFG
  RESULTS[$target]="$PB_WORK/results/audit-$target-$STAMP.jsonl"
done

dimse() {  # dimse TARGET WHAT RUN_ID
  local t=$1
  (cd "$PB" && PB_RESULTS="${RESULTS[$t]}" LABEL="$t" HOST=127.0.0.1 PORT="${PORTS[$t]}" AEC=BASTION \
     TLS_KEY="$PKI/client.key" TLS_CERT="$PKI/client.crt" TLS_CA="$PKI/ca.crt" SERVER_PID="${PIDS[$t]}" \
     SIZES=small MODES=1assoc SMALL_COUNT="${SMALL_COUNT:-1000}" RUNS="$ROUNDS" RUN_IDS="$3" \
     FIND_REPEAT=1 FIND_ALL=0 ./bench_dimse.sh "$2" >/dev/null)
}
qido() {  # qido TARGET
  local t=$1
  (cd "$PB" && PB_RESULTS="${RESULTS[$t]}" LABEL="$t" BASE="https://127.0.0.1:${HTTPS[$t]}/dicom-web" \
     HTTP_CACERT="$PKI/ca.crt" HTTP_TOKEN="${TOKENS[$t]}" SERVER_PID="${PIDS[$t]}" QIDO_KINDS=by_patientid \
     DURATION="${DURATION:-5}" WRK_RUNS="${WRK_RUNS:-2}" ./bench_dicomweb.sh qido >/dev/null)
}
if [[ " $PARTS " == *" ingest "* ]]; then
  for r in $(seq 1 "$ROUNDS"); do
    for t in local syslog; do dimse "$t" ingest "$r"; done
  done
fi
if [[ " $PARTS " == *" qido "* ]]; then
  for t in local syslog; do dimse "$t" find 1; done  # loads index10k for QIDO
  for r in $(seq 1 "$ROUNDS"); do
    for t in local syslog; do qido "$t"; done
  done
fi

emitted=$(sqlite3 "$PB_WORK/run/audit-syslog/data/audit.sqlite" "SELECT max(seq) FROM record")
sleep 3
received=$(wc -l <"$COL/messages.log")
distinct=$(grep -o 'sequenceId="[0-9]*"' "$COL/messages.log" | sort -u | wc -l)
echo "syslog export: $emitted records emitted, $received messages received ($distinct distinct)"
cpu() { awk -v hz="$(getconf CLK_TCK)" '{printf "%.1f", ($14 + $15) / hz}' "/proc/$1/stat"; }
echo "CPU seconds over the run: bastion local $(cpu "${PIDS[local]}"), bastion syslog $(cpu "${PIDS[syslog]}"),"\
     "rsyslogd (the collector, on the same cores) $(cpu "$RSYSLOG_PID")"
/usr/bin/python3 "$ROOT/bench/lib/compare_medians.py" "${RESULTS[local]}" "${RESULTS[syslog]}" local syslog \
  inst_per_s,req_per_s,p50_ms,p99_ms,server_cpu_ms_per_item,server_cpu_ms_per_req,wall_s
