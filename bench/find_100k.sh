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
EXTRA="$PB_WORK/data/extra90k_s310"
"$ROOT/scripts/install-deps.sh" --bench
"$ROOT/scripts/build.sh" release >/dev/null
[ -f "$EXTRA/manifest.tsv" ] || /usr/bin/python3 "$PB/gen_dataset.py" --out "$EXTRA" --seed 310 --patients 9000 \
  --studies 2 --series 1 --instances 5 --rows 64 --cols 64 >/dev/null
source "$ROOT/bench/lib/start_bastion.sh"
start_bastion bastion100k echo,store,find
(cd "$PB" && TCP_NODELAY=1 ./start_orthanc.sh reset >/dev/null)
trap 'kill $PID 2>/dev/null; wait $PID 2>/dev/null || true; (cd "$PB" && ./start_orthanc.sh stop >/dev/null)' EXIT
TLSARGS=(+tls "$PKI/client.key" "$PKI/client.crt" +cf "$PKI/ca.crt")
load() {  # $1 = label; storescu in 4 parallel processes over both sets
  local dirs=("$PB_WORK/data/index10k" "$EXTRA") pids
  for d in "${dirs[@]}"; do
    pids=()
    for shard in 0 1 2 3; do
      find "$d" -name '*.dcm' | sort | awk -v s=$shard 'NR % 4 == s' > "$PB_WORK/run/shard$shard.lst"
      if [ "$1" = bastion ]; then
        xargs -a "$PB_WORK/run/shard$shard.lst" env TCP_NODELAY=1 storescu -aet PEERBENCH -aec BASTION "${TLSARGS[@]}" \
          127.0.0.1 "$PORT" >/dev/null 2>&1 &
      else
        xargs -a "$PB_WORK/run/shard$shard.lst" env TCP_NODELAY=1 storescu -aet PEERBENCH -aec ORTHANC \
          127.0.0.1 14242 >/dev/null 2>&1 &
      fi
      pids+=($!)
    done
    wait "${pids[@]}"  # not a bare wait: the server is a child too
  done
}
[ -f "$PB_WORK/data/index10k/manifest.tsv" ] || /usr/bin/python3 "$PB/gen_dataset.py" --out "$PB_WORK/data/index10k" \
  --seed 300 --patients 1000 --studies 2 --series 1 --instances 5 --rows 64 --cols 64 >/dev/null
echo "# loading ~100k instances into Bastion and Orthanc"
load bastion
load orthanc
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
