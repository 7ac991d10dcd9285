# Sourced by find_100k.sh and web_100k.sh: the ~100,000-instance data set and
# its loading. The index: the harness's index10k (seed 300: its PatientIDs and
# surnames are what the harness queries) plus 90,000 more instances (seed 310:
# 9,000 patients x 2 studies x 5 instances of 64x64).
# In: PB PB_WORK PORT PKI. Out: EXTRA (the 90k set's folder); load_100k LABEL
# stores both sets with storescu, 4 associations in parallel (LABEL bastion:
# over TLS with the harness's client certificate; orthanc: plain, port 14242).
EXTRA="$PB_WORK/data/extra90k_s310"
make_100k() {
  [ -f "$PB_WORK/data/index10k/manifest.tsv" ] || /usr/bin/python3 "$PB/gen_dataset.py" \
    --out "$PB_WORK/data/index10k" --seed 300 --patients 1000 --studies 2 --series 1 --instances 5 \
    --rows 64 --cols 64 >/dev/null
  [ -f "$EXTRA/manifest.tsv" ] || /usr/bin/python3 "$PB/gen_dataset.py" --out "$EXTRA" --seed 310 \
    --patients 9000 --studies 2 --series 1 --instances 5 --rows 64 --cols 64 >/dev/null
}
load_100k() {
  local dirs=("$PB_WORK/data/index10k" "$EXTRA") pids d shard
  local tlsargs=(+tls "$PKI/client.key" "$PKI/client.crt" +cf "$PKI/ca.crt")
  mkdir -p "$PB_WORK/run"
  for d in "${dirs[@]}"; do
    pids=()
    for shard in 0 1 2 3; do
      find "$d" -name '*.dcm' | sort | awk -v s=$shard 'NR % 4 == s' > "$PB_WORK/run/shard$shard.lst"
      if [ "$1" = bastion ]; then
        xargs -a "$PB_WORK/run/shard$shard.lst" env TCP_NODELAY=1 storescu -aet PEERBENCH -aec BASTION \
          "${tlsargs[@]}" 127.0.0.1 "$PORT" >/dev/null 2>&1 &
      else
        xargs -a "$PB_WORK/run/shard$shard.lst" env TCP_NODELAY=1 storescu -aet PEERBENCH -aec ORTHANC \
          127.0.0.1 14242 >/dev/null 2>&1 &
      fi
      pids+=($!)
    done
    wait "${pids[@]}"  # not a bare wait: the server is a child too
  done
}
