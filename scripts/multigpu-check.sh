#!/usr/bin/env bash
# Runs on a host with several GPUs (issue 7), from the repository root with .carry/: topology, every
# scenario on the cuda backend (nccl where ranks <= GPUs, else ipc) and through ipc, and the multi-GPU
# benchmarks. Logs and run.json files go to $OUT (or /tmp/mgpu-out).
set -u
OUT=${OUT:-/tmp/mgpu-out}
mkdir -p "$OUT"
export LD_LIBRARY_PATH=$PWD/.carry/lib:/usr/local/cuda/lib64:/usr/lib/x86_64-linux-gnu
export NCCL_NVLS_ENABLE=0
M=$PWD/.carry/bin/moebench
echo "=== topology"
nvidia-smi topo -m 2>&1 | tee "$OUT/topo.log"
"$M" topo | tee -a "$OUT/topo.log"
echo "=== scenarios (auto transport)"
MOEBENCH=$M SRC=$PWD WORK=/tmp/mgpu-e2e bash tests/e2e/gpu_scenarios.sh >"$OUT/scenarios.log" 2>&1
echo "exit $?"; tail -1 "$OUT/scenarios.log"; grep "^FAIL" "$OUT/scenarios.log" | head
echo "=== scenarios (ipc)"
fails=0
for f in scenarios/*.ini; do
  case $f in *bench-*) continue ;; esac
  "$M" run "$f" --backend cuda --transport ipc --out /tmp/mgpu-ipc -q >>"$OUT/ipc.log" 2>&1 || { fails=$((fails + 1)); echo "FAIL $f"; }
done
echo "ipc: $fails scenario files failed"
echo "=== calibrate"
"$M" calibrate --backend cuda --out /tmp/mgpu-res | grep -E "copy|gemm" | tee "$OUT/calibrate.log"
echo "=== bench"
"$M" run scenarios/bench-multigpu.ini --out /tmp/mgpu-res 2>&1 | tee "$OUT/bench.log" | tail -16
cp "$(ls -1d /tmp/mgpu-res/2*/ | tail -1)run.json" "$OUT/bench-run.json"
