#!/usr/bin/env bash
# Installs every Debian 12 package Bastion needs to build, run and test.
# Usage: scripts/install-deps.sh [--test|--bench]   (--test: test tools; --bench: also the peers)
# Idempotent: installs only what is missing. Needs root (or sudo).
set -euo pipefail

runtime_build=(
  build-essential cmake ninja-build ccache pkg-config git
  libdcmtk-dev dcmtk libssl-dev openssl libsqlite3-dev sqlite3
  libcli11-dev libtomlplusplus-dev nlohmann-json3-dev libspdlog-dev libfmt-dev
  libsodium-dev liboath-dev libqrencode-dev libunistring-dev libboost-dev libseccomp-dev
)
test_tools=(
  libgtest-dev libgmock-dev googletest libbenchmark-dev
  python3 python3-pydicom python3-pytest python3-numpy
  stunnel4 sslscan clang libclang-rt-14-dev procps iproute2 libxml2-dev libxml2-utils rsyslog rsyslog-gnutls
  oathtool python3-jwt python3-cryptography sqlmap
)

# Peers and load tools for bench/compare.sh (../shared/bench).
bench_tools=(orthanc orthanc-dicomweb wrk curl python3-numpy python3-pydicom)

want=("${runtime_build[@]}")
case "${1:-}" in
  --test) want+=("${test_tools[@]}") ;;
  --bench) want+=("${test_tools[@]}" "${bench_tools[@]}") ;;
esac

SUDO=""
if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi

missing=()
for p in "${want[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done
export DEBIAN_FRONTEND=noninteractive
if ((${#missing[@]} == 0)); then
  echo "install-deps: all ${#want[@]} packages present"
else
  echo "install-deps: installing ${missing[*]}"
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# Pinned npm packages for the tests that drive Bastion with JavaScript clients
# (tests/node/package-lock.json). Node and npm come from Debian when missing.
if [[ "${1:-}" == "--test" || "${1:-}" == "--bench" ]]; then
  if ! command -v npm >/dev/null || ! command -v node >/dev/null; then
    $SUDO apt-get install -y -qq --no-install-recommends nodejs npm
  fi
  here=$(cd "$(dirname "$0")/.." && pwd)
  if [[ ! -d "$here/tests/node/node_modules" || "$here/tests/node/package-lock.json" -nt "$here/tests/node/node_modules" ]]; then
    (cd "$here/tests/node" && npm ci --no-audit --no-fund --loglevel=error && touch node_modules)
  fi
fi
