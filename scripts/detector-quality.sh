#!/usr/bin/env bash
# Measures the regression detector (docs/PERFORMANCE.md): the false-alarm rate over N identical run
# pairs, and how often a slowdown of PCT % planted in one phase is flagged slower in that phase; each
# pair judged twice: on the pair alone, and with the noise band of a history of B earlier identical runs.
#   scripts/detector-quality.sh [N=20] [PCT=5] [PHASE=expert] [SCENARIO]     (B: env BAND_RUNS, default 10)
set -u
cd "$(dirname "$0")/.."
M=${MOEBENCH:-build/moebench}
N=${1:-20}
PCT=${2:-5}
PHASE=${3:-expert}
S=${4:-}
B=${BAND_RUNS:-10}
W=$(mktemp -d)
[ -n "${KEEP:-}" ] && echo "work folder: $W" || trap 'rm -rf "$W"' EXIT
if [ -z "$S" ]; then
  S="$W/d.ini"
  printf '[global]\nmodel = qwen3-debug\nexpert = scale\niters = 30\nwarmup = 3\n[one]\ndp = 2\ntokens = 256\n' >"$S"
fi
run() { "$M" run "$S" --out "$W/$1" -q "${@:2}" >/dev/null 2>&1; echo "$W/$1/$(readlink "$W/$1/latest")"; }
run warm >/dev/null # the first run pays for cold caches
for i in $(seq 1 "$B"); do
  "$M" history record "$(run "h$i")" --db "$W/h.db" >/dev/null
done
fa=(0 0)
det=(0 0)
modes=("--band-runs 0" "--band-runs $B --baseline-runs $B --db $W/h.db")
for i in $(seq 1 "$N"); do
  a=$(run "a$i")
  b=$(run "b$i")
  # PCT % of this pair's base median of the phase, spent inside that phase
  d=$(python3 -c "import json,sys; d=json.load(open(sys.argv[1]+'/run.json')); print(d['cases'][0]['phases'][sys.argv[2]]['p50_us']*float(sys.argv[3])/100)" "$a" "$PHASE" "$PCT")
  c=$(run "c$i" --inject-delay "$PHASE:$d")
  for m in 0 1; do
    # shellcheck disable=SC2086
    base=$a
    [ "$m" = 1 ] && base=history:baseline
    "$M" compare "$base" "$b" --phases "total,$PHASE" ${modes[$m]} >"$W/same$i.$m.txt" 2>&1
    grep -q ' slower$' "$W/same$i.$m.txt" && fa[m]=$((fa[m] + 1))
    # shellcheck disable=SC2086
    "$M" compare "$base" "$c" --phases "$PHASE" ${modes[$m]} >"$W/slow$i.$m.txt" 2>&1
    grep -q " $PHASE .* slower$" "$W/slow$i.$m.txt" && det[m]=$((det[m] + 1))
  done
done
bands=$(grep -h "^one\|^[a-z]" "$W/slow1.1.txt" | awk '{print $(NF-1)}' | tr '\n' ' ')
for m in 0 1; do
  what=$([ "$m" = 0 ] && echo "pair alone" || echo "against the history baseline of $B earlier runs, with their noise band (band: $bands)")
  echo "$what:"
  echo "  identical pairs: $N, flagged slower: ${fa[m]} (false-alarm rate $((100 * fa[m] / N)) %)"
  echo "  pairs with a $PCT % slowdown planted in $PHASE: $N, flagged slower in $PHASE: ${det[m]} (detection rate $((100 * det[m] / N)) %)"
done
