#!/usr/bin/env bash
# Measures the regression detector (docs/PERFORMANCE.md): the false-alarm rate over N identical run
# pairs, and how often a slowdown of PCT % planted in one phase is flagged slower in that phase.
#   scripts/detector-quality.sh [N=20] [PCT=5] [PHASE=expert] [SCENARIO]
set -u
cd "$(dirname "$0")/.."
M=${MOEBENCH:-build/moebench}
N=${1:-20}
PCT=${2:-5}
PHASE=${3:-expert}
S=${4:-}
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
if [ -z "$S" ]; then
  S="$W/d.ini"
  printf '[global]\nmodel = qwen3-debug\nexpert = scale\niters = 30\nwarmup = 3\n[one]\ndp = 2\ntokens = 256\n' >"$S"
fi
run() { "$M" run "$S" --out "$W/$1" -q "${@:2}" >/dev/null 2>&1; echo "$W/$1/$(readlink "$W/$1/latest")"; }
false_alarms=0
detected=0
for i in $(seq 1 "$N"); do
  a=$(run "a$i")
  b=$(run "b$i")
  "$M" compare "$a" "$b" --phases "total,$PHASE" >"$W/same$i.txt" 2>&1
  grep -q ' slower$' "$W/same$i.txt" && false_alarms=$((false_alarms + 1))
  # PCT % of this pair's base median of the phase, spent inside that phase
  d=$(python3 -c "import json,sys; d=json.load(open(sys.argv[1]+'/run.json')); print(d['cases'][0]['phases'][sys.argv[2]]['p50_us']*float(sys.argv[3])/100)" "$a" "$PHASE" "$PCT")
  c=$(run "c$i" --inject-delay "$PHASE:$d")
  "$M" compare "$a" "$c" --phases "$PHASE" >"$W/slow$i.txt" 2>&1
  grep -q " $PHASE .* slower$" "$W/slow$i.txt" && detected=$((detected + 1))
done
echo "identical pairs: $N, flagged slower: $false_alarms (false-alarm rate $((100 * false_alarms / N)) %)"
echo "pairs with a $PCT % slowdown planted in $PHASE: $N, flagged slower in $PHASE: $detected (detection rate $((100 * detected / N)) %)"
