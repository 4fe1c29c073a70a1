# Open MPI across two emulated nodes on this machine (sourced by the multinode tests): ranks 0..L-1 on
# "nodea", L..2L-1 on "nodeb", each node a UTS namespace with its own hostname, TCP over loopback
# between them and shared memory within each. Nothing listens or connects outside 127.0.0.1.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_rmaps_base_oversubscribe=1
export OMPI_MCA_mpi_yield_when_idle=1 # more ranks than cores: spinning ranks starve the others
export OMPI_MCA_btl_tcp_if_include=lo OMPI_MCA_oob_tcp_if_include=lo
export UCX_NET_DEVICES=lo UCX_TLS=tcp,self,sm
MN_AGENT="$SRC/tests/multinode/agent.sh"

# mpi_skip: exit 77 (with the reason) where this machine cannot run the two-node job
mpi_skip() {
  command -v mpirun >/dev/null || { echo "skip: mpirun is not installed (scripts/deps.sh installs openmpi-bin)"; exit 77; }
  command -v unshare >/dev/null || { echo "skip: unshare (util-linux) is missing"; exit 77; }
  ldd "$MOEBENCH" | grep -q libmpi || { echo "skip: moebench was built without MPI"; exit 77; }
  unshare --uts true 2>/dev/null || { echo "skip: no UTS namespaces here (needs root)"; exit 77; }
  mpirun --version 2>/dev/null | grep -q "Open MPI" || { echo "skip: mpirun is not Open MPI"; exit 77; }
}

# mpirun2 LOCAL_RANKS CMD...: the command as 2 x LOCAL_RANKS ranks over nodea and nodeb
mpirun2() {
  local l=$1
  shift
  mpirun --host "nodea:$l,nodeb:$l" -n $((2 * l)) --bind-to none --mca plm_rsh_agent "$MN_AGENT" "$@"
}
