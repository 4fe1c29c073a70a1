#!/usr/bin/env bash
# Command-line conventions: every command's --help exits 0 and lists only its own options, other options are
# refused naming them, --version, usage errors never exit 77, an --only matching nothing is an error, check =
# off reads "unchecked", every environment variable read is documented, and progress moves within a case.
. "$(dirname "$0")/lib.bash"
cd "$SRC"
M=$MOEBENCH

for cmd in run list topo calibrate compare report plot history "history record" "history list" "history trend" \
  "history accept" "history pin" "history unpin" "history baseline" help; do
  for h in -h --help; do
    $M $cmd $h >"$OUT/h.txt" 2>"$OUT/he.txt"
    rc=$?
    check "$cmd $h exits 0 (got $rc)" test $rc -eq 0
    check "$cmd $h prints a usage line" grep -q "^usage: moebench" "$OUT/h.txt"
  done
done
$M topo --help >"$OUT/topo.txt"
check "topo --help does not list run's options" bash -c "! grep -q -- '--iters\|--only\|--set' '$OUT/topo.txt'"
$M list --help >"$OUT/list.txt"
check "list --help lists --only but not --dump" bash -c "grep -q -- '--only' '$OUT/list.txt' && ! grep -q -- '--dump' '$OUT/list.txt'"
$M history list --help >"$OUT/hl.txt"
check "history list --help shows only its own line" bash -c "grep -q 'history list' '$OUT/hl.txt' && ! grep -q 'history record' '$OUT/hl.txt'"

refuse() { # refuse OPTION COMMAND...: exit 2, naming OPTION
  local opt=$1
  shift
  "$M" "$@" >/dev/null 2>"$OUT/e.txt"
  local rc=$?
  check "$* is refused with exit 2 (got $rc)" test $rc -eq 2
  check "$* names $opt" grep -q -- "$opt" "$OUT/e.txt"
}
refuse --iters topo --iters 3
refuse --set topo --set dp=2
refuse --only calibrate --only x
refuse --dump list --dump /tmp/x
refuse -q list -q
refuse --ranks run --ranks 2 --out "$OUT/r0"
refuse --phase history list --phase total --db "$OUT/none.db"

$M --version >"$OUT/v.txt"
check "--version exits 0 with version and commit" grep -q "^moebench [0-9][0-9.]* (commit [0-9a-f]*\|unknown)" "$OUT/v.txt"
$M version >"$OUT/v2.txt"
check "version says the same" cmp -s "$OUT/v.txt" "$OUT/v2.txt"

# contradictory flags are a usage error, not "nothing runnable here"
$M run --only single --backend host --transport nccl --out "$OUT/r1" >"$OUT/o1.txt" 2>&1
rc=$?
check "--backend host --transport nccl exits 2, not 77 (got $rc)" test $rc -eq 2
check "naming the contradiction" grep -q "does not work with backend host" "$OUT/o1.txt"

$M list --only 'no-such-*' >"$OUT/l.txt" 2>"$OUT/le.txt"
rc=$?
check "list --only matching nothing exits 2 (got $rc)" test $rc -eq 2
check "naming the glob" grep -q "no-such-\*" "$OUT/le.txt"
$M run --only 'no-such-*' --out "$OUT/r2" >/dev/null 2>"$OUT/re.txt"
rc=$?
check "run --only matching nothing exits 2 (got $rc)" test $rc -eq 2
check "naming the glob" grep -q "no-such-\*" "$OUT/re.txt"

# check = off: verdict unchecked in the table, run.json and the footer
$M run --only single --check off --iters 3 --warmup 1 --out "$OUT/r3" >"$OUT/o3.txt" 2>&1
rc=$?
check "check = off runs (exit 0, got $rc)" test $rc -eq 0
J=$(run_json "$OUT/r3")
check "run.json says unchecked" test "$(jget "$J" "d['cases'][0]['verdict']")" = unchecked
check "the table row says unchecked" grep -q "^single .*unchecked$" "$OUT/o3.txt"
check "the footer counts it apart" grep -q "^# OK: 0 cases passed, 1 unchecked (check = off)" "$OUT/o3.txt"
$M compare "$OUT/r3"/2*/ "$OUT/r3"/2*/ >/dev/null 2>"$OUT/ce.txt"
rc=$?
check "compare of unchecked runs is incomplete (exit 4, got $rc)" test $rc -eq 4
check "saying not verified" grep -q "not verified in BASE (check = off)" "$OUT/ce.txt"

$M history record "$OUT/r3"/2*/ --db "$OUT/h.db" >/dev/null 2>&1
$M history list --db "$OUT/h.db" >"$OUT/hl2.txt" 2>&1
check "history does not count an unchecked case as ok (0/1)" grep -q "	0/1	" "$OUT/hl2.txt"

# every environment variable moebench reads is documented in help env and the README
$M help env >"$OUT/env.txt"
for v in $(grep -rhoE 'getenv\("[A-Z_]+"\)' harness/ | sed 's/getenv("\(.*\)")/\1/' | sort -u); do
  check "$v in help env" grep -q "$v" "$OUT/env.txt"
  check "$v in the README" grep -q "$v" README.md
done

# progress moves within a case: the iteration on a terminal (script gives one)
if command -v script >/dev/null; then
  script -qec "$M run --only single --iters 30 --warmup 1 --inject-delay route:40000 --out $OUT/r4" "$OUT/tty.txt" \
    >/dev/null 2>&1
  n=$(tr '\r' '\n' <"$OUT/tty.txt" | grep -aoE 'iteration [0-9]+ of 30' | sort -u | wc -l)
  check "the progress line counts iterations within the case ($n distinct)" test "$n" -ge 3
fi
finish
