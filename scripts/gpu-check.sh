#!/usr/bin/env bash
# Runs on the GPU host from the repository root, with .carry/ from scripts/gpu-bundle.sh: the kernel test,
# every scenario on the cuda backend, and what else is asked (STEPS). Logs go to $OUT (or /tmp/gpu-out).
set -u
OUT=${OUT:-/tmp/gpu-out}
mkdir -p "$OUT"
export LD_LIBRARY_PATH=$PWD/.carry/lib:/usr/local/cuda/lib64:/usr/lib/x86_64-linux-gnu
export NCCL_NVLS_ENABLE=0
M=$PWD/.carry/bin/moebench
STEPS=${STEPS:-"env kernels scenarios referee"}
for step in $STEPS; do
  echo "=== $step"
  case $step in
    env)
      nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
      ldd "$M" | grep "not found"
      "$M" topo ;;
    kernels)
      .carry/bin/test_cuda_kernels 2>&1 | tee "$OUT/kernels.log" | tail -20
      if [ -x .carry/bin/test_cuda_ll ]; then
        .carry/bin/test_cuda_ll 2>&1 | tee "$OUT/ll-unit.log" | tail -20
        echo "test_cuda_ll exit ${PIPESTATUS[0]}"
      fi
      if [ -x .carry/bin/test_cuda_grouped ]; then
        .carry/bin/test_cuda_grouped 2>&1 | tee "$OUT/grouped.log" | tail -20
        echo "test_cuda_grouped exit ${PIPESTATUS[0]}"
      fi ;;
    scenarios)
      MOEBENCH=$M SRC=$PWD WORK=/tmp/gpu-e2e bash tests/e2e/gpu_scenarios.sh >"$OUT/scenarios.log" 2>&1
      echo "gpu_scenarios exit $?"
      grep -v "^ok" "$OUT/scenarios.log" | tail -40 ;;
    ll)
      # every shipped scenario with strategy = ll on the GPU, eager and captured (graph = on)
      MOEBENCH=$M SRC=$PWD WORK=/tmp/gpu-e2e timeout "${LL_TIMEOUT:-400}" bash tests/e2e/gpu_ll.sh >"$OUT/ll.log" 2>&1
      echo "gpu_ll exit $?"
      grep -v "^ok" "$OUT/ll.log" | tail -30 ;;
    layouts)
      # every T >= 0 at every small dp x tp, strategy, partition and pad mode, ranks sharing the GPU through ipc
      BACKEND=cuda MOEBENCH=$M SRC=$PWD WORK=/tmp/gpu-e2e bash tests/e2e/layouts.sh >"$OUT/layouts.log" 2>&1
      echo "layouts (cuda) exit $?"
      grep -v "^ok" "$OUT/layouts.log" | tail -20 ;;
    fullcheck)
      # the oracle's cost on a real shape: one rank of DeepSeek-V3 at 4096 tokens, every row checked
      printf '[global]\nmodel = deepseek-v3\nbackend = cuda\niters = 2\nwarmup = 1\n[ds-4096]\ntokens = 4096\n' >/tmp/full.ini
      for chk in full off; do
        /usr/bin/time -f "check = $chk: wall %e s" "$M" run /tmp/full.ini --set check=$chk --out /tmp/gpu-full -q 2>&1 \
          | tee -a "$OUT/fullcheck.log" | tail -3
      done ;;
    referee)
      # transformers' MoE blocks recompute --dump of every strategy and partition (exit 77: no torch here)
      MOEBENCH=$M SRC=$PWD WORK=/tmp/gpu-e2e bash tests/e2e/gpu_referee.sh >"$OUT/referee.log" 2>&1
      echo "gpu_referee exit $?"
      grep -v "^ok" "$OUT/referee.log" | tail -20 ;;
    smoke)
      "$M" run --backend cuda --out /tmp/gpu-res 2>&1 | tee "$OUT/smoke.log" ;;
    sanitize)
      for tool in memcheck racecheck; do
        # NCCL probes for kernel images of other GPUs at init and handles the API errors it gets back;
        # those are not memory errors, so API errors are not reported
        compute-sanitizer --tool $tool --target-processes all --report-api-errors no --error-exitcode 9 \
          "$M" run --backend cuda --iters 2 --warmup 1 --out /tmp/gpu-san >"$OUT/sanitize-$tool.log" 2>&1
        echo "compute-sanitizer $tool exit $?"
        grep -E "ERROR SUMMARY|OK: |FAILED" "$OUT/sanitize-$tool.log" | sort | uniq -c
      done ;;
    calibrate)
      "$M" calibrate --backend cuda 2>&1 | tee "$OUT/calibrate.log" ;;
    detector)
      # the regression detector on a quiet GPU: 20 identical pairs, 20 pairs with 5 % planted in expert
      # (4 rows checked: enough for a verdict of ok, so the runs count as good in the history baseline)
      printf '[global]\nmodel = qwen3-30b-a3b\nbackend = cuda\ncheck = sample:4\niters = 30\nwarmup = 5\n[one]\ntokens = 2048\n' >/tmp/det.ini
      ( time timeout "${DETECTOR_TIMEOUT:-1200}" env MOEBENCH="$M" scripts/detector-quality.sh 20 5 expert /tmp/det.ini ) 2>&1 | tee "$OUT/detector.log" ;;
    bench)
      "$M" run scenarios/bench-gpu.ini --backend cuda --out /tmp/gpu-bench 2>&1 | tee "$OUT/bench.log"
      cp "$(ls -1d /tmp/gpu-bench/2*/ | tail -1)run.json" "$OUT/bench-run.json" ;;
  esac
done
