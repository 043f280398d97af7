#!/usr/bin/env bash
# A one-node SLURM on this machine, for the live SLURM test (tests/test_slurm.py):
#   .ci/slurm.sh install   Debian's slurm-wlm and munge
#   .ci/slurm.sh start     write /etc/slurm/{slurm,gres}.conf and start munged, slurmctld and slurmd
#   .ci/slurm.sh stop      stop the daemons this script started
# The node declares one GPU through gres.conf (File=/dev/null), so that jobs asking for --gpus=1 are
# accepted; there is no accounting (no slurmdbd), as on many small clusters.
set -euo pipefail
NODE=$(hostname -s)
RUN=/run/smart-slurm
case "${1:-}" in
install)
  if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >/dev/null
    apt-get install -y -q slurm-wlm munge >/dev/null
  fi
  ;;
start)
  mkdir -p /etc/slurm "$RUN" /var/spool/slurmd /var/spool/slurmctld /var/log/slurm /run/munge /var/lib/munge /var/log/munge
  CPUS=$(nproc)
  MEM=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 2048 ))
  cat > /etc/slurm/slurm.conf <<CONF
ClusterName=smart
SlurmctldHost=$NODE
AuthType=auth/munge
SlurmUser=root
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
GresTypes=gpu
SchedulerType=sched/backfill
ReturnToService=2
MpiDefault=none
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MinJobAge=600
DefMemPerCPU=1024
SlurmctldPidFile=$RUN/slurmctld.pid
SlurmdPidFile=$RUN/slurmd.pid
SlurmdSpoolDir=/var/spool/slurmd
StateSaveLocation=/var/spool/slurmctld
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
NodeName=$NODE CPUs=$CPUS RealMemory=$MEM Gres=gpu:1 State=UNKNOWN
PartitionName=cpu Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
PartitionName=gpu Nodes=$NODE MaxTime=INFINITE State=UP
CONF
  echo "NodeName=$NODE Name=gpu File=/dev/null" > /etc/slurm/gres.conf
  if [ ! -s /etc/munge/munge.key ]; then
    dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key status=none
  fi
  chown -R munge:munge /etc/munge /run/munge /var/lib/munge /var/log/munge
  chmod 0400 /etc/munge/munge.key
  chmod 0755 /run/munge
  su -s /bin/sh munge -c "munged -F" >"$RUN/munged.out" 2>&1 & echo $! > "$RUN/munged.spid"
  for _ in $(seq 50); do [ -S /run/munge/munge.socket.2 ] && break; sleep 0.1; done
  slurmctld -D >"$RUN/slurmctld.out" 2>&1 & echo $! > "$RUN/slurmctld.spid"
  slurmd -D -N "$NODE" >"$RUN/slurmd.out" 2>&1 & echo $! > "$RUN/slurmd.spid"
  for _ in $(seq 100); do
    if sinfo -h -o %T 2>/dev/null | grep -qE '^(idle|mixed|allocated)'; then
      echo "slurm up: $(sinfo -h -o '%P %D %T' | tr '\n' ' ')"
      exit 0
    fi
    sleep 0.2
  done
  echo "slurm did not come up" >&2
  tail -5 "$RUN"/*.out /var/log/slurm/*.log >&2 || true
  exit 1
  ;;
stop)
  for d in slurmd slurmctld munged; do
    if [ -f "$RUN/$d.spid" ]; then
      pkill -TERM -P "$(cat "$RUN/$d.spid")" 2>/dev/null || true
      kill -TERM "$(cat "$RUN/$d.spid")" 2>/dev/null || true
      rm -f "$RUN/$d.spid"
    fi
  done
  pkill -x slurmd 2>/dev/null || true
  pkill -x slurmctld 2>/dev/null || true
  pkill -x munged 2>/dev/null || true
  ;;
*)
  echo "usage: $0 install|start|stop" >&2
  exit 2
  ;;
esac
