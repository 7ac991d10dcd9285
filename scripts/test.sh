#!/usr/bin/env bash
# Command (2) of the README (and all that .ci/run does): install what is
# missing, build, and run every test: unit tests, fuzz corpora, and the
# integration tests that drive the real binary with DCMTK tools, stunnel,
# sslscan, openssl and pydicom. Then the same unit tests, corpora and
# hostile-input tests on the AddressSanitizer/UBSan build, and the
# concurrency tests on the ThreadSanitizer build.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh --test
scripts/build.sh release
ctest --preset release --output-on-failure
scripts/build.sh asan
ctest --preset asan --output-on-failure
scripts/build.sh tsan
ctest --preset tsan --output-on-failure
