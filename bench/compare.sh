#!/usr/bin/env bash
# bench/compare.sh [TEST...]: Bastion as shipped (DICOM TLS with client
# certificates, AES-256-GCM encryption at rest, fsync before every
# acknowledgement) against Orthanc (plain and TLS) with the shared peer
# harness (../shared/bench/compare.sh), then DCMTK's storescp (plain files,
# no TLS, no crypto, no index) on the same ingest workload, in one run.
# DICOMweb runs over Bastion's HTTPS API (port BASTION_HTTPS_PORT, 14264) with
# a bearer API token. Default tests: echo store find get qido wado meta stow. Knobs of the harness apply (QUICK=1,
# ROUNDS, FIND_KINDS...). Results: $PB_WORK/results/.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PB=${PB_HOME:-$ROOT/../shared/bench}
export PB_WORK=${PB_WORK:-${TMPDIR:-/tmp}/bastion-peerbench}
PORT=${BASTION_BENCH_PORT:-14262}
TESTS=("$@")
[ ${#TESTS[@]} -gt 0 ] || TESTS=(echo store find get qido wado meta stow)
export HTTPS_PORT=${BASTION_HTTPS_PORT:-14264}

"$ROOT/scripts/install-deps.sh" --bench
"$ROOT/scripts/build.sh" release >/dev/null
source "$ROOT/bench/lib/start_bastion.sh"
start_bastion bastion echo,store,find,get,move --move-host 127.0.0.1 --move-port "${MOVE_PORT:-14245}"
trap 'kill $PID 2>/dev/null; wait $PID 2>/dev/null || true' EXIT

echo "# Bastion $(git -C "$ROOT" rev-parse --short HEAD) pid $PID port $PORT"
LABEL=bastion HOST=127.0.0.1 PORT="$PORT" AEC=BASTION \
TLS_KEY="$PKI/client.key" TLS_CERT="$PKI/client.crt" TLS_CA="$PKI/ca.crt" \
BASE="https://127.0.0.1:$HTTPS_PORT/dicom-web" HTTP_CACERT="$PKI/ca.crt" HTTP_TOKEN="$HTTP_TOKEN" \
SERVER_PID="$PID" FIND_KINDS="${FIND_KINDS:-by_patientid by_patientname_wildcard}" \
  bash "$PB/compare.sh" "${TESTS[@]}"

if [[ " ${TESTS[*]} " == *" store "* ]]; then
  echo "# DCMTK storescp (+B, plain files, no TLS/crypto/index) on the same ingest workload"
  (cd "$PB" && TCP_NODELAY=1 ./start_dcmtk_ref.sh storescp reset >/dev/null)
  REF_RESULTS="$PB_WORK/results/storescp-$(date +%Y%m%d-%H%M%S).jsonl"
  (cd "$PB" && PB_RESULTS="$REF_RESULTS" LABEL=dcmtk_storescp PORT=14243 AEC=STORESCP \
     SERVER_PID_CMD="./start_dcmtk_ref.sh storescp pid" RUNS=${ROUNDS:-3} ./bench_dimse.sh ingest)
  (cd "$PB" && ./start_dcmtk_ref.sh storescp stop >/dev/null)
  PB_RESULTS="$REF_RESULTS" /usr/bin/python3 "$PB/lib/pbrun.py" sum | grep -E '\.(inst_per_s|mb_per_s):.*runs=' || true
fi
