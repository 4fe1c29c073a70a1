#!/usr/bin/env bash
# The test suite: install what is missing, build, run every CTest test (GPU tests skip with 77 without a GPU).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc)"
cd build
exec ctest --output-on-failure -j"$(nproc)" "$@"
