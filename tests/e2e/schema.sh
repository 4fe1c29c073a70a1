#!/usr/bin/env bash
# Every run.json the tests wrote, and a fresh smoke run's, match docs/run.schema.json; a run.json with a
# required key removed, a wrong schema string or an unknown verdict does not.
. "$(dirname "$0")/lib.bash"
V="$SRC/scripts/validate-run.py"
if ! python3 -c "import jsonschema" 2>/dev/null; then
  echo "skip: python3-jsonschema is not installed (scripts/deps.sh)"
  exit 77
fi
"$MOEBENCH" run "$SRC/scenarios/smoke.ini" --iters 3 --warmup 1 --out "$OUT/res" -q 2>"$OUT/run.err"
rc=$?
check "smoke run exits 0 (got $rc)" test "$rc" -eq 0
J=$(run_json "$OUT/res")
check "the fresh run.json matches the schema" python3 "$V" "$J"
check "it has comparisons[] (an array)" test "$(jget "$J" "type(d['comparisons']).__name__")" = list

# what the other tests left (those that ran before this one, and runs a previous test pass left behind)
mapfile -t all < <(find "$WORK" -name run.json -type f -not -path "$OUT/bad/*" 2>/dev/null)
echo "validating ${#all[@]} run.json files under $WORK"
check "every run.json under the test folder matches the schema (${#all[@]} files)" python3 "$V" "${all[@]}"

# the check must be able to fail: break a copy in one way at a time
mkdir -p "$OUT/bad"
corrupt() { # corrupt NAME PYTHON-STATEMENT-ON-d
  python3 - "$J" "$OUT/bad/$1.json" "$2" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
exec(sys.argv[3])
json.dump(d, open(sys.argv[2], 'w'))
PY
  ! python3 "$V" "$OUT/bad/$1.json" >"$OUT/bad/$1.out" 2>&1
}
check "a case without its verdict is refused" corrupt no-verdict "del d['cases'][0]['verdict']"
check "a run without env is refused" corrupt no-env "del d['env']"
check "another schema version is refused" corrupt schema2 "d['schema'] = 'moebench.run/2'"
check "an unknown verdict is refused" corrupt verdict "d['cases'][0]['verdict'] = 'fine'"
check "an ok case without samples is refused" corrupt no-samples "del d['cases'][0]['samples']"
check "a sample that is text is refused" corrupt text-sample "d['cases'][0]['samples']['total'][0] = '12'"
check "the refusal names the place" grep -q "cases/0" "$OUT/bad/no-verdict.out"
# and a field added later is not a violation (objects stay open)
python3 - "$J" "$OUT/extra.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1])); d['something_new'] = 1; d['cases'][0]['digest'] = 'x'
json.dump(d, open(sys.argv[2], 'w'))
PY
check "added fields are allowed" python3 "$V" "$OUT/extra.json"
finish
