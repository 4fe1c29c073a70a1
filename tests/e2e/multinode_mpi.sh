#!/usr/bin/env bash
# mpirun across two emulated nodes (4 ranks, 2 a node): every shipped host scenario gives the digests of
# the fork launcher's oracle-checked run (tests/multinode/reference.bash, shared with the Slurm test) bit
# for bit; groups that cross a node are a scenario error naming the rule; a crash
# and a hang planted on the second node fail the case naming rank, node and phase, end the job, leave no
# process behind and keep the earlier case's result. Exit 77 where Open MPI or namespaces are missing.
. "$(dirname "$0")/lib.bash"
. "$SRC/tests/multinode/mpirun2.bash"
mpi_skip
. "$SRC/tests/multinode/reference.bash"

# the remote run leaves the oracle off: its outputs are held bit for bit to the fork launcher's, which
# passed it (reference.bash says why that verifies them); the planted-fault runs below keep it on
mn_reference >"$OUT/ref.txt"
rc=$? # taken first: the $(...) in check's description would reset $?
check "the fork launcher's oracle-checked reference ($(cat "$OUT/ref.txt"))" test "$rc" -eq 0
mpirun2 2 "$MOEBENCH" run "${MN_SCEN[@]}" "${MN_QUICK[@]}" --check off --out "$OUT/mpi" >"$OUT/mpi.out" 2>&1
rc=$?
J=$(run_json "$OUT/mpi")
check "mpirun run: exit 2, for the groups that cross a node (got $rc)" test "$rc" -eq 2
check "mpirun run wrote run.json" test -s "$J"

python3 "$SRC/tests/multinode/judge.py" "$MN_REF" "$J" nodea nodeb >"$OUT/compare.txt"
rc=$?
check "every case: fork digests bit for bit, or the rule, or too many ranks ($(head -1 "$OUT/compare.txt"))" test "$rc" -eq 0
check "env: launcher, MPI library, nodes and ranks per node" test "$(jget "$J" \
  "(d['env']['launch']['launcher'], d['env']['launch']['nodes'], d['env']['launch']['ranks_per_node'], d['env']['launch']['mpi_library'][:7])")" = "('openmpi', ['nodea', 'nodeb'], [2, 2], 'Open MP')"
check "wire bytes split: an a2a case sends both within and across nodes" test "$(jget "$J" \
  "[(sum(r['bytes']['wire_intra'] > 0 for r in c['ranks']), sum(r['bytes']['wire_inter'] > 0 for r in c['ranks'])) for c in d['cases'] if c['name'] == 'ep4-uneven'][0]")" = "(4, 4)"

mpirun2 2 "$MOEBENCH" topo >"$OUT/topo.out" 2>&1
check "topo under mpirun: every rank's node, GPU and cpuset" python3 - "$OUT/topo.out" <<'PY'
import sys
rows = [l.split() for l in open(sys.argv[1]) if l[:1].isdigit()]
assert [(r[0], r[1], r[2]) for r in rows] == [("0", "nodea", "0"), ("1", "nodea", "1"), ("2", "nodeb", "0"), ("3", "nodeb", "1")], rows
assert all(r[3] == "-1" and r[5] for r in rows), rows
PY
# MPICH under srun --mpi=pmix starts N worlds of one rank that all exit 0: the size check refuses that
PMI_RANK=0 PMI_SIZE=4 "$MOEBENCH" run "$SRC/scenarios/smoke.ini" --out "$OUT/single" >"$OUT/single.out" 2>&1
rc=$?
check "a launcher's size that MPI does not see: exit 2 (got $rc) with the reason" \
  grep -q "pmi started 4 ranks (PMI_SIZE) but MPI sees rank 0 of a world of 1" "$OUT/single.out"

# planted faults on rank 3, on nodeb: the first case (2 ranks, on nodea) finishes first, with the oracle
# on (the mpi transport's outputs checked by it directly too); the hang needs only the second case's
# deadline, 2 s, to pass
cat >"$OUT/two.ini" <<'INI'
[global]
model = qwen3-debug
expert = scale
iters = 2
warmup = 0
[first]
dp = 2
tokens = 64
[second]
dp = 4
tokens = 64
timeout = 2
INI
no_leftover() { # polled: mpirun may return a moment before the last orted has gone
  local i
  for i in $(seq 30); do
    ! pgrep -f -- "$OUT/$1" >/dev/null && ! pgrep -f -- "$MN_AGENT" >/dev/null && return 0
    sleep 0.1
  done
  return 1
}
for fault in "3:dispatch:crash|rank 3 on nodeb in phase dispatch (iteration 0) was killed by signal 11" \
             "3:dispatch:hang|timed out after 2.0 s"; do
  spec=${fault%%|*}
  want=${fault#*|}
  d=${spec//:/_}
  start=$(date +%s)
  mpirun2 2 "$MOEBENCH" run "$OUT/two.ini" --out "$OUT/$d" --inject-fault "$spec" >"$OUT/$d.out" 2>&1
  rc=$?
  took=$(($(date +%s) - start))
  F=$(run_json "$OUT/$d")
  check "$spec: exit 3 (got $rc) in $took s" test "$rc" -eq 3
  check "$spec: stderr says '$want'" grep -qF "$want" "$OUT/$d.out"
  check "$spec: the case names rank 3, nodeb and dispatch" test "$(jget "$F" \
    "all(s in d['cases'][1]['reason'] for s in ('rank 3 on nodeb in phase dispatch', '$want'))")" = True
  check "$spec: the finished case kept its result" test "$(jget "$F" "[c['verdict'] for c in d['cases']]")" = "['ok', 'error']"
  check "$spec: no process left (moebench, orted, agent)" no_leftover "$d"
done
check "the hang names the rank that is not waiting in a collective" test "$(jget "$(run_json "$OUT/3_dispatch_hang")" \
  "('rank 3 on nodeb in phase dispatch (iteration 0)' in d['cases'][1]['reason'], d['cases'][1]['reason'].count('waiting in an MPI collective'))")" = "(True, 3)"
finish
