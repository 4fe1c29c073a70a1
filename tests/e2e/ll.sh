#!/usr/bin/env bash
# The ll strategy (device-initiated dispatch into peers' buffers) on the host backend: every shipped host
# scenario passes with strategy = ll, ll's outputs are bit-identical to a2a's, a capacity too small is
# refused after the iteration naming the dropped rows and the key (and the exact capacity needed is not),
# and transports that cannot map peers' memory are refused as scenario errors.
. "$(dirname "$0")/lib.bash"
for f in "$SRC"/scenarios/*.ini; do
  n=$(basename "$f" .ini)
  case $n in bench-gpu | bench-multigpu) continue ;; esac # real model shapes: GPU only (scripts/gpu-check.sh)
  if ! "$MOEBENCH" list "$f" --set strategy=ll >"$OUT/$n.list" 2>&1; then
    echo "skip - $n: ll cannot express it: $(tail -n 1 "$OUT/$n.list")"
    continue
  fi
  "$MOEBENCH" run "$f" --set strategy=ll --iters 2 --warmup 1 --out "$OUT/$n" -q >"$OUT/$n.out" 2>&1
  rc=$?
  J=$(run_json "$OUT/$n")
  check "$n with strategy = ll: exit 0 (got $rc)" test "$rc" -eq 0
  check "$n: every case ran ll and is ok" test "$(jget "$J" \
    "len(d['cases'])>0 and all(c['verdict']=='ok' and c['params']['strategy']=='ll' for c in d['cases'])")" = True
  check "$n: every rank counted what ll requires (rows, slots, bytes)" test "$(jget "$J" \
    "all(c.get('accounting')=='ok' for c in d['cases'])")" = True
  check "$n: invariants all passed" test "$(jget "$J" "all(i['passed'] for i in d['invariants'])")" = True
done

# ll == a2a bit for bit: exact experts and swiglu, every partition and pad, weights before the experts,
# a group with no tokens, several layers
cat >"$OUT/twins.ini" <<'EOF'
[global]
model = qwen3-debug
iters = 2
warmup = 1
layers = 2
dp = 2
tp = 2
tokens = 7,2
strategy = ll|a2a

[exact]
expert = scale|identity
partition = replicate|leader|sp
pad = mask

[swiglu-sp]
expert = swiglu
partition = sp
pad = buffer|zero_token
score_before_experts = true|false

[empty-group]
tokens = 5,0
routing = zipf:1.2
expert = scale
EOF
"$MOEBENCH" run "$OUT/twins.ini" --out "$OUT/twins" -q >"$OUT/twins.out" 2>&1
rc=$?
J=$(run_json "$OUT/twins")
check "ll and a2a twins: exit 0 (got $rc)" test "$rc" -eq 0
check "every ll case has its a2a twin compared, bit-identical" test "$(jget "$J" \
  "[sum(c['params']['strategy']=='ll' for c in d['cases']), sum(i['invariant']=='ll_equals_a2a' and i['passed'] for i in d['invariants'])]")" \
  = "[11, 11]"
# per rank, ll writes a2a's rows, ids and weights plus, each layer, epr int32 counts and a signal to every
# rank and a signal back: L * R * (4 epr + 16) logical bytes more, L * (R - 1) * (4 epr + 16) on the wire
python3 - "$J" >"$OUT/twin_bytes" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
by = {c['name']: c for c in d['cases']}
for c in d['cases']:
    if c['params']['strategy'] != 'll':
        continue
    a = by[c['name'].replace('strategy=ll', 'strategy=a2a')]
    R, E, L = len(c['ranks']), int(c['params']['experts']), int(c['params']['layers'])
    ctrl = L * (4 * E // R + 16)
    for rl, ra in zip(c['ranks'], a['ranks']):
        dl = rl['bytes']['logical'] - ra['bytes']['logical']
        dw = rl['bytes']['wire'] - ra['bytes']['wire']
        print(c['name'], 'ok' if (dl, dw) == (R * ctrl, (R - 1) * ctrl) else 'BAD %d %d' % (dl, dw))
PY
check "ll's bytes are a2a's plus its counts and signals, rank by rank" test "$(grep -c ' ok$' "$OUT/twin_bytes"):$(grep -c BAD "$OUT/twin_bytes")" = 44:0

# capacity: routing = balanced, dp = 2, E = 4, K = 2, 4 tokens a group: token g goes to experts 2g % 4 and
# (2g + 1) % 4, so each rank sends exactly 4 rows to each rank a layer. ll_capacity = 4 fits; 3 drops one
# row per destination: 2 a rank, refused after the first iteration with the count and the key.
cap() {
  "$MOEBENCH" run "$SRC/scenarios/smoke.ini" --only single --set strategy=ll --set dp=2 --set experts=4 \
    --set topk=2 --set tokens=4 --set routing=balanced --set expert=scale --set ll_capacity="$1" \
    --iters 2 --warmup 1 --out "$OUT/cap$1" -q >"$OUT/cap$1.out" 2>&1
}
cap 4
check "ll_capacity = 4 (exactly the rows sent) runs ok (exit $?)" test "$(jget "$(run_json "$OUT/cap4")" \
  "d['cases'][0]['verdict']")" = ok
cap 3
rc=$?
J=$(run_json "$OUT/cap3")
check "ll_capacity = 3 is a scenario error (exit 2, got $rc)" test "$rc" -eq 2
check "its verdict is error" test "$(jget "$J" "d['cases'][0]['verdict']")" = error
check "the reason names the dropped rows and the key" test "$(jget "$J" \
  "'dropped 2 token rows' in d['cases'][0]['reason'] and 'll_capacity = 3' in d['cases'][0]['reason']")" = True
check "stderr says why" grep -q "dropped 2 token rows over its capacity of 3" "$OUT/cap3.out"

# transports that do not map peers' memory: refused before any rank starts
"$MOEBENCH" run "$SRC/scenarios/smoke.ini" --only single --set strategy=ll --transport mpi --out "$OUT/mpi" -q \
  >"$OUT/mpi.out" 2>&1
check "ll over mpi is a scenario error (exit 2, got $?)" test "$(jget "$(run_json "$OUT/mpi")" \
  "d['cases'][0]['verdict']")" = error
check "it says ll needs shm or ipc" grep -q "ll needs a transport that maps peers' memory: shm or ipc" "$OUT/mpi.out"
"$MOEBENCH" run "$SRC/scenarios/smoke.ini" --only single --set strategy=ll --backend cuda --transport nccl \
  --out "$OUT/nccl" -q >"$OUT/nccl.out" 2>&1
rc=$?
check "ll over nccl is a scenario error on any machine (exit 2, got $rc)" test "$rc" -eq 2
check "it says ll needs shm or ipc (transport nccl)" grep -q "shm or ipc (transport nccl does not)" "$OUT/nccl.out"

# the key and the strategy are documented where users look
"$MOEBENCH" help keys >"$OUT/keys" 2>&1
check "help keys lists ll and ll_capacity" grep -q "ll_capacity" "$OUT/keys"
check "help keys describes ll" grep -q "ll (low latency" "$OUT/keys"
finish
