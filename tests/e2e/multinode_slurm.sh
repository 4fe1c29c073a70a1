#!/usr/bin/env bash
# srun across a two-node Slurm cluster that this test starts and stops itself: `srun -N2 -n4 --mpi=pmix
# moebench run` of every shipped host scenario gives the fork launcher's digests bit for bit, with ranks
# 0-1 on n1 and 2-3 on n2 (groups that cross a node: the rule; cases of more than 4 ranks: skipped).
# Exit 77 only where Slurm is not installed (scripts/deps.sh installs slurm-wlm) or cannot run here.
. "$(dirname "$0")/lib.bash"
. "$SRC/tests/multinode/mpirun2.bash" # the Open MPI settings (loopback, yield) serve srun's ranks too
for t in slurmctld slurmd srun sinfo; do
  command -v $t >/dev/null || { echo "skip: $t is not installed (scripts/deps.sh installs slurm-wlm)"; exit 77; }
done
ldd "$MOEBENCH" | grep -q libmpi || { echo "skip: moebench was built without MPI"; exit 77; }
[ "$(id -u)" -eq 0 ] && unshare --uts true 2>/dev/null || { echo "skip: needs root for slurmd and namespaces"; exit 77; }
ls /usr/lib/x86_64-linux-gnu/slurm-wlm/mpi_pmix*.so >/dev/null 2>&1 || { echo "skip: Slurm without its pmix plugin"; exit 77; }
unset OMPI_MCA_plm_rsh_agent
. "$SRC/tests/multinode/slurm2.bash"
trap slurm_down EXIT

. "$SRC/tests/multinode/reference.bash"

start=$(date +%s.%N)
check "a 2-node Slurm cluster comes up" slurm_up
# the oracle stays off in the srun run: its outputs are held bit for bit to the fork launcher's
# oracle-checked ones (reference.bash says why that verifies them); the planted crash below keeps it on
mn_reference >"$OUT/ref.txt"
rc=$? # taken first: the $(...) in check's description would reset $?
check "the fork launcher's oracle-checked reference ($(cat "$OUT/ref.txt"))" test "$rc" -eq 0
timeout 240 srun -N2 -n4 --mpi=pmix "$MOEBENCH" run "${MN_SCEN[@]}" "${MN_QUICK[@]}" --check off --out "$OUT/srun" \
  >"$OUT/srun.out" 2>&1
rc=$?
J=$(run_json "$OUT/srun")
check "srun -N2 -n4 --mpi=pmix moebench run (every host scenario): exit 2, for the groups that cross a node (got $rc)" \
  test "$rc" -eq 2
check "run.json: the slurm launcher, nodes n1 and n2 with 2 ranks each" test "$(jget "$J" \
  "(d['env']['launch']['launcher'], d['env']['launch']['nodes'], d['env']['launch']['ranks_per_node'])")" = "('slurm', ['n1', 'n2'], [2, 2])"
python3 "$SRC/tests/multinode/judge.py" "$MN_REF" "$J" n1 n2 >"$OUT/compare.txt"
rc=$?
check "every case: fork digests bit for bit, or the rule, or too many ranks ($(head -1 "$OUT/compare.txt"))" test "$rc" -eq 0
# a crash on n2 ends the job through srun (MPI_Abort), the finished case kept
printf '[global]\nmodel = qwen3-debug\nexpert = scale\niters = 2\nwarmup = 0\n[first]\ndp = 2\ntokens = 64\n[second]\ndp = 4\ntokens = 64\n' >"$OUT/two.ini"
timeout 60 srun -N2 -n4 --mpi=pmix "$MOEBENCH" run "$OUT/two.ini" --out "$OUT/srun-crash" --inject-fault 3:dispatch:crash \
  >"$OUT/crash.out" 2>&1
rc=$?
check "srun, rank 3 crashing on n2: exit 3 (got $rc), named with its node and phase" test "$rc" -eq 3 -a -n "$(grep -F "rank 3 on n2 in phase dispatch (iteration 0) was killed by signal 11" "$OUT/crash.out")"
check "srun crash: the first case kept, the second an error" test "$(jget "$(run_json "$OUT/srun-crash")" \
  "[c['verdict'] for c in d['cases']]")" = "['ok', 'error']"
slurm_down
trap - EXIT
# this cluster's daemons and ranks only (other clusters may run on the machine: their SLURM_CONF differs);
# a step daemon's zombie waits for this container's init to reap it: not running, not counted
ours() { tr '\0' '\n' <"/proc/$1/environ" 2>/dev/null | grep -qxF "SLURM_CONF=$SLURM_CONF"; }
none_left() {
  local n p
  for n in slurmctld slurmd slurmstepd; do
    for p in $(pgrep -r R,S,D,T -x $n); do ours "$p" && return 1; done
  done
  ! pgrep -f -- "$OUT/srun" >/dev/null
}
check "no Slurm daemon or moebench rank left" none_left
echo "# whole Slurm cycle with the run: $(echo "$(date +%s.%N) - $start" | bc 2>/dev/null || echo '?') s"
finish
