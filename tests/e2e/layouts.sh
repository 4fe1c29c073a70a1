#!/usr/bin/env bash
# Every T >= 0 at every small dp x tp runs and verifies, for every strategy (ll included), partition and pad mode, with
# every DP group empty included; T = 0, 1, tp - 1, tp, tp + 1 and lists with zeros (sp with all groups empty once crashed in tp_merge). Two layers, so the
# residual and layer > 0 run on empty and one-token slices too. BACKEND=cuda runs it on a GPU (scripts/gpu-check.sh).
. "$(dirname "$0")/lib.bash"
S="$OUT/layouts.ini"
{
  cat <<'INI'
[global]
model = qwen3-debug
iters = 1
warmup = 0
expert = scale
layers = 2
INI
  # name dp tp tokens-sweep strategies dwdp-W dwdp-P
  while read -r name dp tp tokens strategies w pp; do
    for part in rl sp; do
      echo
      echo "[$name-$part]"
      echo "dp = $dp"
      echo "tp = $tp"
      echo "tokens = $tokens"
      echo "strategy = $strategies"
      [ "$w" != - ] && echo "experts_per_worker = $w" && echo "prefetch_experts = $pp"
      # at tp = 1 no slice is ever padded: one pad mode stands for all
      if [ $part = rl ]; then echo "partition = replicate|leader"; else echo "partition = sp"; fi
      [ $part = sp ] && { [ "$tp" = 1 ] && echo "pad = mask" || echo "pad = mask|buffer|zero_token"; }
    done
  done <<'LAYOUTS'
1x1 1 1 0|2 a2a|agrs|dwdp|ll 16 4
2x1 2 1 0,0|0,1|2,1 a2a|agrs|dwdp|ll 8 8
4x1 4 1 0,0,0,0|1,0,2,0 a2a|agrs|dwdp|ll 4 4
1x2 1 2 0|1|2|3 a2a|agrs|ll - -
2x2 2 2 0,0|0,1|2,3|3,0 a2a|agrs|ll - -
1x4 1 4 0|3|4|5 a2a|agrs|ll - -
LAYOUTS
} >"$S"
want=$(( (2 + 3 + 2) * 4 * 3 + (4 + 4 + 4) * 3 * 5 ))
"$MOEBENCH" list "$S" >"$OUT/list" 2>&1
check "the sweep expands to $want cases" test "$(wc -l <"$OUT/list")" -eq "$want"
"$MOEBENCH" run "$S" --backend "${BACKEND:-host}" --out "$OUT/run" -q >"$OUT/run.out" 2>&1
rc=$?
J=$(run_json "$OUT/run")
check "exit 0 (got $rc)" test "$rc" -eq 0
check "$want cases ran" test "$(jget "$J" "len(d['cases'])")" -eq "$want"
# a backend without ll's device ops (cuda until its kernels land) skips ll's cases, saying so
check "every case ok, the accounting check included" test "$(jget "$J" \
  "[c['name'] for c in d['cases'] if (c['verdict']!='ok' or c.get('accounting')!='ok') and not \
    (c['params']['strategy']=='ll' and c['verdict']=='skipped' and 'implement ll' in c.get('reason',''))][:5]")" = "[]"
echo "# ll cases skipped by this backend: $(jget "$J" "sum(c['verdict']=='skipped' for c in d['cases'])")"
check "every invariant passed" test "$(jget "$J" "[i['invariant'] for i in d['invariants'] if not i['passed']][:5]")" = "[]"
check "all groups empty ran at tp > 1 with sp" test "$(jget "$J" \
  "sum(1 for c in d['cases'] if c['params']['partition']=='sp' and int(c['params']['tp'])>1 and sum(c['tokens'])==0)")" -ge 6
finish
