#!/usr/bin/env bash
# bench/web_100k.sh [TEST...]: DICOMweb with ~100,000 instances indexed (issue 4's
# benchmark): Bastion over HTTPS (bearer token, encryption at rest, fsync) against
# Orthanc + its DICOMweb plugin (plain HTTP, as the harness configures it), both
# loaded with the same 100,000 instances over C-STORE (bench/lib/load_100k.sh),
# then the shared harness's DICOMweb tests in interleaved rounds: QIDO-RS studies
# by PatientID (wrk, 1 and 4 connections), WADO-RS instance / whole series (512x512
# and small), series /metadata, STOW-RS (1 and 4 clients). Default tests:
# qido wado meta stow. ROUNDS [3]. Results and the table: $PB_WORK/results/.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PB=${PB_HOME:-$ROOT/../shared/bench}
export PB_WORK=${PB_WORK:-${TMPDIR:-/tmp}/bastion-peerbench}
PORT=${BASTION_BENCH_PORT:-14262}
export HTTPS_PORT=${BASTION_HTTPS_PORT:-14264}
TESTS=("$@")
[ ${#TESTS[@]} -gt 0 ] || TESTS=(qido wado meta stow)
"$ROOT/scripts/install-deps.sh" --bench
"$ROOT/scripts/build.sh" release >/dev/null
source "$ROOT/bench/lib/start_bastion.sh"
source "$ROOT/bench/lib/load_100k.sh"
make_100k
start_bastion bastion_web100k echo,store,find,get
(cd "$PB" && TCP_NODELAY=1 ./start_orthanc.sh reset >/dev/null)
trap 'kill $PID 2>/dev/null; wait $PID 2>/dev/null || true; (cd "$PB" && ./start_orthanc.sh stop >/dev/null)' EXIT
echo "# loading ~100k instances into Bastion and Orthanc"
load_100k bastion
load_100k orthanc
echo "# bastion instances: $(sqlite3 "$HOME_DIR/data/index.sqlite" 'select count(*) from instance')"
echo "# orthanc: $(curl -s http://127.0.0.1:18042/statistics | tr -d '\n ')"
# The harness keeps the loaded Orthanc (KEEP_ORTHANC=1) and compares it with the loaded Bastion.
LABEL=bastion HOST=127.0.0.1 PORT="$PORT" AEC=BASTION \
TLS_KEY="$PKI/client.key" TLS_CERT="$PKI/client.crt" TLS_CA="$PKI/ca.crt" \
BASE="https://127.0.0.1:$HTTPS_PORT/dicom-web" HTTP_CACERT="$PKI/ca.crt" HTTP_TOKEN="$HTTP_TOKEN" \
SERVER_PID="$PID" KEEP_ORTHANC=1 SERVERS="orthanc target" ROUNDS="${ROUNDS:-3}" \
  bash "$PB/compare.sh" "${TESTS[@]}"
