#!/usr/bin/env bash
# The fork launcher's oracle-checked run of every shipped host scenario, made once for both multinode
# tests (their CTest fixture; tests/multinode/reference.bash): every case must pass the oracle.
. "$(dirname "$0")/lib.bash"
. "$SRC/tests/multinode/reference.bash"
start=$(date +%s.%N)
mn_reference --fresh >"$OUT/why.txt"
rc=$?
check "fork launcher, every shipped host scenario, every case ok under the oracle ($(cat "$OUT/why.txt"))" test "$rc" -eq 0
check "the reference has all ${#MN_SCEN[@]} scenario files' cases" test "$(jget "$MN_REF" \
  "len({c['file'] for c in d['cases']})")" = "${#MN_SCEN[@]}"
echo "# reference run: $(echo "$(date +%s.%N) - $start" | bc) s"
finish
