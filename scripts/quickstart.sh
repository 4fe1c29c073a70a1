#!/usr/bin/env bash
# Quick start: install what is missing, build, and run the default scenarios (host backend without a GPU).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc)"
exec build/moebench run "$@"
