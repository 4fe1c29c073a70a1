#!/usr/bin/env bash
# A corrupted output element is caught: verdict mismatch naming rank, token and column; exit 1.
. "$(dirname "$0")/lib.bash"
S="$SRC/scenarios/smoke.ini"
# exact (scale) and swiglu experts; in dp2tp2-swiglu rank 2 has no tokens (its DP group has 0), so use rank 1
for spec in dp2tp2-4096-17:2 dp2tp2-swiglu:1; do
  case=${spec%:*}
  rk=${spec#*:}
  "$MOEBENCH" run "$S" --only "$case" --out "$OUT/$case" --inject-corrupt "$rk:5:7" >"$OUT/$case.out" 2>&1
  rc=$?
  check "$case: exit 1 on a corrupted element (got $rc)" test "$rc" -eq 1
  check "$case: the table names rank $rk, token 5, column 7" grep -q "mismatch (rank $rk, layer 0, token 5, column 7" "$OUT/$case.out"
  J=$(run_json "$OUT/$case")
  check "$case: run.json verdict mismatch" test "$(jget "$J" "d['cases'][0]['verdict']")" = mismatch
  check "$case: run.json first_bad" test "$(jget "$J" \
    "(lambda b: (b['rank'], b['token'], b['column']))(d['cases'][0]['first_bad'])")" = "($rk, 5, 7)"
  check "$case: only one token is wrong" test "$(jget "$J" "d['cases'][0]['first_bad']['mismatched_tokens']")" = 1
done
# without the corruption the same case is ok: the checker is not just failing everything
"$MOEBENCH" run "$S" --only dp2tp2-swiglu --out "$OUT/clean" >/dev/null 2>&1
check "the uncorrupted case passes" test $? -eq 0
finish
