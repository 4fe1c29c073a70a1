#!/usr/bin/env bash
# Supervision: a rank that crashes, exits early or hangs fails its case with exit 3, naming the rank
# and phase (also when it crashes after reporting, on its way out); no process is left behind; cases
# already finished keep their results.
. "$(dirname "$0")/lib.bash"
cat >"$OUT/two.ini" <<'INI'
[global]
model = qwen3-debug
expert = scale
iters = 3
warmup = 1
[first]
dp = 2
tokens = 64
[second]
dp = 4
tokens = 64
INI
for fault in "3:combine:crash|killed by signal 11 (Segmentation fault) in phase combine" \
             "3:dispatch:exit|exited with status 9 in phase dispatch" \
             "3:setup:crash|killed by signal 11 (Segmentation fault) in phase setup" \
             "3:done:crash|killed by signal 11 (Segmentation fault) in phase done, after reporting" \
             "3:done:exit|exited with status 9 in phase done, after reporting"; do
  spec=${fault%%|*}
  want=${fault#*|}
  d="$OUT/${spec//:/_}"
  "$MOEBENCH" run "$OUT/two.ini" --out "$d" --inject-fault "$spec" >"$d.out" 2>&1
  rc=$?
  J=$(run_json "$d")
  check "$spec: exit 3 (got $rc)" test "$rc" -eq 3
  check "$spec: names rank 3 and the phase" grep -q "rank 3 was\|rank 3 $want\|rank 3 exited" "$d.out"
  check "$spec: message '$want'" grep -qF "$want" "$d.out"
  check "$spec: the finished case kept its result" test "$(jget "$J" "d['cases'][0]['verdict']")" = ok
  check "$spec: the failed case is marked error" test "$(jget "$J" "d['cases'][1]['verdict']")" = error
  check "$spec: no rank process left" none_alive "$J"
done
# a hang past the case timeout
start=$(date +%s.%N)
"$MOEBENCH" run "$OUT/two.ini" --only second --out "$OUT/hang" --timeout 2 --inject-fault 1:expert:hang >"$OUT/hang.out" 2>&1
rc=$?
el=$(python3 -c "import time,sys; print(time.time()-float(sys.argv[1]))" "$start")
J=$(run_json "$OUT/hang")
check "hang: exit 3 (got $rc)" test "$rc" -eq 3
check "hang: reported within timeout + 1 s (took ${el}s)" python3 -c "import sys; sys.exit(not float(sys.argv[1]) < 3.0 + 0.5)" "$el"
check "hang: names the hung rank and its phase" grep -q "timed out after 2.0 s:.*rank 1 in phase expert" "$OUT/hang.out"
check "hang: no rank process left" none_alive "$J"
# the launcher itself killed: ranks die with it (PR_SET_PDEATHSIG)
"$MOEBENCH" run "$OUT/two.ini" --only second --out "$OUT/kill" --timeout 60 --inject-fault 0:route:hang >/dev/null 2>&1 &
lpid=$!
sleep 1.5
kids=$(pgrep -P "$lpid" | tr '\n' ' ')
check "launcher has rank children ($kids)" test -n "$kids"
kill -9 "$lpid"
wait "$lpid" 2>/dev/null
sleep 0.5
left=0
for k in $kids; do is_alive "$k" && left=$((left + 1)); done
check "no rank outlives a killed launcher ($left left)" test "$left" -eq 0
finish
