#!/usr/bin/env bash
# A real single-node SLURM cluster on this machine, for the `slurm` tests and for trying
# profiles/slurm-ci by hand:
#
#   bash .ci/slurm-cluster.sh install  install slurm-wlm + munge from Debian if missing (apt-get)
#   bash .ci/slurm-cluster.sh start    install them if missing, start munged,
#                                      slurmctld and slurmd, wait until the node takes jobs
#   bash .ci/slurm-cluster.sh status   daemons, node state, queue; exit 0 only when the node takes jobs
#   bash .ci/slurm-cluster.sh stop     cancel every job, stop the daemons, remove the configuration
#
# Needs root (it installs packages and runs slurmctld/slurmd as root, as a test cluster may).
# Everything that lives longer than a command is private to this cluster: state, spool, logs,
# pid files, the munge key and the munge socket under $HOLOCAT_SLURM_DIR (default
# /var/lib/holocat-slurm); the ports are 6917/6918, not SLURM's defaults. The one shared path is
# the configuration, /etc/slurm/slurm.conf (+ gres.conf): SLURM's client commands inside a job
# step only look there, because snakemake's slurm-jobstep executor strips SLURM_CONF from the job
# environment before it calls srun. The script refuses to overwrite a slurm.conf it did not write,
# and `stop` removes the files it wrote.
#
# The node advertises the machine's real CPUs and 95 % of its memory (from `slurmd -C`) and
# HOLOCAT_SLURM_GPUS (default 2) fake GPUs (gres gpu, File=/dev/null,/dev/zero: nothing is bound),
# so that GPU requests (--gpus=1) schedule and set CUDA_VISIBLE_DEVICES. There is no
# slurmdbd: accounting_storage/none, so `sacct` does not work and the profile must use squeue for
# job status (MinJobAge=900 s keeps finished jobs visible to squeue); every finished job is
# recorded by jobcomp/filetxt in $HOLOCAT_SLURM_DIR/log/jobcomp.txt (id, state, node, times, exit
# code). Memory limits: where the cgroup-v1 memory controller is mounted and writable (it is on
# the project's VMs), task/cgroup + ConstrainRAMSpace (the kernel OOM-kills a step above its
# --mem); elsewhere (e.g. an unprivileged container) jobacct_gather/linux polls each step's RSS
# every second and OverMemoryKill kills it. HOLOCAT_SLURM_CGROUP=0 forces the polling mode.
# `status` prints the mode. Time limits are enforced by slurmctld as usual (KillWait 5 s). A node
# set DOWN stays down until `scontrol update nodename=... state=resume` (ReturnToService=1); its
# running batch jobs are requeued and may start again 30 s later (cred_expire=30, SLURM's
# default is 120 s).
set -euo pipefail

STATE=${HOLOCAT_SLURM_DIR:-/var/lib/holocat-slurm}
CONF_DIR=/etc/slurm
CONF=$CONF_DIR/slurm.conf
MARK="# holocat-slurm-ci: written by .ci/slurm-cluster.sh"
CTLD_PORT=${HOLOCAT_SLURM_CTLD_PORT:-6917}
SLURMD_PORT=${HOLOCAT_SLURM_SLURMD_PORT:-6918}
PARTITION=${HOLOCAT_SLURM_PARTITION:-ci}
# fake GPUs: gres "gpu" backed by character devices that exist everywhere (nothing is bound to them)
FAKE_GPU_FILES=(/dev/null /dev/zero /dev/full /dev/random /dev/urandom)
N_GPUS=${HOLOCAT_SLURM_GPUS:-2}
MUNGE_SOCKET=$STATE/munge-run/munge.socket.2
NODE=$(hostname -s)

log() { echo "slurm-cluster: $*" >&2; }
die() {
  log "ERROR: $*"
  exit 1
}

pid_alive() { # pid file -> 0 when the process named in it runs and is the daemon of that file
  [ -s "$1" ] || return 1
  local pid name
  pid=$(cat "$1")
  name=$(basename "$1" .pid)
  [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$name" ]
}

ours() { [ -f "$CONF" ] && head -n 1 "$CONF" | grep -qF "$MARK"; }

install_packages() {
  local b missing=0
  for b in munged slurmctld slurmd sbatch squeue scontrol; do
    command -v "$b" >/dev/null || missing=1
  done
  [ "$missing" -eq 0 ] && return 0
  [ "$(id -u)" -eq 0 ] || die "slurm-wlm/munge are missing and installing them needs root"
  log "installing slurm-wlm and munge from Debian"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends slurm-wlm munge >/dev/null
}

use_cgroup() { # the cgroup-v1 memory controller is there and we may create groups in it
  [ "${HOLOCAT_SLURM_CGROUP:-1}" != 0 ] || return 1
  [ "$(stat -fc %T /sys/fs/cgroup 2>/dev/null)" = tmpfs ] || return 1
  local c probe
  for c in memory freezer cpuset devices; do
    [ "$(stat -fc %T "/sys/fs/cgroup/$c" 2>/dev/null)" = cgroupfs ] || return 1
  done
  probe=/sys/fs/cgroup/memory/holocat-slurm-probe.$$
  mkdir "$probe" 2>/dev/null || return 1
  rmdir "$probe"
}

write_config() {
  if [ -f "$CONF" ] && ! ours; then
    die "$CONF exists and was not written by this script: refusing to touch a real SLURM setup"
  fi
  local hw cpus mem
  hw=$(slurmd -C | head -n 1)
  cpus=$(sed -n 's/.*CPUs=\([0-9]*\).*/\1/p' <<<"$hw")
  mem=$(sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' <<<"$hw")
  [ -n "$cpus" ] && [ -n "$mem" ] || die "could not read the hardware from 'slurmd -C': $hw"
  case "$N_GPUS" in
  [1-5]) ;;
  *) die "HOLOCAT_SLURM_GPUS: expected 1..5 fake GPUs; got '$N_GPUS'" ;;
  esac
  mem=$((mem * 95 / 100))
  # slurmd -C gives Boards/Sockets/Cores/Threads as this machine has them; RealMemory is lowered
  local topo
  topo=$(sed -e 's/^NodeName=[^ ]* //' -e 's/ RealMemory=[0-9]*//' <<<"$hw")
  local track task gather
  mkdir -p "$CONF_DIR"
  if use_cgroup; then
    track=proctrack/cgroup task=task/cgroup gather=NoOverMemoryKill
    cat >"$CONF_DIR/cgroup.conf" <<EOF
$MARK
CgroupPlugin=cgroup/v1
CgroupMountpoint=/sys/fs/cgroup
ConstrainRAMSpace=yes
ConstrainSwapSpace=yes
EOF
    echo "cgroup (task/cgroup, ConstrainRAMSpace)" >"$STATE/memory-enforcement"
  else
    track=proctrack/linuxproc task=task/none gather=OverMemoryKill
    rm -f "$CONF_DIR/cgroup.conf"
    echo "polling (jobacct_gather/linux, OverMemoryKill, 1 s)" >"$STATE/memory-enforcement"
  fi
  cat >"$CONF" <<EOF
$MARK (state in $STATE); removed by its 'stop'
ClusterName=holocat-ci
SlurmctldHost=$NODE(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$MUNGE_SOCKET,cred_expire=30
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/slurmd
SlurmctldPidFile=$STATE/run/slurmctld.pid
SlurmdPidFile=$STATE/run/slurmd.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
MpiDefault=none
SwitchType=switch/none
ProctrackType=$track
TaskPlugin=$task
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=task=1
JobAcctGatherParams=$gather
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$STATE/log/jobcomp.txt
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1000
GresTypes=gpu
MinJobAge=900
ReturnToService=1
SlurmdTimeout=30
SlurmctldTimeout=30
InactiveLimit=0
KillWait=5
OverTimeLimit=0
MailProg=/bin/true
NodeName=$NODE NodeAddr=127.0.0.1 $topo RealMemory=$mem Gres=gpu:$N_GPUS State=UNKNOWN
PartitionName=$PARTITION Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
  local files
  files=$(IFS=,; echo "${FAKE_GPU_FILES[*]:0:$N_GPUS}")
  cat >"$CONF_DIR/gres.conf" <<EOF
$MARK
# $N_GPUS fake GPU(s) so that --gpus=1 / --gres=gpu:1 jobs schedule; no real device behind them
NodeName=$NODE Name=gpu File=$files
EOF
}

start_munge() {
  if pid_alive "$STATE/munge/munged.pid"; then return 0; fi
  install -d -m 0700 -o munge -g munge "$STATE/munge"
  install -d -m 0755 -o munge -g munge "$STATE/munge-run"
  if [ ! -s "$STATE/munge/munge.key" ]; then
    dd if=/dev/urandom of="$STATE/munge/munge.key" bs=1024 count=1 status=none
  fi
  chown munge:munge "$STATE/munge/munge.key"
  chmod 0400 "$STATE/munge/munge.key"
  runuser -u munge -- /usr/sbin/munged \
    --socket="$MUNGE_SOCKET" \
    --key-file="$STATE/munge/munge.key" \
    --pid-file="$STATE/munge/munged.pid" \
    --log-file="$STATE/munge/munged.log" \
    --seed-file="$STATE/munge/munged.seed"
  munge -n -S "$MUNGE_SOCKET" | unmunge -S "$MUNGE_SOCKET" >/dev/null ||
    die "munged does not answer on $MUNGE_SOCKET (see $STATE/munge/munged.log)"
}

node_state() { sinfo -h -n "$NODE" -o '%T' 2>/dev/null | head -n 1; }

wait_for_node() {
  local i st
  for i in $(seq 1 120); do
    st=$(node_state || true)
    case "$st" in
    idle* | mixed* | allocated* | completing*) return 0 ;;
    down* | drain*)
      # a node left DOWN by an earlier run (or a test) comes back with resume
      scontrol update nodename="$NODE" state=resume 2>/dev/null || true
      ;;
    esac
    sleep 0.5
  done
  die "node $NODE did not become available (state '${st:-?}'); see $STATE/log/slurm*.log"
}

cmd_start() {
  [ "$(id -u)" -eq 0 ] || die "start needs root"
  local t0=$SECONDS
  install_packages
  if ours && pid_alive "$STATE/run/slurmctld.pid" && pid_alive "$STATE/run/slurmd.pid" \
    && pid_alive "$STATE/munge/munged.pid"; then
    wait_for_node
    log "already running ($(node_state) node $NODE, partition $PARTITION)"
    return 0
  fi
  cmd_stop quiet
  mkdir -p "$STATE/ctld" "$STATE/slurmd" "$STATE/run" "$STATE/log"
  write_config
  start_munge
  # -c: start from a clean controller state (no jobs, node states from slurm.conf)
  slurmctld -c || die "slurmctld did not start; see $STATE/log/slurmctld.log"
  local i
  for i in $(seq 1 60); do
    scontrol ping 2>/dev/null | grep -q UP && break
    sleep 0.25
  done
  scontrol ping | grep -q UP || die "slurmctld does not answer; see $STATE/log/slurmctld.log"
  slurmd || die "slurmd did not start; see $STATE/log/slurmd.log"
  wait_for_node
  log "started in $((SECONDS - t0)) s: node $NODE ($(node_state)), partition $PARTITION," \
    "state in $STATE"
}

cmd_status() {
  local rc=0 d
  for d in "munged:$STATE/munge/munged.pid" "slurmctld:$STATE/run/slurmctld.pid" \
    "slurmd:$STATE/run/slurmd.pid"; do
    if pid_alive "${d#*:}"; then
      echo "${d%%:*}: running (pid $(cat "${d#*:}"))"
    else
      echo "${d%%:*}: not running"
      rc=1
    fi
  done
  if [ "$rc" -eq 0 ] && ours; then
    echo "memory limits: $(cat "$STATE/memory-enforcement" 2>/dev/null || echo '?')"
    sinfo -N -o '%N %P %T %c %m %G' || rc=1
    squeue -o '%i %j %T %M %l %R' || rc=1
    case "$(node_state)" in
    idle* | mixed* | allocated* | completing*) ;;
    *) rc=1 ;;
    esac
  fi
  return "$rc"
}

stop_pidfile() { # name pidfile: TERM, wait up to 15 s, then KILL
  local name=$1 pf=$2 pid i
  pid_alive "$pf" || {
    rm -f "$pf"
    return 0
  }
  pid=$(cat "$pf")
  kill "$pid" 2>/dev/null || true
  for i in $(seq 1 60); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.25
  done
  if kill -0 "$pid" 2>/dev/null; then
    log "$name (pid $pid) ignored SIGTERM: killing it"
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$pf"
}

cmd_stop() {
  local quiet=${1:-}
  if ours && pid_alive "$STATE/run/slurmctld.pid"; then
    # jobs first, so that no slurmstepd (or job) outlives slurmd
    scontrol update nodename="$NODE" state=resume >/dev/null 2>&1 || true
    local ids
    ids=$(squeue -h -o '%i' 2>/dev/null | tr '\n' ' ')
    if [ -n "${ids// /}" ]; then
      # shellcheck disable=SC2086
      scancel $ids 2>/dev/null || true
      local i
      for i in $(seq 1 60); do
        [ -z "$(squeue -h -t running,completing -o '%i' 2>/dev/null)" ] && break
        sleep 0.25
      done
    fi
  fi
  stop_pidfile slurmd "$STATE/run/slurmd.pid"
  stop_pidfile slurmctld "$STATE/run/slurmctld.pid"
  stop_pidfile munged "$STATE/munge/munged.pid"
  if ours; then
    rm -f "$CONF" "$CONF_DIR/gres.conf" "$CONF_DIR/cgroup.conf"
  fi
  [ -n "$quiet" ] || log "stopped (state and logs kept in $STATE)"
}

case "${1:-}" in
install) install_packages ;;
start) cmd_start ;;
stop) cmd_stop ;;
status) cmd_status ;;
*)
  echo "usage: $0 install|start|status|stop" >&2
  exit 2
  ;;
esac
