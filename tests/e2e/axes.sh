#!/usr/bin/env bash
# The in-run comparison: cases that differ in one parameter are set side by side after the table, in
# run.json's comparisons[] and in axes.tsv, with the rows each moved; cases that differ in two are not.
. "$(dirname "$0")/lib.bash"
"$MOEBENCH" run "$SRC/scenarios/leader.ini" --only 'tp4/*' --iters 6 --warmup 1 --out "$OUT/res" >"$OUT/table.txt" 2>"$OUT/run.err"
rc=$?
check "run exits 0 (got $rc)" test "$rc" -eq 0
J=$(run_json "$OUT/res")
D=$(dirname "$J")
check "the table is followed by the comparison block" grep -q "^# strategy comparison" "$OUT/table.txt"
check "which names the group and its axis" grep -q "^# tp4 along partition:" "$OUT/table.txt"
check "one group in run.json" test "$(jget "$J" "len(d['comparisons'])")" = 1
check "along partition, leader first (the baseline)" \
  test "$(jget "$J" "d['comparisons'][0]['axis'] + ' ' + d['comparisons'][0]['baseline_value']")" = "partition leader"
# tp = 4, 128 tokens: replicate dispatches every token from all four TP ranks, leader from one
check "replicate moved 4x the rows of leader (512 vs 128)" \
  test "$(jget "$J" "' '.join(str(r['rows_dispatched']) for r in d['comparisons'][0]['rows'])")" = "128 512"
V=$(jget "$J" "d['comparisons'][0]['rows'][1]['verdict']")
check "the verdict is one of the three ($V)" grep -Eqx 'not separable|leader wins|replicate wins' <<<"$V"
check "the ratio is the medians' ratio" jget "$J" "(lambda c, r: abs(r['ratio'] - r['total_median_us'] / c['rows'][0]['total_median_us']) < 1e-9 or sys.exit(1))(d['comparisons'][0], d['comparisons'][0]['rows'][1])"
check "axes.tsv: a line per case and phase, total among them" \
  test "$(awk -F'\t' '!/^#/ && $7 == "total"' "$D/axes.tsv" | wc -l)" -eq 2
# two cases that differ in partition and expert at once: no group
printf '[global]\nmodel = qwen3-debug\niters = 3\nwarmup = 0\n[a]\ndp = 2\ntokens = 16\nexpert = scale\n[b]\ndp = 2\ntokens = 32\nexpert = identity\n' >"$OUT/two.ini"
"$MOEBENCH" run "$OUT/two.ini" --out "$OUT/two" >"$OUT/two.txt" 2>&1
check "cases differing in two keys form no group" test "$(jget "$(run_json "$OUT/two")" "len(d['comparisons'])")" = 0
check "and print no comparison block" sh -c "! grep -q 'strategy comparison' '$OUT/two.txt'"
finish
