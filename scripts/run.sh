#!/usr/bin/env bash
# Command (1) of the README: install what is missing, build, and run the
# archive on its embedded default (SQLite index, encrypted local storage,
# DICOM over mutual TLS). The first run creates $BASTION_HOME (default
# ~/bastion) with its keys and certificates and prints what it created.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh release
home="${BASTION_HOME:-$HOME/bastion}"
bin="$PWD/build/release/bastion"
if [[ ! -f "$home/bastion.toml" ]]; then
  "$bin" init "$home"
  echo
  echo "Next: enrol the administrator (one-time password above, then a password and a TOTP app):"
  echo "  $bin user enrol admin --config $home/bastion.toml"
  echo "Register each modality or workstation, e.g."
  echo "  $bin node issue-cert --config $home/bastion.toml --name CT1 --out-key ct1.key --out-cert ct1.crt"
  echo "  $bin node add --config $home/bastion.toml --ae CT1 --cidr 10.0.0.5/32 --cert ct1.crt --perm echo,store"
  echo
fi
exec "$bin" serve --config "$home/bastion.toml"
