#!/usr/bin/env bash
# bench/policy_overhead.sh: does access control show in throughput? The
# archive-core DIMSE benchmarks (C-STORE ingest of small objects, C-FIND) run
# as a user (DICOM user identity: an API token, through the node PEERBENCH)
# against two installations in one run, rounds interleaved:
#   single:   that one user, no grants;
#   hospital: the same user plus 999 others over 50 sites and 10,000 grants.
# Prints the medians of both and their ratio. Knobs: ROUNDS [3], SMALL_COUNT [1000],
# FIND_REPEAT [50]. Loopback only.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PB=${PB_HOME:-$ROOT/../shared/bench}
export PB_WORK=${PB_WORK:-${TMPDIR:-/tmp}/bastion-peerbench}
ROUNDS=${ROUNDS:-3}
"$ROOT/scripts/install-deps.sh" --bench
"$ROOT/scripts/build.sh" release >/dev/null
source "$ROOT/bench/lib/start_bastion.sh"
mkdir -p "$PB_WORK/results"
STAMP=$(date +%Y%m%d-%H%M%S)
declare -A PIDS PORTS TOKENS RESULTS
PORTS[single]=14271
PORTS[hospital]=14272
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

for target in single hospital; do
  PORT=${PORTS[$target]} start_bastion "policy-$target" echo,store,find,get,move
  PIDS[$target]=$PID
  "$B" user add --config "$CFG" benchuser --role technologist --role radiologist --site main >/dev/null
  TOKENS[$target]=$("$B" token create --config "$CFG" benchuser --name bench --perm echo,store,find,get,move |
                    sed -n 's/^token: //p')
  if [ "$target" = hospital ]; then
    sqlite3 "$HOME_DIR/data/index.sqlite" <<'SQL'
PRAGMA busy_timeout = 10000;
INSERT INTO user(username, password_hash, roles, site, physician_name, groups, created, password_changed)
  WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 999)
  SELECT 'user' || x, '$argon2id$v=19$m=65536,t=3,p=1$bench$bench', 'radiologist', 'site' || (x % 50), '',
         'group' || (x % 20), 0, 0 FROM c;
INSERT INTO access_grant(grantee, study_uid, kind, reason, granted_by, created, expires)
  WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 10000)
  SELECT CASE WHEN x % 100 = 0 THEN 'user:benchuser' ELSE 'user:user' || (x % 999 + 1) END,
         '2.25.' || x, 'grant', 'bench', 'bench', 0, 0 FROM c;
SQL
  fi
  RESULTS[$target]="$PB_WORK/results/policy-$target-$STAMP.jsonl"
done

run() {  # run TARGET WHAT RUN_ID
  local t=$1
  (cd "$PB" && PB_RESULTS="${RESULTS[$t]}" LABEL="$t" HOST=127.0.0.1 PORT="${PORTS[$t]}" AEC=BASTION \
     TLS_KEY="$PKI/client.key" TLS_CERT="$PKI/client.crt" TLS_CA="$PKI/ca.crt" \
     DIMSE_USER=benchuser DIMSE_PASSWORD="${TOKENS[$t]}" SERVER_PID="${PIDS[$t]}" \
     SIZES=small MODES=1assoc SMALL_COUNT="${SMALL_COUNT:-1000}" RUNS="$ROUNDS" RUN_IDS="$3" \
     FIND_REPEAT="${FIND_REPEAT:-50}" FIND_ALL=0 ./bench_dimse.sh "$2" >/dev/null)
}
for r in $(seq 1 "$ROUNDS"); do
  for t in single hospital; do run "$t" ingest "$r"; done
done
for r in $(seq 1 "$ROUNDS"); do
  for t in single hospital; do run "$t" find 1; done
done
/usr/bin/python3 "$ROOT/bench/lib/compare_medians.py" "${RESULTS[single]}" "${RESULTS[hospital]}" single hospital \
  inst_per_s,wall_s,server_cpu_ms_per_item,p50_ms,median_ms,mean_ms,p95_ms
