#!/usr/bin/env bash
# A history record killed at any point leaves the history readable and complete: the database passes
# SQLite's integrity check, and every run it lists has all of its samples.
. "$(dirname "$0")/lib.bash"
printf '[global]\nmodel = qwen3-debug\nexpert = identity\nrouting = balanced\niters = 6000\nwarmup = 0\n[big]\ndp = 2\ntokens = 8\n' >"$OUT/big.ini"
"$MOEBENCH" run "$OUT/big.ini" --out "$OUT/res" -q >/dev/null 2>&1
RUN="$OUT/res/$(readlink "$OUT/res/latest")"
DB="$OUT/h.db"
"$MOEBENCH" history record "$RUN" --db "$DB" >/dev/null
per_run=$(python3 -c "import sqlite3; print(sqlite3.connect('$DB').execute('select count(*) from samples').fetchone()[0])")
killed=0
for i in $(seq 1 8); do
  # a copy of the run under a new id, so every record is a new row set
  cp -r "$RUN" "$OUT/run$i"
  python3 - "$OUT/run$i/run.json" "$i" <<'PY'
import json, sys
d = json.load(open(sys.argv[1])); d['run_id'] = d['run_id'] + '-copy' + sys.argv[2]; json.dump(d, open(sys.argv[1], 'w'))
PY
  "$MOEBENCH" history record "$OUT/run$i" --db "$DB" >/dev/null 2>&1 &
  pid=$!
  sleep "0.$((RANDOM % 40))"
  kill -9 "$pid" 2>/dev/null && killed=$((killed + 1))
  wait "$pid" 2>/dev/null
done
echo "killed $killed of 8 records mid-way"
check "integrity check passes" test "$(python3 -c "import sqlite3; print(sqlite3.connect('$DB').execute('pragma integrity_check').fetchone()[0])")" = ok
check "every listed run has all $per_run samples" python3 - "$DB" "$per_run" <<'PY'
import sqlite3, sys
c = sqlite3.connect(sys.argv[1])
rows = c.execute('select r.run_id, count(s.iter) from runs r left join samples s on s.run = r.id group by r.id').fetchall()
print(len(rows), 'runs recorded')
sys.exit(0 if rows and all(n == int(sys.argv[2]) for _, n in rows) else 1)
PY
check "the first run is still there" bash -c "'$MOEBENCH' history list --db '$DB' | grep -q '$(basename "$RUN")'"
finish
