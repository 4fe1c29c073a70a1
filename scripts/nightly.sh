#!/usr/bin/env bash
# The nightly: run the suite, compare with the history's baseline (the typical one of the last good runs
# of this environment, or the pinned run), record the run with its verdicts, draw the plots, write the
# report, whose first line says what failed. Exit: 0 everything ran, passed and was compared, nothing
# slower; 1 a regression and nothing else wrong; 4 incomplete: a case failed, errored or crashed, an
# invariant failed, or not every case was compared (a first run included); 2 a usage or scenario error;
# 130/143 interrupted.
#   scripts/nightly.sh [SCENARIO...]          (default scenarios/smoke.ini)
#   environment: MOEBENCH (binary, default build/moebench), OUT (results folder, default results),
#                DB (history, default $OUT/history.db), COMPARE_OPTS (e.g. "--phases total,expert")
set -u
cd "$(dirname "$0")/.." || exit 2
M=${MOEBENCH:-build/moebench}
OUT=${OUT:-results}
DB=${DB:-$OUT/history.db}
mkdir -p "$OUT" || exit 2
runerr=$(mktemp) || exit 2
trap 'rm -f "$runerr"' EXIT
"$M" run "$@" --out "$OUT" -q 2>"$runerr"
rc=$?
cat "$runerr" >&2
case $rc in
0 | 1 | 3) ;;                                # cases ran: compare and record what there is
*) echo "nightly: moebench run exited $rc; nothing compared or recorded" >&2; exit "$rc" ;;
esac
RUN="$OUT/$(readlink "$OUT/latest")"
if [ ! -s "$RUN/run.json" ]; then
  echo "nightly: no run.json in $RUN; nothing compared or recorded" >&2
  exit 4
fi
reasons=()
[ "$rc" -eq 1 ] && reasons+=("a case or invariant failed verification (run exit 1)")
[ "$rc" -eq 3 ] && reasons+=("a rank crashed, hung or timed out (run exit 3)")
crc=
if [ -e "$DB" ]; then
  # shellcheck disable=SC2086
  "$M" compare history:baseline "$RUN" --db "$DB" --json "$RUN/compare.json" --markdown "$RUN/compare.md" \
    ${COMPARE_OPTS:-} >"$RUN/compare.txt" 2>"$RUN/compare.err"
  crc=$?
  cat "$RUN/compare.txt"
  cat "$RUN/compare.err" >&2
fi
regressions=0
rec=(--regressions 0)
case ${crc:-none} in
none) reasons+=("first run in $DB: it is the baseline, nothing compared") ;;
0) ;;
1 | 4)
  # compare names each problem and each regression on a line of its own
  regressions=$(grep -c '(regression)$' "$RUN/compare.err")
  problems=$(grep -vc '(regression)$' "$RUN/compare.err")
  [ "$problems" -gt 0 ] && reasons+=("not everything compared: $problems problem(s) (see below)")
  [ "$regressions" -gt 0 ] && reasons+=("$regressions regression(s)")
  rec=(--compare "$RUN/compare.json")
  ;;
*)
  if grep -q 'no good run of this environment' "$RUN/compare.err"; then
    reasons+=("first run of this environment in $DB: it is the baseline, nothing compared")
    crc=none
  else
    echo "nightly: comparison failed (exit $crc); the run is not recorded" >&2
    exit 2
  fi
  ;;
esac
"$M" history record "$RUN" "${rec[@]}" --db "$DB" || exit $?
"$M" history trend --db "$DB" --out "$RUN/trend.tsv" || exit $?
"$M" plot "$RUN" --out "$RUN/plots" >/dev/null && "$M" plot --trend "$RUN/trend.tsv" --out "$RUN/plots" >/dev/null ||
  echo "nightly: plotting failed (is gnuplot installed?)" >&2
code=4
[ "$rc" -eq 0 ] && [ "${crc:-none}" = 0 ] && code=0
[ "$rc" -eq 0 ] && [ "${crc:-none}" = 1 ] && code=1
if [ "$code" -eq 0 ]; then
  first="# moebench nightly: OK: every case ran, passed and was compared; 0 regressions"
else
  word=INCOMPLETE
  [ "$code" -eq 1 ] && word=REGRESSION
  [ "$rc" -ne 0 ] && word=FAILED
  [ "${crc:-none}" = none ] && [ "$rc" -eq 0 ] && word=BASELINE
  joined=$(printf '%s; ' "${reasons[@]}")
  first="# moebench nightly: $word: ${joined%; }"
fi
{
  echo "$first"
  echo
  if [ -s "$runerr" ] || [ -s "$RUN/compare.err" ]; then
    echo '## What went wrong'
    echo
    cat "$runerr" "$RUN/compare.err" 2>/dev/null | sed 's/^/    /'
    echo
  fi
  [ -s "$RUN/compare.md" ] && cat "$RUN/compare.md"
  echo
  echo "## Plots"
  for p in "$RUN"/plots/*.png; do [ -e "$p" ] && echo "![$(basename "$p" .png)](plots/$(basename "$p"))"; done
} >"$RUN/report.md"
echo "$first"
echo "nightly: report in $RUN/report.md"
exit "$code"
