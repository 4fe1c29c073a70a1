#!/usr/bin/env bash
# moebench plot draws a run's results and a nightly trend with gnuplot: every expected PNG and SVG, with content.
. "$(dirname "$0")/lib.bash"
if ! command -v gnuplot >/dev/null; then
  echo "skip: gnuplot is not installed"
  exit 77
fi
# from a folder without plots/: the scripts must be found in the source tree
cd "$OUT"
"$MOEBENCH" run "$SRC/scenarios/leader.ini" --out "$OUT/res" -q 2>"$OUT/run.err"
rc=$?
check "run of scenarios/leader.ini exits 0 (got $rc)" test "$rc" -eq 0
RUN=$(ls -1d "$OUT"/res/2*/ | tail -n 1)
RUN=${RUN%/}

is_png() { [ "$(head -c 4 "$1" | od -An -c | tr -d ' \n')" = '211PNG' ] && [ "$(stat -c %s "$1")" -gt 8000 ]; }
is_svg() { grep -q '<svg' "$1" && grep -q '</svg>' "$1"; }

"$MOEBENCH" plot "$RUN" --out "$OUT/plots" >"$OUT/plot.out" 2>"$OUT/plot.err"
rc=$?
check "moebench plot exits 0 (got $rc: $(tail -n 1 "$OUT/plot.err"))" test "$rc" -eq 0
for p in latency phases cdf; do
  check "$p.png is a PNG of some size" is_png "$OUT/plots/$p.png"
  check "$p.svg is an SVG" is_svg "$OUT/plots/$p.svg"
done
ncases=$(grep -vc '^#' "$RUN/cases.tsv")
nmaps=$((ncases < 8 ? ncases : 8))
check "one per-rank map per case, at most 8 ($nmaps)" test "$(ls "$OUT"/plots/ranks-*.png | wc -l)" -eq "$nmaps"
check "as many SVG maps" test "$(ls "$OUT"/plots/ranks-*.svg | wc -l)" -eq "$nmaps"
first=$(grep -v '^#' "$RUN/cases.tsv" | head -n 1 | cut -f 1)
stem=ranks-$(printf '%s' "$first" | sed 's/[^A-Za-z0-9._-]/_/g')
check "the first case's map is $stem.png" is_png "$OUT/plots/$stem.png"
check "and $stem.svg" is_svg "$OUT/plots/$stem.svg"
# the map names the rank whose total is slowest: the one in ranks.tsv
slow=$(awk -F'\t' -v c="$first" '$1 == c && $3 == "total" && (m == "" || $4 > m) { m = $4; r = $2 } END { print r }' \
  "$RUN/ranks.tsv")
check "the map marks rank $slow as the slowest on total" grep -q "slowest rank on total: $slow " "$OUT/plots/$stem.svg"
check "the latency legend names both strategies" \
  sh -c "grep -q 'strategy a2a<' '$OUT/plots/latency.svg' && grep -q 'strategy agrs<' '$OUT/plots/latency.svg'"
# leader.ini sweeps no tokens: no line may join (or average) its unlike cases
check "the latency plot joins nothing and says so" grep -q "nothing is joined or averaged" "$OUT/plots/latency.svg"
check "the in-run comparison is drawn (axes.png)" is_png "$OUT/plots/axes.png"
check "and its groups are named by what they hold fixed" grep -q "by partition" "$OUT/plots/axes.svg"
check "the CDF has a curve per case" test "$(grep -c 'gnuplot_plot_[0-9]*"' "$OUT/plots/cdf.svg")" -ge "$ncases"
check "the plots name the run" grep -q "run $(basename "$RUN")" "$OUT/plots/phases.svg"

# default output folder: RUN_DIR/plots
"$MOEBENCH" plot "$RUN" >/dev/null 2>&1
check "without --out the plots go to RUN_DIR/plots" is_png "$RUN/plots/latency.png"

# a folder that is not a run: an error that says what is missing
"$MOEBENCH" plot "$OUT" --out "$OUT/none" >/dev/null 2>"$OUT/notrun.err"
rc=$?
check "plot of a non-run folder fails (got $rc)" test "$rc" -ne 0
check "and says cases.tsv is missing" grep -q "cases.tsv" "$OUT/notrun.err"

# a run with no rows: nothing to draw is not an error
mkdir -p "$OUT/empty"
printf '# case\tstrategy\tpartition\ttransport\tbackend\tdp\ttp\ttokens\ttokens_total\n' >"$OUT/empty/cases.tsv"
"$MOEBENCH" plot "$OUT/empty" --out "$OUT/empty/plots" >/dev/null 2>"$OUT/empty.err"
rc=$?
check "plot of an empty run exits 0 (got $rc)" test "$rc" -eq 0
check "and draws nothing" test -z "$(ls -A "$OUT/empty/plots")"

# nightly trend: 3 runs, 2 cases, one regression flagged
T="$OUT/trend.tsv"
{
  printf '# run_id\tunix_time\tcase\tphase\tp50_us\tregression\n'
  printf 'r1\t1763604000\ts2x2/strategy=a2a/partition=leader\ttotal\t21500.0\t0\n'
  printf 'r1\t1763604000\ts2x2/strategy=a2a/partition=leader\texpert\t18000.0\t0\n'
  printf 'r1\t1763604000\ts4x1/strategy=agrs\ttotal\t35700.0\t0\n'
  printf 'r2\t1763690400\ts2x2/strategy=a2a/partition=leader\ttotal\t21900.0\t0\n'
  printf 'r2\t1763690400\ts4x1/strategy=agrs\ttotal\t35200.0\t0\n'
  printf 'r3\t1763776800\ts2x2/strategy=a2a/partition=leader\ttotal\t27400.0\t1\n'
  printf 'r3\t1763776800\ts4x1/strategy=agrs\ttotal\t35900.0\t0\n'
} >"$T"
"$MOEBENCH" plot --trend "$T" --out "$OUT/trend" >/dev/null 2>"$OUT/trend.err"
rc=$?
check "moebench plot --trend exits 0 (got $rc: $(tail -n 1 "$OUT/trend.err"))" test "$rc" -eq 0
check "trend.png is a PNG of some size" is_png "$OUT/trend/trend.png"
check "trend.svg is an SVG" is_svg "$OUT/trend/trend.svg"
check "the trend counts the one regression" grep -q "1 regression flagged" "$OUT/trend/trend.svg"
check "the trend has a line per case" sh -c "grep -q 's2x2/a2a/leader' '$OUT/trend/trend.svg' && grep -q 's4x1/agrs' '$OUT/trend/trend.svg'"
printf '# run_id\tunix_time\tcase\tphase\tp50_us\tregression\n' >"$OUT/empty-trend.tsv"
"$MOEBENCH" plot --trend "$OUT/empty-trend.tsv" --out "$OUT/trend-empty" >/dev/null 2>&1
rc=$?
check "an empty trend is skipped, not an error (got $rc)" sh -c "test $rc -eq 0 && test ! -e '$OUT/trend-empty/trend.png'"
"$MOEBENCH" plot --trend "$OUT/missing.tsv" --out "$OUT/trend-missing" >/dev/null 2>&1
check "a missing trend file is an error" test $? -ne 0
finish
