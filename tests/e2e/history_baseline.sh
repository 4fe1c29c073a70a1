#!/usr/bin/env bash
# The history as a baseline: the typical one of the last good runs, never one lucky run; accept, pin and
# unpin with when and why; readers refuse a missing history and read a read-only one; concurrent writers
# all land; an old history is migrated and its digest-less rows are not comparable.
# --ignore-load: the suite runs on shared machines, where every run is loaded (tests/e2e/load.sh covers that rule)
. "$(dirname "$0")/lib.bash"
cat >"$OUT/c.ini" <<'INI'
[global]
model = qwen3-debug
expert = scale
iters = 30
warmup = 1
[one]
tokens = 64
INI
"$MOEBENCH" run "$OUT/c.ini" --out "$OUT/r" -q >/dev/null 2>&1
J=$(run_json "$OUT/r")
# synthetic runs from the real one: only run_id and the total samples change (centre in microseconds)
python3 - "$J" "$OUT" <<'PY'
import json, os, sys
src, out = sys.argv[1], sys.argv[2]
d = json.load(open(src))
def make(name, centre, n=30):
    c = d['cases'][0]
    c['samples'] = {'total': [centre * (1 + 0.001 * ((i * 7) % 11 - 5)) for i in range(n)]}
    c['phases']['total']['p50_us'] = centre
    d['run_id'] = name
    json.dump(d, open(os.path.join(out, name + '.json'), 'w'))
for i, m in enumerate((100, 101, 99, 100, 60)):  # the last one is a lucky fast run
    make('h%d' % i, float(m))
make('new', 100.0)
make('slow', 130.0)
for i in range(4):
    make('big%d' % i, 100.0, n=200000)
PY
DB="$OUT/h.db"
"$MOEBENCH" history list --db "$DB" >/dev/null 2>"$OUT/e.txt"
check "list refuses a history that does not exist (exit 2)" test $? -eq 2
check "naming it" grep -q "h.db: no such history file" "$OUT/e.txt"
check "and does not create it" test ! -e "$DB"
"$MOEBENCH" compare --ignore-load history:baseline "$OUT/new.json" --db "$DB" >/dev/null 2>"$OUT/e.txt"
check "compare refuses a --db that does not exist (exit 2)" test $? -eq 2
for i in 0 1 2 3 4; do "$MOEBENCH" history record "$OUT/h$i.json" --db "$DB" >/dev/null; done
"$MOEBENCH" compare --ignore-load history:last-good "$OUT/new.json" --db "$DB" --band-runs 0 >/dev/null 2>&1
check "against the lucky last run alone, an unchanged run is slower (exit 1)" test $? -eq 1
"$MOEBENCH" compare --ignore-load history:baseline "$OUT/new.json" --db "$DB" --band-runs 0 --json "$OUT/b.json" >"$OUT/b.txt" 2>&1
check "against the baseline of the last good runs it is not (exit 0)" test $? -eq 0
check "the baseline's median is the typical run's, 100 us" test "$(jget "$OUT/b.json" "round(d['rows'][0]['base_p50_us'])")" = 100
"$MOEBENCH" compare --ignore-load history:baseline "$OUT/slow.json" --db "$DB" --band-runs 0 >/dev/null 2>"$OUT/e.txt"
check "a 30 % slowdown against the baseline: exit 1" test $? -eq 1
check "named on stderr" grep -q "one: total slower by +30.0% (regression)" "$OUT/e.txt"
# accept: a meant change becomes the start of the baseline
"$MOEBENCH" history record "$OUT/slow.json" --regressions 1 --db "$DB" >/dev/null
"$MOEBENCH" history accept "$OUT/slow.json" --db "$DB" >/dev/null 2>&1
check "accept without --reason: exit 2" test $? -eq 2
"$MOEBENCH" history accept slow --reason "new expert kernel is slower by design" --db "$DB" >/dev/null
check "accept: exit 0" test $? -eq 0
"$MOEBENCH" compare --ignore-load history:baseline "$OUT/slow.json" --db "$DB" --band-runs 0 >/dev/null 2>&1
check "after accept, the slow level is the baseline (exit 0)" test $? -eq 0
"$MOEBENCH" history pin h0 --reason "known good" --db "$DB" >/dev/null
"$MOEBENCH" compare --ignore-load history:baseline "$OUT/slow.json" --db "$DB" --band-runs 0 >/dev/null 2>&1
check "pinned to h0, the slow run is slower again (exit 1)" test $? -eq 1
"$MOEBENCH" history baseline --db "$DB" >"$OUT/bl.txt"
check "baseline shows the pin" grep -q "^# baseline: run h0 (pinned)" "$OUT/bl.txt"
check "and the accept with its reason" grep -q "accept	slow	new expert kernel is slower by design" "$OUT/bl.txt"
check "list marks them" test "$("$MOEBENCH" history list --db "$DB" | awk -F'\t' '$1=="h0"||$1=="slow"{print $7}' | tr '\n' ' ')" = "pinned accepted "
"$MOEBENCH" history unpin --db "$DB" >/dev/null
"$MOEBENCH" compare --ignore-load history:baseline "$OUT/slow.json" --db "$DB" --band-runs 0 >/dev/null 2>&1
check "unpinned: back to the accepted baseline (exit 0)" test $? -eq 0
"$MOEBENCH" history pin nosuchrun --reason x --db "$DB" >/dev/null 2>"$OUT/e.txt"
check "pin of an unknown run: exit 2" test $? -eq 2
# a read-only history can be listed and compared, and is not written
cp "$DB" "$OUT/ro.db"
mkdir -p "$OUT/rodir" && cp "$DB" "$OUT/rodir/h.db"
chmod 444 "$OUT/ro.db" "$OUT/rodir/h.db" && chmod 555 "$OUT/rodir"
sum=$(md5sum <"$OUT/ro.db")
"$MOEBENCH" history list --db "$OUT/ro.db" >/dev/null
check "a read-only file can be listed" test $? -eq 0
"$MOEBENCH" compare --ignore-load history:baseline "$OUT/new.json" --db "$OUT/ro.db" >/dev/null 2>&1
check "and compared (exit 0)" test $? -eq 0
"$MOEBENCH" compare --ignore-load history:h1 "$OUT/new.json" --db "$OUT/rodir/h.db" >/dev/null 2>&1
check "a history in a read-only folder can be compared (exit 0)" test $? -eq 0
check "and is left as it was" test "$(md5sum <"$OUT/ro.db")" = "$sum" -a ! -e "$OUT/rodir/h.db-journal"
chmod 755 "$OUT/rodir"
# four concurrent records of large runs all land
for i in 0 1 2 3; do "$MOEBENCH" history record "$OUT/big$i.json" --db "$OUT/c.db" >"$OUT/big$i.out" 2>&1 & done
fails=0
for j in $(jobs -p); do wait "$j" || fails=$((fails + 1)); done
check "4 concurrent records of 200k-sample runs: none failed" test "$fails" -eq 0
check "all 4 are listed" test "$("$MOEBENCH" history list --db "$OUT/c.db" | grep -vc '^#')" -eq 4
# an old history (no digest column, no baseline table) is migrated by record; its rows are not comparable
python3 - "$OUT/old.db" "$OUT/h1.json" <<'PY'
import json, sqlite3, sys
c = sqlite3.connect(sys.argv[1])
c.executescript("""
CREATE TABLE runs (id INTEGER PRIMARY KEY, run_id TEXT NOT NULL UNIQUE, recorded_at INTEGER NOT NULL, git_commit TEXT NOT NULL,
 host TEXT NOT NULL, fingerprint TEXT NOT NULL, cases INTEGER NOT NULL, cases_ok INTEGER NOT NULL,
 regressions INTEGER NOT NULL, run_json TEXT NOT NULL) STRICT;
CREATE TABLE phase_stats (run INTEGER NOT NULL REFERENCES runs(id), name TEXT NOT NULL, phase TEXT NOT NULL, p50_us REAL NOT NULL,
 p99_us REAL NOT NULL, PRIMARY KEY (run, name, phase)) STRICT;
CREATE TABLE samples (run INTEGER NOT NULL REFERENCES runs(id), name TEXT NOT NULL, phase TEXT NOT NULL, iter INTEGER NOT NULL,
 us REAL NOT NULL) STRICT;
CREATE TABLE verdicts (run INTEGER NOT NULL REFERENCES runs(id), name TEXT NOT NULL, phase TEXT NOT NULL, verdict TEXT NOT NULL,
 change_pct REAL NOT NULL, PRIMARY KEY (run, name, phase)) STRICT;
""")
d = json.load(open(sys.argv[2]))
env = d['env']
keys = ["host", "cpu", "ncpus", "kernel", "placement_summary", "gpu", "driver", "cuda_built", "nccl_built", "topology_digest"]
fp = json.dumps({k: env[k] for k in keys if k in env}, separators=(',', ':'), sort_keys=True)
c.execute("INSERT INTO runs VALUES (1, 'old1', 0, 'x', 'h', ?, 1, 1, 0, ?)", (fp, json.dumps(d)))
c.execute("INSERT INTO phase_stats VALUES (1, 'one', 'total', 100, 101)")
for i, v in enumerate(d['cases'][0]['samples']['total']):
    c.execute("INSERT INTO samples VALUES (1, 'one', 'total', ?, ?)", (i, v))
c.commit()
PY
"$MOEBENCH" compare --ignore-load history:baseline "$OUT/new.json" --db "$OUT/old.db" >/dev/null 2>"$OUT/e.txt"
check "an old history read as it is: its digest-less rows are no baseline (exit 4)" test $? -eq 4
"$MOEBENCH" history record "$OUT/h2.json" --db "$OUT/old.db" >/dev/null
check "record migrates an old history (exit 0)" test $? -eq 0
check "phase_stats has a digest column now" \
  python3 -c "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); sys.exit(0 if 'digest' in [r[1] for r in c.execute('pragma table_info(phase_stats)')] else 1)" "$OUT/old.db"
"$MOEBENCH" compare --ignore-load history:baseline "$OUT/new.json" --db "$OUT/old.db" --band-runs 0 --json "$OUT/old.json" >/dev/null 2>&1
check "the new row is the baseline (exit 0)" test $? -eq 0
check "from the newly recorded run only" test "$(jget "$OUT/old.json" "d['compared']")" = 1
finish
