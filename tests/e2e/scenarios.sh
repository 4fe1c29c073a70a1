#!/usr/bin/env bash
# Every shipped scenario runs OK on the host backend, and its invariants are listed as passed.
. "$(dirname "$0")/lib.bash"
for f in "$SRC"/scenarios/*.ini; do
  n=$(basename "$f" .ini)
  case $n in bench-gpu | bench-multigpu) continue ;; esac # real model shapes: GPU only (scripts/gpu-check.sh)
  # MOE_E2E_SHORT=1 (the sanitized stage of scripts/test.sh): the bench files with a warm-up and two timed
  # iterations, enough for the sanitizers to see every path and a stale buffer, instead of their 20
  short=()
  [ "${MOE_E2E_SHORT:-0}" = 1 ] && case $n in bench-*) short=(--iters 2 --warmup 1) ;; esac
  "$MOEBENCH" run "$f" "${short[@]}" --out "$OUT/$n" -q >"$OUT/$n.out" 2>&1
  rc=$?
  J=$(run_json "$OUT/$n")
  check "$n: exit 0 (got $rc)" test "$rc" -eq 0
  check "$n: every case ok" test "$(jget "$J" "all(c['verdict']=='ok' for c in d['cases'])")" = True
  check "$n: invariants listed and all passed" test "$(jget "$J" \
    "len(d['invariants'])>0 and all(i['passed'] for i in d['invariants'])")" = True
  check "$n: every rank counted what its strategy requires" test "$(jget "$J" \
    "all(c.get('accounting')=='ok' for c in d['cases'])")" = True
done
J=$(run_json "$OUT/coverage")
check "coverage has twins for every cross-case invariant" test "$(jget "$J" \
  "sorted(set(i['invariant'] for i in d['invariants'] if len(i['cases'])==2))")" = \
  "['dwdp_equals_local', 'leader_equals_replicate', 'll_equals_a2a', 'mask_equals_buffer', 'padding_equals_unpadded', 'repeat_identical']"
check "coverage runs two or more layers for every strategy and partition" test "$(jget "$J" \
  "len(set((c['params']['strategy'],c['params']['partition']) for c in d['cases'] if int(c['params']['layers'])>=2))")" -eq 12
check "coverage runs dwdp with swiglu experts, topk above 8, T < tp and every group empty" test "$(jget "$J" \
  "[any(c['params']['strategy']=='dwdp' and c['params']['expert']=='swiglu' for c in d['cases']), \
    any(int(c['params']['topk'])>8 for c in d['cases']), \
    any(min(c['tokens'])<int(c['params']['tp'])>1 for c in d['cases']), \
    any(sum(c['tokens'])==0 and int(c['params']['tp'])>1 and c['params']['partition']=='sp' for c in d['cases'])]")" \
  = "[True, True, True, True]"
J=$(run_json "$OUT/sp-padding")
check "sp-padding checks mask == buffer and padded == unpadded" test "$(jget "$J" \
  "sorted(set(i['invariant'] for i in d['invariants']) & {'mask_equals_buffer','padding_equals_unpadded','pad_inert'})")" \
  = "['mask_equals_buffer', 'pad_inert', 'padding_equals_unpadded']"
J=$(run_json "$OUT/leader")
check "leader checks leader == replicate" test "$(jget "$J" "any(i['invariant']=='leader_equals_replicate' for i in d['invariants'])")" = True
check "leader dispatches tp-times fewer rows" test "$(jget "$J" \
  "[sum(r['rows'] for r in c['ranks']) for c in d['cases'] if c['name'] in ('tp4/partition=leader','tp4/partition=replicate')]")" = "[128, 512]"
J=$(run_json "$OUT/dwdp")
check "dwdp checks dwdp == all-local" test "$(jget "$J" "sum(i['invariant']=='dwdp_equals_local' for i in d['invariants'])")" -ge 3
check "dwdp reports bytes fetched, fetch time and exposed wait" test "$(jget "$J" \
  "all(c['dwdp']['bytes_fetched_per_rank']>0 and c['dwdp']['fetch_p50_us']>0 and 'exposed_wait_p50_us' in c['dwdp'] for c in d['cases'] if c['params']['strategy']=='dwdp')")" = True
# a layout the DWDP rules forbid, and an impossible parallel layout, are scenario errors naming the rule
"$MOEBENCH" list --set strategy=dwdp --set dp=4 --set experts_per_worker=5 --set prefetch_experts=2 "$SRC/scenarios/smoke.ini" 2>"$OUT/dw.err" >/dev/null
check "invalid dwdp layout exits 2" test $? -eq 2
check "it names the rule W + (D-1)*P = E" grep -q "dwdp layout needs W + (D-1)\*P = E" "$OUT/dw.err"
"$MOEBENCH" list --set dp=3 --set tp=2 "$SRC/scenarios/smoke.ini" 2>"$OUT/ep.err" >/dev/null
check "experts not divisible by ep exits 2" test $? -eq 2
check "it names the rule" grep -q "must be divisible by ep = dp\*tp = 6" "$OUT/ep.err"
finish
