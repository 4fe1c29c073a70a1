#!/usr/bin/env bash
# --dump writes valid .npy files from which another implementation (plain Python here, no numpy) can
# recompute the layer: token outputs rebuilt from the dumped x, routing and weights match y.
. "$(dirname "$0")/lib.bash"
"$MOEBENCH" run "$SRC/scenarios/smoke.ini" --only dp2tp2-swiglu --out "$OUT/res" --dump "$OUT/dump" -q
check "run with --dump exits 0" test $? -eq 0
D="$OUT/dump/dp2tp2-swiglu"
check "tensors written" test "$(ls "$D" | wc -l)" -gt 20
python3 - "$D" <<'PY'
import math, os, struct, sys
d = sys.argv[1]
def load(name):
    with open(os.path.join(d, name), 'rb') as f:
        b = f.read()
    assert b[:8] == b'\x93NUMPY\x01\x00', name
    hl = struct.unpack('<H', b[8:10])[0]
    h = eval(b[10:10 + hl].decode())
    assert (10 + hl) % 64 == 0, 'data not 64-byte aligned'
    r, c = h['shape']
    fmt = '<%d%s' % (r * c, 'i' if h['descr'] == '<i4' else 'f')
    v = struct.unpack(fmt, b[10 + hl:10 + hl + 4 * r * c])
    return [list(v[i * c:(i + 1) * c]) for i in range(r)]
x, y = load('rank0_layer0_x.npy'), load('rank0_layer0_y.npy')
idx, w = load('rank0_layer0_idx.npy'), load('rank0_layer0_w.npy')
def weight(e, k):
    for r in range(4):
        f = 'rank%d_layer0_expert%d_w%d.npy' % (r, e, k)
        if os.path.exists(os.path.join(d, f)):
            return load(f)
    raise SystemExit('expert %d not dumped' % e)
worst = 0
for t in (0, 7, 300):
    u = x[t]
    acc = [0.0] * len(u)
    for k, e in enumerate(idx[t]):
        W1, W3, W2 = weight(e, 1), weight(e, 3), weight(e, 2)
        g = [sum(a * b for a, b in zip(row, u)) for row in W1]
        v = [sum(a * b for a, b in zip(row, u)) for row in W3]
        act = [gi / (1 + math.exp(-gi)) * vi for gi, vi in zip(g, v)]
        out = [sum(a * b for a, b in zip(row, act)) for row in W2]
        acc = [a + w[t][k] * o for a, o in zip(acc, out)]
    num = math.sqrt(sum((a - b) ** 2 for a, b in zip(acc, y[t])))
    den = math.sqrt(sum(a * a for a in acc))
    worst = max(worst, num / den)
print('worst relative error, plain Python float64 vs moebench: %.3g' % worst)
sys.exit(0 if worst < 2e-2 else 1)
PY
check "plain Python recomputes y from the dump within the bf16 tolerance" test $? -eq 0
# a case folder that cannot be made (a file has its name): the rank reports a usage error naming the file
mkdir -p "$OUT/baddump"
touch "$OUT/baddump/single"
"$MOEBENCH" run "$SRC/scenarios/smoke.ini" --only single --out "$OUT/res2" --dump "$OUT/baddump" >"$OUT/baddump.out" 2>&1
rc=$?
check "an unwritable --dump folder: exit 2 (got $rc)" test "$rc" -eq 2
check "the case names the file it could not write" grep -q "rank 0: --dump: writing $OUT/baddump/single/" "$OUT/baddump.out"
finish
