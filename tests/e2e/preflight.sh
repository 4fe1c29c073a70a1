#!/usr/bin/env bash
# A case that cannot fit is refused before anything is allocated: exit 2, the estimate in the message,
# and quickly (the weights are never generated). A case that fits records its estimate.
. "$(dirname "$0")/lib.bash"
S="$SRC/scenarios/smoke.ini"
# deepseek-v3's 256 experts x 3 x 7168 x 2048 bf16 on one rank: 21 GiB per layer, 64 layers: 1.3 TiB
t0=$(date +%s)
"$MOEBENCH" run "$S" --only single --set model=deepseek-v3 --set layers=64 --out "$OUT/big" >"$OUT/big.out" 2>&1
rc=$?
t1=$(date +%s)
check "exit 2 for a case that cannot fit (got $rc)" test "$rc" -eq 2
check "the message names the memory and the estimate" \
  grep -q "cannot fit in host memory: it needs at least [0-9.]* GiB per rank (weights" "$OUT/big.out"
check "refused before the weights are made (took $((t1 - t0)) s)" test $((t1 - t0)) -le 20
J=$(run_json "$OUT/big")
check "run.json marks the case as an error" test "$(jget "$J" "d['cases'][0]['verdict']")" = error
# the same case at its normal size runs and records its lower-bound estimate
"$MOEBENCH" run "$S" --only single --out "$OUT/small" >"$OUT/small.out" 2>&1
check "the case at its normal size passes" test $? -eq 0
J=$(run_json "$OUT/small")
check "run.json records the memory estimate" \
  test "$(jget "$J" "int(d['cases'][0]['ranks'][0]['memory_estimate_bytes'] > 0)")" = 1
finish
