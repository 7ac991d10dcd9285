# Sourced by the bench scripts: a fresh Bastion installation served with the
# peer harness's test PKI (so the same client certificates work for every
# server), PEERBENCH registered. In: ROOT PB PB_WORK PORT, $1 = installation
# name under $PB_WORK/run, $2 = permissions, $3... = extra `node add` options.
# EXTRA_CONFIG, if set, is appended to bastion.toml before serving.
# With HTTPS_PORT set, the HTTPS API listens there and a user "bench" (technologist,
# radiologist) gets an API token for the DICOMweb clients, and the request-rate limits are
# raised to BENCH_HTTP_RATE [1000000] per second.
# Out: B (binary) PKI HOME_DIR CFG PID (the server, running), HTTP_TOKEN (with HTTPS_PORT).
start_bastion() {
  local name=$1 perms=$2
  shift 2
  B="$ROOT/build/release/bastion"
  PKI="$PB_WORK/run/tls"
  bash "$PB/lib/mk_certs.sh" "$PKI" >/dev/null
  HOME_DIR="$PB_WORK/run/$name"
  rm -rf "$HOME_DIR"
  "$B" init "$HOME_DIR" --port "$PORT" >/dev/null
  CFG="$HOME_DIR/bastion.toml"
  sed -i "s|^ca = .*|ca = '$PKI/ca.crt'|; s|^cert = .*|cert = '$PKI/server.crt'|; s|^key = .*|key = '$PKI/server.key'|" \
    "$CFG"
  "$B" node add --config "$CFG" --ae PEERBENCH --cidr 127.0.0.1/32 --cert "$PKI/client.crt" --perm "$perms" "$@" \
    >/dev/null
  if [ -n "${HTTPS_PORT:-}" ]; then
    # One client at full speed from one address: the request-rate limits (1,000/s per source and
    # per user by default, docs/dicomweb.md) would measure themselves, so the bench raises them.
    printf "\n[http]\nenabled = true\naddress = '127.0.0.1'\nport = %s\nrate_per_s = %s\nrate_burst = %s\nuser_rate_per_s = %s\nuser_rate_burst = %s\n" \
      "$HTTPS_PORT" "${BENCH_HTTP_RATE:-1000000}" "${BENCH_HTTP_RATE:-1000000}" "${BENCH_HTTP_RATE:-1000000}" \
      "${BENCH_HTTP_RATE:-1000000}" >>"$CFG"
    "$B" user add --config "$CFG" bench --role technologist --role radiologist --site main >/dev/null
    HTTP_TOKEN=$("$B" token create --config "$CFG" bench --name bench --perm echo,store,find,get | sed -n 's/^token: //p')
    export HTTP_TOKEN
  fi
  if [ -n "${EXTRA_CONFIG:-}" ]; then printf "\n%s\n" "$EXTRA_CONFIG" >>"$CFG"; fi
  "$B" serve --config "$CFG" >"$HOME_DIR/serve.log" 2>&1 &
  PID=$!
  for _ in $(seq 100); do grep -q "DICOM TLS on" "$HOME_DIR/serve.log" && return 0; sleep 0.1; done
  echo "bastion did not start: $(cat "$HOME_DIR/serve.log")" >&2
  return 1
}
