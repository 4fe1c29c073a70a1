#!/usr/bin/env bash
# Bundles the build for the GPU host (docs/GPU.md): the binaries plus the non-system shared libraries they
# need, into .carry/ (ignored by git). CUDA, cuBLAS and NCCL are left out: the GPU host has its own.
set -euo pipefail
cd "$(dirname "$0")/.."
rm -rf .carry
mkdir -p .carry/lib .carry/bin .carry/scripts
B=${BUILD:-build} # the build folder to bundle
cp "$B/moebench" .carry/bin/
# calibrate's PyTorch anchors: found at bin/../scripts/ beside the bundled binary
cp scripts/torch_anchor.py .carry/scripts/
[ -x "$B/tests/test_cuda_kernels" ] && cp "$B/tests/test_cuda_kernels" .carry/bin/
[ -x "$B/tests/test_cuda_grouped" ] && cp "$B/tests/test_cuda_grouped" .carry/bin/
[ -x "$B/tests/test_cuda_ll" ] && cp "$B/tests/test_cuda_ll" .carry/bin/
# the CUTLASS grouped GEMM is header-only: nothing to carry, but say whether this build has it
grep -q '^MOE_HAVE_CUTLASS:INTERNAL=ON' "$B/CMakeCache.txt" 2>/dev/null &&
  echo "gpu-bundle: $B has the CUTLASS grouped GEMM" >&2 || echo "gpu-bundle: $B has no CUTLASS grouped GEMM" >&2
for b in .carry/bin/*; do
  ldd "$b" | awk '/=> \//{print $3}'
done | sort -u | while read -r lib; do
  case "$(basename "$lib")" in
    libc.so*|libm.so*|libpthread.so*|libdl.so*|librt.so*|ld-linux*|libgcc_s.so*|libstdc++.so*) ;;
    libcudart*|libcublas*|libnccl*|libcuda.so*) ;;
    libhwloc.so*|libudev.so*) ;; # the host's own: Debian's hwloc finds PCI devices through a plugin not carried
    *) cp -L "$lib" .carry/lib/ ;;
  esac
done
du -sh .carry
