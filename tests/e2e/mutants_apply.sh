#!/usr/bin/env bash
# The planted bugs of scripts/mutants.sh stay usable: --list names at least 30, each with what it plants,
# every patch still applies to this tree (a stale one fails here), and a patch that no longer applies is
# reported stale with exit 1. The slow part (build and run each bug) is not run here: see docs/RELIABILITY.md.
. "$(dirname "$0")/lib.bash"
command -v patch >/dev/null || { echo "skip: no patch(1)"; exit 77; }
M="$SRC/scripts/mutants.sh"
bash "$M" --list >"$OUT/list" 2>&1
check "--list exits 0" test $? -eq 0
n=$(wc -l <"$OUT/list")
check "--list names at least 30 planted bugs (got $n)" test "$n" -ge 30
check "every listed bug says what it plants" test "$(awk 'NF < 3' "$OUT/list" | wc -l)" -eq 0
check "patches are named NN-name.patch" test "$(ls "$SRC"/tests/mutants/*.patch | grep -cvE '/[0-9][0-9]-[a-z0-9-]+\.patch$')" -eq 0
bash "$M" --check >"$OUT/check" 2>&1
rc=$?
check "every patch applies to this tree (stale: $(grep -c STALE "$OUT/check"))" test $rc -eq 0
grep STALE "$OUT/check"
no_harm=$(grep -l 'harness/check/' "$SRC"/tests/mutants/*.patch | wc -l)
check "no bug is planted in the oracle (harness/check/)" test "$no_harm" -eq 0
# a patch whose context is gone must be reported stale, and --check must fail
mkdir -p "$OUT/mut"
cp "$(ls "$SRC"/tests/mutants/*.patch | head -n 1)" "$OUT/mut/01-good.patch"
sed '0,/^-[^-]/s/^-[^-].*/-this removed line is not in the tree/' "$OUT/mut/01-good.patch" >"$OUT/mut/02-gone.patch"
MOE_MUTANTS_DIR="$OUT/mut" bash "$M" --check >"$OUT/stale" 2>&1
check "a patch that no longer applies fails --check" test $? -eq 1
check "it is named stale, the good one applies" test "$(grep -c '02-gone: STALE' "$OUT/stale"):$(grep -c '01-good: applies' "$OUT/stale")" = 1:1
finish
