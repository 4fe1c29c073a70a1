#!/usr/bin/env bash
# calibrate's PyTorch anchors without a GPU or torch: a fake Python (MOEBENCH_PYTHON) answers with fixed JSON,
# which calibrate merges under "torch" and turns into moebench / torch ratio lines; the spec it is handed
# carries calibrate's own shapes; a Python that hangs, prints no JSON, fails or is missing never fails
# calibrate; the script itself compiles and, where torch is absent, says so with exit 77.
. "$(dirname "$0")/lib.bash"
M=$MOEBENCH
cal() { # cal NAME: a folder holding the moebench figures calibrate --backend cuda would have saved
  mkdir -p "$OUT/$1"
  cat >"$OUT/$1/calibration.json" <<'JSON'
{"copy_GBps": 4278.0, "gemm_TFLOPs": 803.0,
 "experts_qwen3-30b-a3b_dense_TFLOPs": 700.0, "experts_qwen3-30b-a3b_grouped_TFLOPs": 280.0,
 "experts_qwen3-30b-a3b_loop_TFLOPs": 546.0, "experts_qwen3-30b-a3b_batched_TFLOPs": 529.0}
JSON
}
mkdir -p "$OUT/py"
fake() { # fake NAME BODY: an executable standing in for python3, $OUT/py/NAME
  printf '#!/bin/sh\n%s\n' "$2" >"$OUT/py/$1"
  chmod +x "$OUT/py/$1"
}

check "the script compiles" env PYTHONPYCACHEPREFIX="$OUT/pycache" python3 -m py_compile "$SRC/scripts/torch_anchor.py"

# a Python that answers: merged under "torch" with calibrate's key names, ratios printed
fake good "cat >\"$OUT/spec.json\"; echo \"\$1\" >\"$OUT/argv.txt\"
echo '{\"figures\": {\"gemm_TFLOPs\": 760.0, \"experts_qwen3-30b-a3b_grouped_TFLOPs\": 520.0, \"layer_deepseek-v3_graph_ms\": 13.8}, \"env\": {\"torch\": \"9.9.9\", \"device\": \"FakeGPU\"}, \"errors\": {\"experts_deepseek-v3\": \"OutOfMemoryError: planted\"}}'"
cal good
MOEBENCH_PYTHON="$OUT/py/good" $M calibrate --torch-only --out "$OUT/good" >"$OUT/good.txt" 2>&1
rc=$?
j=$OUT/good/calibration.json
check "a good anchor run exits 0 (got $rc)" test $rc -eq 0
check "the script run is scripts/torch_anchor.py" grep -q "scripts/torch_anchor.py$" "$OUT/argv.txt"
check "torch's figures are merged under torch" test "$(jget "$j" "d['torch']['gemm_TFLOPs']")" = 760.0
check "calibrate's own figures are kept" test "$(jget "$j" "d['gemm_TFLOPs']")" = 803.0
check "the status says ok" test "$(jget "$j" "d['torch_status']")" = ok
check "the environment is kept" test "$(jget "$j" "d['torch_env']['device']")" = FakeGPU
check "the script's errors are kept" grep -q "planted" "$j"
check "the ratio of the dense GEMM (803 / 760)" grep -qP "^torch_gemm_TFLOPs\t760.000\t1.06\t" "$OUT/good.txt"
check "the ratio of the same expert mode (280 / 520)" \
  grep -qP "^torch_experts_qwen3-30b-a3b_grouped_TFLOPs\t520.000\t0.54\t# moebench 280" "$OUT/good.txt"
check "the best expert mode against torch (loop, 546 / 520)" \
  grep -q "best mode (loop) 546.0: 1.05" "$OUT/good.txt"
check "a torch figure without a moebench one has no ratio" grep -qP "^torch_layer_deepseek-v3_graph_ms\t13.800\t-\t" "$OUT/good.txt"
check "a failed anchor is named" grep -q "torch anchor experts_deepseek-v3 failed: OutOfMemoryError" "$OUT/good.txt"
check "the header names torch's version and device" grep -q "torch 9.9.9, FakeGPU" "$OUT/good.txt"

# the spec carries calibrate's shapes (kernels/calib_shapes.h) and the scenario models: nothing to drift
check "the spec is JSON" jget "$OUT/spec.json" "len(d['experts'])" >/dev/null
for row in $(grep -oE '^\s*\{"[a-z0-9-]+", [0-9]+, [0-9]+, [0-9]+, [0-9]+, [01]\}' "$SRC/kernels/calib_shapes.h" |
  tr -d ' {}"'); do
  IFS=, read -r name ne rows h f uneq <<<"$row"
  got=$(jget "$OUT/spec.json" "[(len(e['counts']), sum(e['counts']), e['hidden'], e['ffn'], len(set(e['counts'])) > 1) for e in d['experts'] if e['name'] == '$name']")
  want="[($ne, $((ne * rows)), $h, $f, $([ "$uneq" = 1 ] && echo True || echo False))]"
  check "spec shape $name: $want" test "$got" = "$want"
  if [ "$uneq" = 0 ]; then # its zipf split: the same rows over the same experts, unevenly
    got=$(jget "$OUT/spec.json" "[(len(e['counts']), sum(e['counts']), e['hidden'], e['ffn'], len(set(e['counts'])) > 1) for e in d['experts'] if e['name'] == '$name-zipf']")
    want="[($ne, $((ne * rows)), $h, $f, True)]"
    check "spec shape $name-zipf: $want" test "$got" = "$want"
  fi
done
check "the spec has fifteen shapes (ten, and the five equal ones split by zipf)" \
  test "$(jget "$OUT/spec.json" "len(d['experts'])")" = 15
check "the spec's DeepSeek-V3 layer routes as the model (sigmoid, 8 groups keep 4, bias, x 2.5)" \
  test "$(jget "$OUT/spec.json" "[(l['score'], l['groups'], l['topk_groups'], l['bias'], l['scale'], l['shared'], l['tokens']) for l in d['layers'] if l['name'] == 'deepseek-v3']")" \
  = "[('sigmoid', 8, 4, True, 2.5, 1, 4096)]"

# a Python that never answers is killed at the timeout; calibrate goes on and says so
fake hang "echo \$\$ >\"$OUT/hang.pid\"; exec sleep 60"
cal hang
t0=$(date +%s)
MOEBENCH_TORCH_TIMEOUT=2 MOEBENCH_PYTHON="$OUT/py/hang" $M calibrate --torch-only --out "$OUT/hang" >"$OUT/hang.txt" 2>&1
rc=$?
t1=$(date +%s)
check "a hanging Python does not fail calibrate (got $rc)" test $rc -eq 0
check "it is stopped at the timeout ($((t1 - t0)) s)" test $((t1 - t0)) -lt 20
check "it is said" grep -q "torch anchors: failed (no answer in 2 s" "$OUT/hang.txt"
check "the hanging process is gone" bash -c "! kill -0 $(cat "$OUT/hang.pid") 2>/dev/null"
check "the status is saved" grep -q '"torch_status": "failed (no answer' "$OUT/hang/calibration.json"
check "calibrate's figures survive" test "$(jget "$OUT/hang/calibration.json" "d['copy_GBps']")" = 4278.0

# no JSON, no figures, a failure, no Python, no torch: said, never fatal, no stale torch figures
cp "$j" "$OUT/stale.json"
fake nojson "cat >/dev/null; echo 'Traceback: not json'"
fake nofig "cat >/dev/null; echo '{\"env\": {}}'"
fake fails "cat >/dev/null; exit 3"
fake notorch "cat >/dev/null; echo 'torch not importable' >&2; exit 77"
for c in "nojson:its output is not the JSON expected" "nofig:no \"figures\" object" "fails:exited with status 3" \
  "notorch:skipped (torch not importable)" "missing:skipped ($OUT/py/missing cannot be run)"; do
  n=${c%%:*}
  mkdir -p "$OUT/$n"
  cp "$OUT/stale.json" "$OUT/$n/calibration.json"
  MOEBENCH_PYTHON="$OUT/py/$n" $M calibrate --torch-only --out "$OUT/$n" >"$OUT/$n.txt" 2>&1
  rc=$?
  check "$n: calibrate exits 0 (got $rc)" test $rc -eq 0
  check "$n: says ${c#*:}" grep -qF "${c#*:}" "$OUT/$n.txt"
  check "$n: an earlier run's torch figures are dropped" test "$(jget "$OUT/$n/calibration.json" "'torch' in d")" = False
  check "$n: calibrate's figures are kept" test "$(jget "$OUT/$n/calibration.json" "d['gemm_TFLOPs']")" = 803.0
done

# options: --no-torch and --torch-only exclude each other; --no-torch is a calibrate option only
$M calibrate --torch-only --no-torch >/dev/null 2>&1
check "--torch-only with --no-torch is a usage error" test $? -eq 2
$M run --no-torch >/dev/null 2>&1
check "run refuses --no-torch" test $? -eq 2

# the script itself where torch is absent: exit 77 and a reason, nothing on stdout
if ! python3 -c "import torch" 2>/dev/null; then
  python3 "$SRC/scripts/torch_anchor.py" <"$OUT/spec.json" >"$OUT/real.out" 2>"$OUT/real.err"
  rc=$?
  check "the script without torch exits 77 (got $rc)" test $rc -eq 77
  check "and says torch is not importable" grep -q "torch not importable" "$OUT/real.err"
  check "and prints nothing on stdout" test ! -s "$OUT/real.out"
fi
# the script with a torch whose every operation fails: each step's failure is named, the JSON still comes
mkdir -p "$OUT/faketorch/torch"
cat >"$OUT/faketorch/torch/__init__.py" <<'PY'
__version__ = "0.0-fake"
class _Cuda:
    def is_available(self): return True
    def get_device_name(self): return "FakeGPU"
    def synchronize(self): pass
    def empty_cache(self): pass
cuda = _Cuda()
class version:
    cuda = "0"
def manual_seed(seed): pass
def _grouped_mm(*args, **kwargs): raise RuntimeError("fake grouped_mm")
def __getattr__(name): raise RuntimeError("fake torch has no " + name)
PY
PYTHONPATH="$OUT/faketorch" python3 "$SRC/scripts/torch_anchor.py" --spec "$OUT/spec.json" >"$OUT/ft.json" 2>"$OUT/ft.err"
rc=$?
check "a failing torch still exits 0 (got $rc)" test $rc -eq 0
check "with every step's failure named (rooflines, 15 shapes, 2 layers)" \
  test "$(jget "$OUT/ft.json" "(len(d['errors']), d['figures'], d['env']['device'])")" = "(18, {}, 'FakeGPU')"
check "each says why" \
  test "$(jget "$OUT/ft.json" "d['errors']['experts_qwen3-30b-a3b-unequal']")" = "RuntimeError: fake torch has no tensor"
finish
