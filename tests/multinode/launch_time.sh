#!/usr/bin/env bash
# Launch to first case ready: 2 x L ranks (default 8) on two emulated nodes, mpirun started at t0, rank 0
# stamps run.json's env.launch.first_case_ready_unix when every rank has joined MPI, pinned itself and
# parsed the scenario. Usage: MOEBENCH=build/moebench SRC=. tests/multinode/launch_time.sh [L] [REPEATS]
set -u
: "${MOEBENCH:?path of the moebench binary}" "${SRC:?source folder}"
. "$SRC/tests/multinode/mpirun2.bash"
mpi_skip
L=${1:-4}
N=${2:-5}
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
printf '[global]\nmodel = qwen3-debug\nexpert = scale\niters = 1\nwarmup = 0\n[one]\ndp = %d\ntokens = 16\n' $((2 * L)) >"$W/one.ini"
for i in $(seq "$N"); do
  t0=$(date +%s.%N)
  mpirun2 "$L" "$MOEBENCH" run "$W/one.ini" -q --out "$W/r$i" >/dev/null 2>&1
  t1=$(date +%s.%N)
  python3 -c "import json,glob,sys; d=json.load(open(glob.glob(sys.argv[1]+'/2*/run.json')[0]));
print('%.3f %.3f' % (d['env']['launch']['first_case_ready_unix'] - float(sys.argv[2]), float(sys.argv[3]) - float(sys.argv[2])))" "$W/r$i" "$t0" "$t1"
done | sort -n | awk '{a[NR]=$1; b[NR]=$2} END {printf "launch to first case ready, %d ranks on 2 nodes: median %.2f s (min %.2f, max %.2f); whole run median %.2f s\n", '$((2 * L))', a[int((NR+1)/2)], a[1], a[NR], b[int((NR+1)/2)]}'
