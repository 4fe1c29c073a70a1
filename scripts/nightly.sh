#!/usr/bin/env bash
# The nightly: run the suite, compare with the last good run in the history, record the run (with its
# regression count), draw the plots, write the report. Exits 1 on a regression, 3 when a rank failed,
# 2 on a usage or scenario error.
#   scripts/nightly.sh [SCENARIO...]          (default scenarios/smoke.ini)
#   environment: MOEBENCH (binary, default build/moebench), OUT (results folder, default results),
#                DB (history, default $OUT/history.db), COMPARE_OPTS (e.g. "--phases total,expert")
set -u
cd "$(dirname "$0")/.."
M=${MOEBENCH:-build/moebench}
OUT=${OUT:-results}
DB=${DB:-$OUT/history.db}
"$M" run "$@" --out "$OUT" -q
rc=$?
[ "$rc" -eq 0 ] || [ "$rc" -eq 1 ] || exit "$rc" # a crash or a bad scenario: nothing to compare
RUN="$OUT/$(readlink "$OUT/latest")"
regressions=0
if "$M" history list --db "$DB" 2>/dev/null | grep -q -v '^#'; then
  # shellcheck disable=SC2086
  "$M" compare history:last-good "$RUN" --db "$DB" --json "$RUN/compare.json" --markdown "$RUN/report.md" \
    ${COMPARE_OPTS:-} | tee "$RUN/compare.txt"
  crc=${PIPESTATUS[0]}
  [ "$crc" -eq 1 ] && regressions=$(grep -c ' slower$' "$RUN/compare.txt")
  [ "$crc" -gt 1 ] && echo "nightly: comparison failed (exit $crc); recording without a verdict" >&2
else
  echo "nightly: first run in $DB: it becomes the baseline" | tee "$RUN/compare.txt"
  printf '# moebench nightly\n\nFirst run recorded: it is the baseline for the next ones.\n' >"$RUN/report.md"
fi
# with the comparison's verdicts, so that the trend marks the cases that regressed
rec=(--regressions "$regressions")
[ -s "$RUN/compare.json" ] && [ "${crc:-2}" -le 1 ] && rec=(--compare "$RUN/compare.json")
"$M" history record "$RUN" "${rec[@]}" --db "$DB" || exit 1
"$M" history trend --db "$DB" --out "$RUN/trend.tsv"
"$M" plot "$RUN" --out "$RUN/plots" >/dev/null && "$M" plot --trend "$RUN/trend.tsv" --out "$RUN/plots" >/dev/null ||
  echo "nightly: plotting failed (is gnuplot installed?)" >&2
{
  echo
  echo "## Plots"
  for p in "$RUN"/plots/*.png; do [ -e "$p" ] && echo "![$(basename "$p" .png)](plots/$(basename "$p"))"; done
} >>"$RUN/report.md"
echo "nightly: report in $RUN/report.md, $regressions regression(s)"
[ "$regressions" -eq 0 ] && [ "$rc" -eq 0 ]
