#!/usr/bin/env bash
# graph = on: refused with the strategy's reason (exit 2) where a layer waits on the host, and for a TP merge
# through the transport; the steady-state period and the cross-rank minimum are in every run.json. Where the
# ll strategy exists (moebench list accepts it), graph = on runs it and gives the same outputs as graph = off.
. "$(dirname "$0")/lib.bash"
cd "$SRC"

# --- refusals: every strategy that says why, with its reason, before any rank starts ---
for s in a2a agrs; do
  "$MOEBENCH" run --set graph=on --set strategy=$s --out "$OUT/ref" >"$OUT/$s.out" 2>"$OUT/$s.err"
  rc=$?
  check "graph = on with $s: scenario error, exit 2 (got $rc)" test "$rc" -eq 2
  check "graph = on with $s: the reason is quoted" grep -q "graph = on: $s cannot be captured: its layer" "$OUT/$s.err"
done
cat >"$OUT/dwdp.ini" <<'INI'
[d]
dp = 2
tokens = 50,70
strategy = dwdp
experts_per_worker = 10
prefetch_experts = 6
graph = on
INI
"$MOEBENCH" run --out "$OUT/ref" "$OUT/dwdp.ini" >"$OUT/dwdp.out" 2>"$OUT/dwdp.err"
rc=$?
check "graph = on with dwdp (scenario file): exit 2 (got $rc)" test "$rc" -eq 2
check "graph = on with dwdp: the reason is quoted" grep -q "graph = on: dwdp cannot be captured: its layer" "$OUT/dwdp.err"
check "the error names the file and the key" grep -q "dwdp.ini:.*graph" "$OUT/dwdp.err"
for part in sp leader; do
  "$MOEBENCH" run --set graph=on --set partition=$part --set tp=2 --out "$OUT/ref" >"$OUT/$part.out" 2>"$OUT/$part.err"
  rc=$?
  check "graph = on with partition = $part: exit 2 (got $rc)" test "$rc" -eq 2
  check "partition = $part: says the TP merge goes through the transport" \
    grep -q "partition = $part cannot be captured: its TP merge" "$OUT/$part.err"
done
check "no rank ever started for a refused case" test ! -d "$OUT/ref"

# --- eager: the steady-state period and the fastest rank's total ---
"$MOEBENCH" run --only 'ep4-uneven' --iters 4 --out "$OUT/eager" >"$OUT/eager.out" 2>"$OUT/eager.err"
rc=$?
check "eager run exits 0 (got $rc)" test "$rc" -eq 0
J=$(run_json "$OUT/eager")
check "every rank reports its period" test "$(jget "$J" \
  "all(r['period_us'] > 0 and r['graph'] is False for c in d['cases'] for r in c['ranks'])")" = True
check "the case's period spans its ranks" test "$(jget "$J" "all(c['period']['min_us'] <= c['period']['max_us'] \
  and c['period']['ranks'] == len(c['ranks']) for c in d['cases'])")" = True
check "total_min: per iteration, the minimum over ranks (not above the maximum, equal to the ranks' own)" \
  test "$(jget "$J" "all(mn <= mx and abs(mn - min(r['samples_us']['total'][i] for r in c['ranks'])) < 1e-6 \
  for c in d['cases'] for i, (mn, mx) in enumerate(zip(c['samples']['total_min'], c['samples']['total'])))")" = True
check "the table has the total_min and period columns" grep -q "total_min *period" "$OUT/eager.out"
check "cases.tsv has them too" grep -q "total_min_p50_us	period_us" "$(dirname "$J")/cases.tsv"

# --- graph = on with ll: the same outputs as eager, only the total timed ---
if ! "$MOEBENCH" list --set strategy=ll >/dev/null 2>&1; then
  echo "# the ll strategy is not built in: graph = on runs are not checked yet"
  finish
fi
cat >"$OUT/ll.ini" <<'INI'
[global]
strategy = ll
iters = 3
warmup = 1
graph = off|on

[one]
tokens = 64

[ep4]
dp = 4
tokens = 300,0,17,128
expert = swiglu
routing = uniform
layers = 2

[shared]
dp = 2
tokens = 33,90
shared_experts = 1
routing = router
INI
"$MOEBENCH" run --out "$OUT/ll" "$OUT/ll.ini" >"$OUT/ll.out" 2>"$OUT/ll.err"
rc=$?
check "ll with graph = off|on exits 0 (got $rc)" test "$rc" -eq 0
J=$(run_json "$OUT/ll")
check "every case ok" test "$(jget "$J" "all(c['verdict'] == 'ok' for c in d['cases'])")" = True
same_digests() { # every section ran with graph off and on, and its digests (per rank output) are equal
  python3 - "$1" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
by = {}
for c in d["cases"]:
    by.setdefault(c["name"].split("/")[0], {})[c["params"]["graph"]] = c["digests"]
sys.exit(0 if len(by) == 3 and all(set(v) == {"true", "false"} and v["true"] == v["false"] for v in by.values()) else 1)
PY
}
check "graph = on gives the digests of graph = off, case by case" same_digests "$J"
check "graph = on: ranks say so, and only the total is timed" test "$(jget "$J" "all(r['graph'] and \
  set(r['samples_us']) == {'total', 'xfer', 'fetch'} and 'route' not in c['phases'] \
  for c in d['cases'] if c['params']['graph'] == 'true' for r in c['ranks'])")" = True
check "graph = on: the period is there" test "$(jget "$J" \
  "all(c['period']['max_us'] > 0 for c in d['cases'] if c['params']['graph'] == 'true')")" = True
finish
