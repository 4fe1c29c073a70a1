#!/usr/bin/env bash
# report RUN: one run's page with its configuration (shared parameters once, differing ones per case),
# environment, table, strategy comparison and plots; report BASE NEW adds the configuration differences.
. "$(dirname "$0")/lib.bash"
cd "$SRC"
M=$MOEBENCH
$M run --only 'single/*' --set 'strategy=a2a|agrs' --iters 6 --warmup 1 --out "$OUT/a" -q 2>"$OUT/a.err"
check "the first run exits 0" test $? -eq 0
A=$(ls -1d "$OUT"/a/2*/ | tail -n 1)
A=${A%/}
$M report "$A" >"$OUT/r.out" 2>"$OUT/r.err"
rc=$?
check "report RUN exits 0 (got $rc)" test $rc -eq 0
P="$A/report.md"
check "the page is RUN/report.md" test -s "$P"
check "it names the run" grep -q "^# moebench run $(basename "$A")" "$P"
check "shared parameters are listed once" test "$(grep -c '^| model | qwen3-debug |$' "$P")" -eq 1
check "the differing parameter is a column" grep -q '^| case | strategy |$' "$P"
check "each case's value of it" bash -c "grep -q '^| single/strategy=a2a | a2a |$' '$P' && grep -q '^| single/strategy=agrs | agrs |$' '$P'"
check "the environment (host)" grep -q "^| host | $(hostname)" "$P"
check "the table, a row per case" test "$(grep -c '^| single/strategy=a[2g][ar]s\? | ok | ' "$P")" -eq 2
check "each row says the load it ran under (ranks per CPU, load average)" \
  test "$(grep -c '^| single/strategy=.* [0-9.]*/CPU, [0-9.]* → [0-9.]*\( \*\*noisy\*\*\)\? |$' "$P")" -eq 2
check "the strategy comparison along strategy" grep -q '^### single along strategy' "$P"
check "with a ratio and its interval" grep -q '| agrs | single/strategy=agrs | [0-9.]* | ×[0-9.]* \[[0-9.]*, [0-9.]*\] |' "$P"
if command -v gnuplot >/dev/null; then
  check "the plots are linked" grep -q '^!\[latency\](plots/latency.png)' "$P"
  check "and exist beside the page" test -s "$A/plots/latency.png"
  check "the strategy plot too" grep -q '^!\[axes\](plots/axes.png)' "$P"
fi
mkdir -p "$OUT/elsewhere"
$M report "$A/run.json" --out "$OUT/elsewhere/page.md" >/dev/null 2>&1
check "report run.json --out FILE writes FILE" test -s "$OUT/elsewhere/page.md"
check "a run.json alone has no plots, and says so on the page's absence of them" \
  bash -c "! grep -q '^## Plots' '$OUT/elsewhere/page.md'"

$M report "$A" --alpha 0.1 >/dev/null 2>"$OUT/e.txt"
check "a compare option with one run is refused (exit 2)" test $? -eq 2
check "naming it" grep -q -- "--alpha" "$OUT/e.txt"
$M report >/dev/null 2>&1
check "report without a run: exit 2" test $? -eq 2
$M report "$A" "$A" "$A" >/dev/null 2>&1
check "report with three runs: exit 2" test $? -eq 2
$M report "$OUT/nothing-here" >/dev/null 2>"$OUT/e2.txt"
check "an unreadable run: exit 2" test $? -eq 2

# two runs: the comparison plus the configuration differences
$M run --only 'single/*' --set 'strategy=a2a|agrs' --iters 7 --warmup 1 --out "$OUT/b" -q 2>"$OUT/b.err"
B=$(ls -1d "$OUT"/b/2*/ | tail -n 1)
B=${B%/}
$M report "$A" "$B" --threshold 1000 >"$OUT/r2.out" 2>"$OUT/r2.err"
rc=$?
check "report BASE NEW exits as compare does (0, got $rc)" test $rc -eq 0
P2="$B/report.md"
check "the page is NEW/report.md" test -s "$P2"
check "with the comparison" grep -q "^# moebench comparison" "$P2"
check "and the configuration differences" grep -q "^## Configuration differences" "$P2"
check "naming iters 6 against 7, per case" test "$(grep -c '^| single/strategy=a[2g][ar]s\? | iters | 6 | 7 |$' "$P2")" -eq 2
check "and no parameter that is the same" bash -c "! grep -q '| strategy | a2a | a2a |' '$P2'"
finish
