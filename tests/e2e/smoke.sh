#!/usr/bin/env bash
# The default scenario runs end to end on the host backend: every case OK, results complete.
. "$(dirname "$0")/lib.bash"
cd "$SRC"
"$MOEBENCH" run --out "$OUT/res" >"$OUT/stdout" 2>"$OUT/stderr"
rc=$?
check "moebench run (default scenarios/smoke.ini) exits 0 (got $rc)" test "$rc" -eq 0
check "footer says OK" grep -q "^# OK: [0-9]* cases passed" "$OUT/stdout"
check "header names versions and placement" grep -q "^# placement: bind" "$OUT/stdout"
J=$(run_json "$OUT/res")
check "run.json written" test -s "$J"
check "schema is versioned" test "$(jget "$J" "d['schema']")" = "moebench.run/1"
check "at least 6 cases" test "$(jget "$J" "len(d['cases'])")" -ge 6
check "every case ok" test "$(jget "$J" "all(c['verdict']=='ok' for c in d['cases'])")" = True
check "dp=2 tp=2 tokens 4096,17 present and ok" test "$(jget "$J" \
  "[c['verdict'] for c in d['cases'] if c['params']['dp']=='2' and c['params']['tp']=='2' and c['tokens']==[4096,17]]")" = "['ok']"
check "a DP group with 0 tokens ran ok" test "$(jget "$J" "any(0 in c['tokens'] and c['verdict']=='ok' for c in d['cases'])")" = True
check "raw samples kept: iters per phase per rank" test "$(jget "$J" \
  "all(len(r['samples_us']['total'])==int(c['params']['iters']) for c in d['cases'] for r in c['ranks'])")" = True
check "per-phase stats present" test "$(jget "$J" \
  "all(set(['p50_us','p90_us','p99_us','min_us','max_us','mean_us','stdev_us']) <= set(c['phases']['total']) for c in d['cases'])")" = True
check "phase p50s are positive" test "$(jget "$J" "all(c['phases'][p]['p50_us']>0 for c in d['cases'] for p in ('route','dispatch','expert','combine','total'))")" = True
check "every rank verified rows" test "$(jget "$J" "all(r['checked']>0 for c in d['cases'] for r in c['ranks'] if r['rows']>0)")" = True
check "wire bytes exclude self-sends (single rank sends 0 on the wire)" test "$(jget "$J" \
  "[c['bytes']['wire'] for c in d['cases'] if c['params']['dp']=='1' and c['params']['tp']=='1'][0]")" = 0
check "counters recorded (events used or why not)" test "$(jget "$J" \
  "all('available' in r['counters'] and (r['counters']['events'] or r['counters'].get('note')) for c in d['cases'] for r in c['ranks'])")" = True
check "counters are available exactly when events were counted" test "$(jget "$J" \
  "all(r['counters']['available'] == bool(r['counters']['events']) for c in d['cases'] for r in c['ranks'])")" = True
check "placement per rank recorded" test "$(jget "$J" "all('cpuset' in r for c in d['cases'] for r in c['ranks'])")" = True
D=$(dirname "$J")
check "cases.tsv has a row per case" test "$(grep -vc '^#' "$D/cases.tsv")" -eq "$(jget "$J" "len(d['cases'])")"
check "samples.tsv has samples" test "$(wc -l <"$D/samples.tsv")" -gt 100
check "results/latest points at the run" test "$(readlink "$OUT/res/latest")" = "$(basename "$D")"
# the same seed gives the same routing and outputs: a second run is verified the same way
"$MOEBENCH" list >"$OUT/list"
check "moebench list prints the same cases" test "$(wc -l <"$OUT/list")" -eq "$(jget "$J" "len(d['cases'])")"
finish
