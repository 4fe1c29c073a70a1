#!/usr/bin/env bash
# The same cases run 20 times give bit-identical outputs: every run's output digests (one per DP group,
# over every layer) are equal. On a GPU host, DETERMINISM_BACKEND=cuda checks the cuda backend.
. "$(dirname "$0")/lib.bash"
cat >"$OUT/d.ini" <<'INI'
[global]
model = qwen3-debug
iters = 2
warmup = 0
layers = 2
[a2a-sp]
dp = 2
tp = 2
tokens = 301,77
partition = sp
pad = zero_token
[agrs]
dp = 4
tokens = 128,0,55,300
strategy = agrs
[dwdp]
dp = 2
tokens = 200
strategy = dwdp
experts_per_worker = 10
prefetch_experts = 6
INI
N=${DETERMINISM_RUNS:-20}
for i in $(seq 1 "$N"); do
  "$MOEBENCH" run "$OUT/d.ini" --out "$OUT/r" -q --backend "${DETERMINISM_BACKEND:-host}" >/dev/null 2>&1 || { echo "run $i failed"; exit 1; }
  jget "$(run_json "$OUT/r")" "' '.join(c['name'] + '=' + ','.join(c['digests']) for c in d['cases'])" >>"$OUT/digests"
  rm -rf "$OUT/r"
done
check "$N runs produced digests" test "$(wc -l <"$OUT/digests")" -eq "$N"
check "all $N runs bit-identical" test "$(sort -u "$OUT/digests" | wc -l)" -eq 1
head -1 "$OUT/digests"
finish
