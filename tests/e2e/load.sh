#!/usr/bin/env bash
# Load honesty: run.json and the table header record the CPUs, ranks per core, the load average around each
# case and the CPU clock where readable; run warns when ranks outnumber the CPUs; compare calls a change
# measured on an oversubscribed or loaded machine noisy and says why.
. "$(dirname "$0")/lib.bash"
cd "$SRC"
M=$MOEBENCH
cpus=$(nproc)
ranks=2
while [ $ranks -le "$cpus" ]; do ranks=$((ranks * 2)); done # a power of two: experts divide among the ranks
if [ $ranks -gt 16 ]; then
  echo "skip: $cpus CPUs: oversubscribing them would take $ranks ranks"
  exit 77
fi
$M run --only 'ep4-uneven' --set dp=$ranks --set tokens=64 --iters 5 --warmup 1 --out "$OUT/a" >"$OUT/a.out" 2>"$OUT/a.err"
rc=$?
check "an oversubscribed run still runs (exit 0, got $rc)" test $rc -eq 0
J=$(run_json "$OUT/a")
check "env records the CPUs available ($cpus)" test "$(jget "$J" "d['env']['cpus_available']")" = "$cpus"
check "and the most ranks per core" test "$(jget "$J" "round(d['env']['ranks_per_core_max'] * $cpus)")" = "$ranks"
check "and the load average at the start" test "$(jget "$J" "len(d['env']['loadavg_start'])")" = 3
check "the case records its ranks per core" test "$(jget "$J" "round(d['cases'][0]['load']['ranks_per_core'] * $cpus)")" = "$ranks"
check "oversubscribed" test "$(jget "$J" "d['cases'][0]['load']['oversubscribed']")" = True
check "the load average before and after it" \
  test "$(jget "$J" "len(d['cases'][0]['load']['loadavg_before']) + len(d['cases'][0]['load']['loadavg_after'])")" = 6
if [ -r /sys/devices/system/cpu/cpu0/cpufreq/scaling_cur_freq ] || grep -q '^cpu MHz' /proc/cpuinfo; then
  check "the CPU clock, where readable" test "$(jget "$J" "d['cases'][0]['load']['cpu_mhz'] > 0")" = True
fi
check "the table header says so" grep -q "^# load: $cpus CPUs available, up to [0-9.]* ranks per core, load average" "$OUT/a.out"
check "run warns that ranks outnumber the CPUs" grep -q "more ranks than the $cpus CPU" "$OUT/a.err"

$M run --only single --iters 5 --warmup 1 --out "$OUT/b" -q 2>"$OUT/b.err"
check "one rank: no oversubscription warning" bash -c "! grep -q 'more ranks than' '$OUT/b.err'"
B=$(run_json "$OUT/b")
check "and the case is not oversubscribed" test "$(jget "$B" "d['cases'][0]['load']['oversubscribed']")" = False

# compare: a 50 % slowdown is slower on a quiet machine, noisy when either run was oversubscribed or loaded
mk() { # mk NAME PYTHON-ON-d: a copy of B's run.json, changed
  python3 - "$B" "$OUT/$1.json" "$2" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
exec(sys.argv[3])
json.dump(d, open(sys.argv[2], 'w'))
PY
}
# steady samples, so that the verdict turns on the load alone
steady="c = d['cases'][0]; c['samples']['total'] = [100.0 + i % 7 for i in range(30)]"
slow="$steady; c['samples']['total'] = [x * 1.5 for x in c['samples']['total']]"
mk base "$steady; d['cases'][0]['load']['oversubscribed'] = False; d['cases'][0]['load']['loaded'] = False"
mk quiet "$slow; d['cases'][0]['load']['oversubscribed'] = False; d['cases'][0]['load']['loaded'] = False"
mk over "$slow; d['cases'][0]['load']['oversubscribed'] = True; d['cases'][0]['load']['ranks'] = 4; d['cases'][0]['load']['cpus'] = 2"
mk busy "$slow; d['cases'][0]['load']['loaded'] = True; d['cases'][0]['load']['loadavg_before'] = [7.5, 3, 1]"
$M compare "$OUT/base.json" "$OUT/quiet.json" >"$OUT/c1.out" 2>&1
check "on a quiet machine a 50 % slowdown is a regression (exit 1)" test $? -eq 1
$M compare "$OUT/base.json" "$OUT/over.json" --json "$OUT/c2.json" >"$OUT/c2.out" 2>&1
rc=$?
check "the same slowdown measured oversubscribed is not a regression (exit 0, got $rc)" test $rc -eq 0
check "its verdict is noisy" test "$(jget "$OUT/c2.json" "d['rows'][0]['verdict']")" = noisy
check "with the reason printed" grep -q "noisy, not a verdict: NEW: 4 ranks on 2 CPUs" "$OUT/c2.out"
$M compare "$OUT/base.json" "$OUT/over.json" --ignore-load >/dev/null 2>&1
check "--ignore-load keeps the regression (exit 1)" test $? -eq 1
$M compare "$OUT/busy.json" "$OUT/base.json" >"$OUT/c3.out" 2>&1
check "a faster verdict on a loaded BASE is noisy too (exit 0)" test $? -eq 0
check "naming the load average" grep -q "noisy, not a verdict: BASE: load average 7.50 before" "$OUT/c3.out"
finish
