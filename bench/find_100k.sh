#!/usr/bin/env bash
# bench/find_100k.sh: C-FIND end to end with ~100,000 instances indexed, Bastion
# (TLS, client certificates, encrypted index) against Orthanc (plain,
# TCP_NODELAY=1), same queries, same client (findscu), interleaved rounds.
# The index: the harness's index10k (seed 300: its PatientIDs and surnames
# are what bench_dimse.sh queries) plus 90,000 more instances (seed 310).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PB=${PB_HOME:-$ROOT/../shared/bench}
export PB_WORK=${PB_WORK:-${TMPDIR:-/tmp}/bastion-peerbench}
PORT=${BASTION_BENCH_PORT:-14262}
ROUNDS=${ROUNDS:-3}
"$ROOT/scripts/install-deps.sh" --bench
"$ROOT/scripts/build.sh" release >/dev/null
source "$ROOT/bench/lib/start_bastion.sh"
source "$ROOT/bench/lib/load_100k.sh"
make_100k
start_bastion bastion100k echo,store,find
(cd "$PB" && TCP_NODELAY=1 ./start_orthanc.sh reset >/dev/null)
trap 'kill $PID 2>/dev/null; wait $PID 2>/dev/null || true; (cd "$PB" && ./start_orthanc.sh stop >/dev/null)' EXIT
echo "# loading ~100k instances into Bastion and Orthanc"
load_100k bastion
load_100k orthanc
echo "# bastion instances: $(sqlite3 "$HOME_DIR/data/index.sqlite" 'select count(*) from instance')"
echo "# orthanc: $(curl -s http://127.0.0.1:18042/statistics | tr -d '\n ')"
export PB_RESULTS="$PB_WORK/results/find100k-$(date +%Y%m%d-%H%M%S).jsonl"
for r in $(seq "$ROUNDS"); do
  (cd "$PB" && LABEL=orthanc SERVER_PID_CMD="./start_orthanc.sh pid" FIND_ALL=0 \
     FIND_KINDS="by_patientid by_patientname_wildcard" ./bench_dimse.sh find >/dev/null)
  (cd "$PB" && LABEL=bastion PORT="$PORT" AEC=BASTION TLS_KEY="$PKI/client.key" TLS_CERT="$PKI/client.crt" \
     TLS_CA="$PKI/ca.crt" SERVER_PID="$PID" FIND_ALL=0 FIND_KINDS="by_patientid by_patientname_wildcard" \
     ./bench_dimse.sh find >/dev/null)
done
/usr/bin/python3 "$PB/lib/pbrun.py" sum | grep -E '\.find\.study\..*(p50_ms|server_cpu_ms_per_req|n):' || true
