#!/usr/bin/env bash
# Installs the Debian packages moebench needs, when any is missing (Debian 12, as root or with sudo).
set -euo pipefail
pkgs=(build-essential cmake pkg-config git python3
      libhwloc-dev hwloc libinih-dev libjansson-dev libpapi-dev libopenblas-dev libsqlite3-dev
      libcmocka-dev gnuplot-nox python3-jsonschema)
missing=()
# runs across nodes under mpirun/srun (MPI is optional at build time), the 2-node Slurm test (its install
# starts no daemon) and unshare for the emulated nodes (docs/MULTINODE.md)
pkgs+=(openmpi-bin libopenmpi-dev slurm-wlm util-linux)
# CUTLASS headers for the experts' grouped GEMM (kernels/cuda/grouped_gemm.cu), only where an NVIDIA GPU
# answers and never on CI: the nvidia-cutlass wheel unpacked into a cache outside the source tree, which
# CMake finds by itself (cmake/cutlass.cmake). MOE_CUTLASS_WHEEL may name a wheel already downloaded.
cutlass_headers() {
  local ver=4.2.0.0 cache=${XDG_CACHE_HOME:-$HOME/.cache}/moebench
  local dest=$cache/nvidia-cutlass-$ver
  [ -f "$dest/cutlass_library/source/include/cutlass/cutlass.h" ] && return 0
  mkdir -p "$cache"
  local whl=${MOE_CUTLASS_WHEEL:-}
  if [ -z "$whl" ]; then
    python3 -m pip download -q --no-deps --only-binary=:all: "nvidia-cutlass==$ver" -d "$cache" >&2 ||
      { echo "moebench: could not fetch nvidia-cutlass $ver (the experts keep cuBLAS)" >&2; return 0; }
    whl=$(ls "$cache"/nvidia_cutlass-"$ver"-*.whl | head -n1)
  fi
  python3 -m zipfile -e "$whl" "$dest"
  echo "moebench: CUTLASS headers in $dest (found by cmake; or -DMOE_CUTLASS_DIR=$dest)" >&2
}
if [ -z "${CI:-}" ] && command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
  cutlass_headers
fi
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
echo "moebench: installing ${missing[*]}" >&2
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
