# A two-node Slurm cluster on this machine, started and stopped by the test that sources this
# (docs/MULTINODE.md): slurmctld plus one slurmd per node, each slurmd in a UTS namespace with the
# node's hostname, everything on 127.0.0.1 and driven by SLURM_CONF in a scratch folder; /etc is not
# read or changed. slurm_up starts it; slurm_down (trapped on exit) stops every daemon it started.
SL_DIR=$(mktemp -d /tmp/moe-slurm.XXXXXX) # short: slurmd's sockets live under it
SL_PIDS=()
export SLURM_CONF="$SL_DIR/slurm.conf"

slurm_down() {
  local p
  for p in "${SL_PIDS[@]}"; do kill -TERM "$p" 2>/dev/null; done
  for p in "${SL_PIDS[@]}"; do
    for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$p" 2>/dev/null
    wait "$p" 2>/dev/null
  done
  SL_PIDS=()
  rm -rf "$SL_DIR"
}

slurm_conf() {
  local host base=$((20000 + ($$ % 2000) * 4))
  host=$(hostname)
  # job ids of its own: every cluster would start at job 1 on nodes n1 and n2, and Open MPI names its
  # shared-memory segments (/dev/shm, shared by every cluster on this machine) after node and job, so two
  # clusters running at once (two suites) would map each other's segments
  local first_job=$((1000 + (RANDOM << 10 | $$ % 1024)))
  mkdir -p "$SL_DIR/state" "$SL_DIR/tmp-n1" "$SL_DIR/tmp-n2"
  cat >"$SLURM_CONF" <<EOF
ClusterName=moebench
FirstJobId=$first_job
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$base
SlurmdPort=$((base + 1))
SlurmUser=root
SlurmdUser=root
AuthType=auth/none
CredType=cred/none
StateSaveLocation=$SL_DIR/state
SlurmdSpoolDir=$SL_DIR/spool-%n
TmpFS=$SL_DIR/tmp-%n
SlurmctldPidFile=$SL_DIR/slurmctld.pid
SlurmdPidFile=$SL_DIR/slurmd-%n.pid
SlurmctldLogFile=$SL_DIR/slurmctld.log
SlurmdLogFile=$SL_DIR/slurmd-%n.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SwitchType=switch/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/builtin
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
ReturnToService=2
SlurmdParameters=config_overrides
SchedulerParameters=sched_interval=1
KillWait=2
NodeName=n1 NodeHostname=n1 NodeAddr=127.0.0.1 Port=$((base + 2)) CPUs=2 State=UNKNOWN
NodeName=n2 NodeHostname=n2 NodeAddr=127.0.0.1 Port=$((base + 3)) CPUs=2 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES
EOF
}

# slurm_up: returns 0 once both nodes are idle (within 20 s)
slurm_up() {
  slurm_conf
  slurmctld -D -i >"$SL_DIR/slurmctld.out" 2>&1 &
  SL_PIDS+=($!)
  local n
  for n in n1 n2; do
    unshare --uts sh -c "hostname $n && exec slurmd -D -N $n" >"$SL_DIR/slurmd-$n.out" 2>&1 &
    SL_PIDS+=($!)
  done
  for _ in $(seq 200); do
    [ "$(sinfo -h -N -t idle -o %N 2>/dev/null | sort -u | tr '\n' ' ')" = "n1 n2 " ] && return 0
    sleep 0.1
  done
  echo "Slurm did not come up: $(tail -n 3 "$SL_DIR"/*.log 2>/dev/null)"
  return 1
}
