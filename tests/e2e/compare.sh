#!/usr/bin/env bash
# compare flags a planted slowdown as slower (exit 1), never an identical rerun, refuses runs from
# different environments; history records runs in SQLite; the nightly script runs end to end.
# --ignore-load: the suite runs on shared machines, where every run is loaded (tests/e2e/load.sh covers that rule)
. "$(dirname "$0")/lib.bash"
cat >"$OUT/c.ini" <<'INI'
[global]
model = qwen3-debug
expert = scale
iters = 30
warmup = 3
[one]
dp = 2
tokens = 256
INI
run() { "$MOEBENCH" run "$OUT/c.ini" --out "$OUT/$1" -q "${@:2}" >/dev/null 2>&1; }
run warm # the first run of a binary pays for cold caches and page faults
run base
run same
# half of the expert phase's median, planted in that phase
exp=$(jget "$(run_json "$OUT/base")" "d['cases'][0]['phases']['expert']['p50_us']")
delay=$(python3 -c "print(round(float('$exp') * 0.5, 1))")
run slow --inject-delay "expert:$delay"
"$MOEBENCH" compare --ignore-load "$(dirname "$(run_json "$OUT/base")")" "$(dirname "$(run_json "$OUT/slow")")" \
  --phases expert --json "$OUT/slow.json" >"$OUT/slow.txt" 2>&1
rc=$?
check "a planted slowdown exits 1 (got $rc)" test "$rc" -eq 1
check "the planted phase is flagged slower" grep -q "one .*expert.* slower$" "$OUT/slow.txt"
check "the JSON report counts it" test "$(jget "$OUT/slow.json" "d['regressions']")" = 1
# identical samples are never a regression, whatever the machine does
"$MOEBENCH" compare --ignore-load "$(run_json "$OUT/base")" "$(run_json "$OUT/base")" --phases total,expert >"$OUT/self.txt" 2>&1
rc=$?
check "a run against itself is not a regression (exit $rc)" test "$rc" -eq 0
check "and shows no change" bash -c "! grep -q ' slower$\| faster$' '$OUT/self.txt'"
# a shared 2-core VM drifts by tens of percent between identical runs (docs/PERFORMANCE.md measures the
# false-alarm rate at the default thresholds), so the rerun is judged with a 50 % threshold here
"$MOEBENCH" compare --ignore-load "$(dirname "$(run_json "$OUT/base")")" "$(dirname "$(run_json "$OUT/same")")" \
  --phases expert --threshold 50 >"$OUT/same.txt" 2>&1
rc=$?
if [ "$rc" -ne 0 ]; then
  # a stall of the shared VM during one run can move a sub-millisecond phase by more than half (seen once in
  # CI: 389 -> 608 us); a compare that flags identical runs for itself flags the second rerun as well
  echo "# the rerun was flagged ($(head -n 1 "$OUT/same.txt")); one more rerun"
  run same2
  "$MOEBENCH" compare --ignore-load "$(dirname "$(run_json "$OUT/base")")" "$(dirname "$(run_json "$OUT/same2")")" \
    --phases expert --threshold 50 >"$OUT/same.txt" 2>&1
  rc=$?
fi
check "an identical rerun is not a regression at 50 % (exit $rc)" test "$rc" -eq 0
# report: the comparison, the environment and the plots in one page
"$MOEBENCH" report --ignore-load "$(dirname "$(run_json "$OUT/base")")" "$(dirname "$(run_json "$OUT/slow")")" --phases expert \
  --out "$OUT/report/review.md" >/dev/null 2>&1
check "report exits 1 on the planted regression" test $? -eq 1
check "report has the environment and the verdict" grep -q "| git_commit |" "$OUT/report/review.md"
check "report marks the regression" grep -q '\*\*slower\*\*' "$OUT/report/review.md"
if command -v gnuplot >/dev/null; then
  check "report embeds plots drawn next to it" test -s "$OUT/report/plots/phases.png" -a -n "$(grep 'plots/phases.png' "$OUT/report/review.md")"
fi
# different environments are refused, naming what differs
python3 - "$(run_json "$OUT/same")" "$OUT/other.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1])); d['env']['host'] = 'another-host'; json.dump(d, open(sys.argv[2], 'w'))
PY
"$MOEBENCH" compare --ignore-load "$(run_json "$OUT/base")" "$OUT/other.json" >/dev/null 2>"$OUT/env.err"
check "different environments refused (exit 2)" test $? -eq 2
check "naming the field" grep -q "different environments (host differ)" "$OUT/env.err"
"$MOEBENCH" compare --ignore-load "$(run_json "$OUT/base")" "$OUT/other.json" --force >/dev/null 2>&1
rc=$?
check "--force compares anyway (exit 0 or 1, got $rc)" test "$rc" -le 1
# history
DB="$OUT/h.db"
"$MOEBENCH" history record "$(dirname "$(run_json "$OUT/base")")" --db "$DB" >/dev/null
"$MOEBENCH" history record "$(dirname "$(run_json "$OUT/slow")")" --compare "$OUT/slow.json" --db "$DB" >/dev/null
# a run judged by a comparison in which another case regressed: the run counts 1, case 'one' is not marked
python3 -c "import json,sys; d=json.load(open(sys.argv[1])); d['rows'][0]['case']='other'; json.dump(d, open(sys.argv[2],'w'))" \
  "$OUT/slow.json" "$OUT/other-case.json"
"$MOEBENCH" history record "$(dirname "$(run_json "$OUT/same")")" --compare "$OUT/other-case.json" --db "$DB" >/dev/null
check "history lists the three runs" test "$("$MOEBENCH" history list --db "$DB" | grep -vc '^#')" -eq 3
check "the regression count comes from the comparison" \
  test "$("$MOEBENCH" history list --db "$DB" | grep -v '^#' | cut -f6 | tr '\n' ' ')" = "0 1 1 "
check "history tables are STRICT" bash -c "python3 -c \"import sqlite3,sys; c=sqlite3.connect('$DB'); print(c.execute(\\\"select sql from sqlite_master where name='runs'\\\").fetchone()[0])\" | grep -q STRICT"
"$MOEBENCH" history trend --db "$DB" --out "$OUT/trend.tsv"
check "trend marks the case that regressed, not every case of a run with a regression" \
  test "$(grep -v '^#' "$OUT/trend.tsv" | cut -f6 | tr '\n' ' ')" = "0 1 0 "
"$MOEBENCH" compare --ignore-load history:last-good "$(dirname "$(run_json "$OUT/slow")")" --phases expert --db "$DB" >/dev/null 2>&1
check "history:last-good is the good run, so the slow one is a regression against it" test $? -eq 1
# the noise band: the same 10 % slowdown is slower against a steady history and noisy against a jumpy one
# (synthetic runs from a real run.json: only the run id and the expert samples change)
python3 - "$(run_json "$OUT/base")" "$OUT/band" <<'PY'
import json, os, sys
src, out = sys.argv[1], sys.argv[2]
os.makedirs(out, exist_ok=True)
d = json.load(open(src))
def make(name, centre):
    c = d['cases'][0]
    c['samples']['expert'] = [centre * (1 + 0.001 * ((i * 7) % 11 - 5)) for i in range(30)]
    c['phases']['expert']['p50_us'] = centre
    d['run_id'] = name
    json.dump(d, open(os.path.join(out, name + '.json'), 'w'))
make('base', 100.0)
make('new', 110.0)
for h, centres in (('steady', (100, 101, 99, 102, 100)), ('jumpy', (100, 80, 120, 90, 110))):
    for i, m in enumerate(centres):
        make('%s%d' % (h, i), float(m))
PY
for h in steady jumpy; do
  for i in 0 1 2 3 4; do
    "$MOEBENCH" history record "$OUT/band/$h$i.json" --db "$OUT/band/$h.db" >/dev/null
  done
  "$MOEBENCH" compare --ignore-load "$OUT/band/base.json" "$OUT/band/new.json" --phases expert --db "$OUT/band/$h.db" \
    --json "$OUT/band/$h.out.json" >"$OUT/band/$h.txt" 2>&1
  eval "rc_$h=$?"
done
check "a steady history gives a 6.3 % band" test "$(jget "$OUT/band/steady.out.json" "round(d['rows'][0]['band_pct'], 1)")" = 6.3
check "and +10 % clears it: slower, exit 1 (got $rc_steady)" test "$rc_steady" -eq 1
check "a jumpy history gives a 62.9 % band" test "$(jget "$OUT/band/jumpy.out.json" "round(d['rows'][0]['band_pct'], 1)")" = 62.9
check "and +10 % is inside it: noisy" grep -q "expert .* 62.9% *noisy$" "$OUT/band/jumpy.txt"
check "so no regression: exit 0 (got $rc_jumpy)" test "$rc_jumpy" -eq 0
"$MOEBENCH" compare --ignore-load "$OUT/band/base.json" "$OUT/band/new.json" --phases expert --db "$OUT/band/jumpy.db" \
  --band-runs 0 >/dev/null 2>&1
check "--band-runs 0 ignores the history: slower again" test $? -eq 1
# the nightly script end to end: exit codes, and the report's first line says what failed
if command -v gnuplot >/dev/null; then
  MOEBENCH=$MOEBENCH OUT="$OUT/nightly" bash "$SRC/scripts/nightly.sh" "$OUT/c.ini" >"$OUT/n1.out" 2>&1
  n1=$?
  R="$OUT/nightly/$(readlink "$OUT/nightly/latest")"
  check "nightly: a first run compares nothing, so it is incomplete (exit 4, got $n1)" test "$n1" -eq 4
  check "nightly: and its report says it is the baseline" grep -q "^# moebench nightly: BASELINE: first run" "$R/report.md"
  # the exit-code plumbing is what is tested here; 400 %: an unchanged run on a loaded 2-core VM has moved 50 %
  MOEBENCH=$MOEBENCH OUT="$OUT/nightly" COMPARE_OPTS="--threshold 400" bash "$SRC/scripts/nightly.sh" "$OUT/c.ini" \
    >"$OUT/n2.out" 2>&1
  n2=$?
  R="$OUT/nightly/$(readlink "$OUT/nightly/latest")"
  check "nightly: second run compared, recorded, plotted, reported (exit $n2)" test -s "$R/report.md" -a -s "$R/compare.json"
  check "nightly: an unchanged second run at a 400 % threshold is OK (exit 0, got $n2)" test "$n2" -eq 0
  check "nightly: and the report's first line says so" test "$(head -n 1 "$R/report.md")" = \
    "# moebench nightly: OK: every case ran, passed and was compared; 0 regressions"
  check "nightly: plots drawn" test -s "$R/plots/trend.png"
  check "nightly: history has both runs" test "$("$MOEBENCH" history list --db "$OUT/nightly/history.db" | grep -vc '^#')" -eq 2
  MOEBENCH=$MOEBENCH OUT="$OUT/nightly" bash "$SRC/scripts/nightly.sh" "$OUT/c.ini" --inject-corrupt 0:1:1 \
    >"$OUT/n3.out" 2>"$OUT/n3.err"
  n3=$?
  R="$OUT/nightly/$(readlink "$OUT/nightly/latest")"
  check "nightly: a wrong result is not a pass (exit 4, got $n3)" test "$n3" -eq 4
  check "nightly: the report's first line says what failed" \
    grep -q "^# moebench nightly: FAILED: a case or invariant failed verification (run exit 1); not everything compared: 2 problem(s)" \
    <(head -n 1 "$R/report.md")
  check "nightly: the failed case is named on stderr" grep -q "one: mismatch in NEW" "$OUT/n3.err"
  MOEBENCH=$MOEBENCH OUT="$OUT/nightly" COMPARE_OPTS="--phases totl" bash "$SRC/scripts/nightly.sh" "$OUT/c.ini" \
    >/dev/null 2>&1
  check "nightly: an unknown phase is a usage error (exit 2)" test $? -eq 2
fi
finish
