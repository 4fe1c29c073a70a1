#!/usr/bin/env bash
# External referee: every strategy, partition and sp pad mode, a Qwen3-style and a DeepSeek-style router,
# dumped with --dump and recomputed by Hugging Face transformers' Qwen3MoeSparseMoeBlock / DeepseekV3MoE in
# float64 (tests/referee/referee.py): outputs per token and expert sets per row must agree. Runs on the
# cuda backend where a GPU answers, else on the host backend (the referee checks the math either way).
# A tampered dump must be refused. Exits 77 where torch or transformers do not import (REFEREE_PYTHON
# picks the interpreter; python3 by default).
. "$(dirname "$0")/lib.bash"
# Python runs with LD_LIBRARY_PATH=$REFEREE_LD_LIBRARY_PATH (empty by default): the library path set for
# moebench (an older system NCCL, the bundle's libraries) must not shadow the ones torch was built with.
py() { env LD_LIBRARY_PATH="${REFEREE_LD_LIBRARY_PATH-}" "${REFEREE_PYTHON:-python3}" "$@"; }
PY=py
if ! "$PY" -c 'import torch, transformers' >"$OUT/import.out" 2>&1; then
  echo "SKIP: torch and transformers do not import in ${REFEREE_PYTHON:-python3}: $(tail -n 1 "$OUT/import.out")"
  exit 77
fi
REF="$SRC/tests/referee/referee.py"
backend=host
"$MOEBENCH" run "$SRC/scenarios/smoke.ini" --only single --backend cuda --out "$OUT/probe" -q >"$OUT/probe.out" 2>&1
[ $? -eq 0 ] && backend=cuda
echo "# backend: $backend"
export NCCL_NVLS_ENABLE=0
"$MOEBENCH" run "$SRC/tests/referee/cases.ini" --backend "$backend" --out "$OUT/res" --dump "$OUT/dump" -q \
  >"$OUT/run.out" 2>&1
rc=$?
check "referee cases ($backend): moebench exits 0 (got $rc)" test "$rc" -eq 0
[ "$rc" -eq 0 ] || sed -n '1,30p' "$OUT/run.out"
J=$(run_json "$OUT/res")
"$PY" "$REF" "$J" "$OUT/dump" >"$OUT/referee.out" 2>&1
rc=$?
cat "$OUT/referee.out"
check "transformers agrees with every case (exit $rc)" test "$rc" -eq 0
n=$(grep -c '^ok .*against \(Qwen3MoeSparseMoeBlock\|DeepseekV3MoE\)' "$OUT/referee.out")
check "every case refereed by a transformers block (got $n of 22)" test "$n" -eq 22
for s in a2a agrs dwdp; do
  check "strategy $s refereed" grep -q "^ok .*strategy=$s\|^ok .*-$s" "$OUT/referee.out"
done
for p in partition=leader partition=replicate partition=sp pad=mask pad=buffer pad=zero_token; do
  check "$p refereed" grep -q "^ok .*$p" "$OUT/referee.out"
done
check "both routers refereed" grep -q "^ok deepseek.*DeepseekV3MoE" "$OUT/referee.out"
# the referee's own numpy float64 path (for machines without torch) agrees as well
"$PY" "$REF" "$J" "$OUT/dump" --engine numpy >"$OUT/numpy.out" 2>&1
check "the numpy float64 path agrees with every case (exit $?)" grep -q "^referee: 22 cases.* 0 mismatches$" "$OUT/numpy.out"
# a tampered dump is refused: one token's output 5 % off, one row routed to another expert
C=deepseek_strategy=a2a_partition=sp
mkdir -p "$OUT/bad"
cp -r "$OUT/dump/$C" "$OUT/bad/"
"$PY" - "$OUT/bad/$C" <<'PY'
import sys, numpy as np
d = sys.argv[1]
y = np.load(d + '/rank1_layer0_y.npy'); y[3] *= 1.05; np.save(d + '/rank1_layer0_y.npy', y)
i = np.load(d + '/rank2_layer0_idx.npy'); i[0, 0] = next(e for e in range(32) if e not in i[0]); np.save(d + '/rank2_layer0_idx.npy', i)
PY
"$PY" "$REF" "$J" "$OUT/bad" --case 'deepseek/strategy=a2a/partition=sp' >"$OUT/bad.out" 2>&1
rc=$?
check "a tampered dump fails (exit 1, got $rc)" test "$rc" -eq 1
check "naming the token whose output is off" grep -q "rank 1 layer 0 token 3: relative error" "$OUT/bad.out"
check "and the row routed elsewhere" grep -q "rank 2 layer 0 token 0: experts" "$OUT/bad.out"
finish
