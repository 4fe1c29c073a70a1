#!/usr/bin/env bash
# On a GPU host: the smoke scenario and every shipped scenario with --backend cuda (several ranks share
# a GPU through ipc), single-rank cases through nccl, and nccl refused clearly when ranks > GPUs.
# Exits 77 where there is no GPU or no CUDA backend.
. "$(dirname "$0")/lib.bash"
"$MOEBENCH" run "$SRC/scenarios/smoke.ini" --only single --backend cuda --out "$OUT/probe" -q >"$OUT/probe.out" 2>&1
rc=$?
if [ "$rc" -eq 77 ]; then
  echo "SKIP: no GPU or no CUDA backend here"
  exit 77
fi
export NCCL_NVLS_ENABLE=0
for f in "$SRC"/scenarios/*.ini; do
  n=$(basename "$f" .ini)
  case $n in bench-*) continue ;; esac # benchmarks run in scripts/gpu-check.sh
  "$MOEBENCH" run "$f" --backend cuda --out "$OUT/$n" -q >"$OUT/$n.out" 2>&1
  rc=$?
  J=$(run_json "$OUT/$n")
  check "$n (cuda): exit 0 (got $rc)" test "$rc" -eq 0
  check "$n (cuda): every case ok" test "$(jget "$J" "all(c['verdict']=='ok' for c in d['cases'])")" = True
  check "$n (cuda): invariants passed" test "$(jget "$J" "all(i['passed'] for i in d['invariants'])")" = True
  [ "$rc" -eq 0 ] || sed -n '1,40p' "$OUT/$n.out"
done
"$MOEBENCH" run "$SRC/scenarios/smoke.ini" --only single --backend cuda --transport nccl --out "$OUT/nccl" >"$OUT/nccl.out" 2>&1
check "single rank through nccl: exit 0" test $? -eq 0
"$MOEBENCH" run "$SRC/scenarios/smoke.ini" --only 'ep4-uneven' --backend cuda --transport nccl --out "$OUT/nccl4" >"$OUT/nccl4.out" 2>&1
rc=$?
ngpu=$(nvidia-smi -L 2>/dev/null | wc -l)
if [ "$ngpu" -lt 4 ]; then
  check "nccl with more ranks than GPUs exits 2 (got $rc)" test "$rc" -eq 2
  check "and says why" grep -q "nccl needs one GPU per rank" "$OUT/nccl4.out"
fi
# the memory preflight on the GPU: deepseek-v3's 256 experts on one rank need 21 GiB a layer; 8 layers cannot
# fit in any one GPU; qwen3-30b-a3b at 160 layers (24 GiB a rank) fits one rank, not 8 sharing it
"$MOEBENCH" run "$SRC/scenarios/smoke.ini" --only single --backend cuda --set model=deepseek-v3 --set layers=8 \
  --out "$OUT/big" >"$OUT/big.out" 2>&1
rc=$?
check "a case that cannot fit in GPU memory exits 2 (got $rc)" test "$rc" -eq 2
check "and names the estimate" grep -q "cannot fit in cuda memory: it needs at least" "$OUT/big.out"
"$MOEBENCH" run "$SRC/scenarios/smoke.ini" --only single --backend cuda --transport ipc --set dp=8 --set tokens=64 \
  --set model=qwen3-30b-a3b --set layers=160 --out "$OUT/big8" >"$OUT/big8.out" 2>&1
rc=$?
check "8 ranks sharing one GPU are counted together: exit 2 (got $rc)" test "$rc" -eq 2
check "and say 8 ranks share it" grep -q "x 8 ranks sharing" "$OUT/big8.out"
finish
