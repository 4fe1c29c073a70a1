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
