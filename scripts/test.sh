#!/usr/bin/env bash
# The test suite: install what is missing, build, run every CTest test (GPU tests skip with 77 without a
# GPU); then the same suite again built with AddressSanitizer and UndefinedBehaviorSanitizer.
#   MOE_SANITIZE=0 scripts/test.sh     skips the sanitizer stage (quicker, for local work)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc)"
(cd build && ctest --output-on-failure -j"$(nproc)" "$@")
[ "${MOE_SANITIZE:-1}" = 0 ] && exit 0
echo "== the suite again under AddressSanitizer + UndefinedBehaviorSanitizer (host backend)"
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMOE_SANITIZE=ON -DMOE_WITH_CUDA=OFF >/dev/null
cmake --build build-asan -j"$(nproc)"
# LeakSanitizer is on, in the launcher and in every rank (a rank that fails its leak check after reporting
# fails its case). tests/lsan.supp lists the leaks in third-party code moebench cannot free, each matched
# by a frame of that code; fast_unwind_on_malloc=0 gives those frames (the libraries have no frame
# pointers). handle_segv=0 keeps a planted crash a real SIGSEGV, which the launcher tests expect to see.
export ASAN_OPTIONS=detect_leaks=1:fast_unwind_on_malloc=0:handle_segv=0:abort_on_error=1
export LSAN_OPTIONS=suppressions=$PWD/tests/lsan.supp:print_suppressions=0
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
# e2e_scenarios runs the bench files with a warm-up and 2 timed iterations here, not their 20 (under ASan
# alone: 72 s of its 156 for the bench files, 21 s so; the unsanitized stage runs them in full)
export MOE_E2E_SHORT=1
cd build-asan
# first stage only, to keep the suite under 15 minutes on 2 cores: the multinode tests (the MPI and Slurm
# libraries they load are not ours to check); e2e_ll, whose every-scenario sweep repeats what the sanitized
# e2e_scenarios (coverage.ini's ll twins) and e2e_layouts (ll over every small layout) already run through
# the ll code; e2e_torch_anchor (a fake python's timeouts, little C); e2e_determinism (the smoke run 20
# times: the sanitized e2e_smoke runs its code) and e2e_history_baseline (SQLite and compare on synthetic
# runs: the sanitized e2e_compare and e2e_history_kill run that code)
exec ctest --output-on-failure -j"$(nproc)" -E 'multinode|e2e_ll$|e2e_torch_anchor|e2e_determinism|e2e_history_baseline' "$@"
