#!/usr/bin/env bash
# Every fault (crash, hang, exit, oom) in every phase: the launcher reports the rank and phase within
# the case timeout plus one second, leaves no process behind, keeps the finished case's result, and
# writes a valid run.json that marks the failed case. Writes the matrix to $OUT/matrix.tsv.
. "$(dirname "$0")/lib.bash"
cat >"$OUT/two.ini" <<'INI'
[global]
model = qwen3-debug
expert = scale
iters = 3
warmup = 1
timeout = 2
[first]
dp = 2
tokens = 64
[second]
dp = 4
tokens = 64
INI
printf '# kind\tphase\texit\tdetected_s\tmessage\n' >"$OUT/matrix.tsv"
for kind in crash hang exit oom; do
  for phase in setup route dispatch expert combine verify; do
    d="$OUT/$kind-$phase"
    "$MOEBENCH" run "$OUT/two.ini" --out "$d" --inject-fault "3:$phase:$kind" >"$d.out" 2>&1
    rc=$?
    J=$(run_json "$d")
    msg=$(jget "$J" "d['cases'][1].get('reason','')")
    wall=$(jget "$J" "d['cases'][1].get('wall_s', -1)")
    printf '%s\t%s\t%s\t%.2f\t%s\n' "$kind" "$phase" "$rc" "$wall" "$msg" >>"$OUT/matrix.tsv"
    ok_all=1
    [ "$rc" -eq 3 ] || ok_all=0
    case "$msg" in *"rank 3"*"phase $phase"*) ;; *) ok_all=0 ;; esac
    python3 -c "import sys; sys.exit(not 0 <= float(sys.argv[1]) <= 2.0 + 1.0)" "$wall" || ok_all=0
    [ "$(jget "$J" "[c['verdict'] for c in d['cases']]")" = "['ok', 'error']" ] || ok_all=0
    none_alive "$J" || ok_all=0
    check "$kind in $phase: exit 3, rank 3 and phase $phase named, ${wall}s, first case kept, no process left" test "$ok_all" -eq 1
    [ "$ok_all" -eq 1 ] || echo "   rc=$rc msg=$msg"
  done
done
column -t -s $'\t' "$OUT/matrix.tsv" | cut -c1-150
finish
