#!/usr/bin/env bash
# tests/slurm/cluster.sh start|stop|status DIR
# A real one-node Slurm cluster for tests (infra.md §3.8): slurmctld + slurmd from Debian's
# packages, auth/none, state and logs under DIR, on loopback; `start` prints the SLURM_CONF
# line to export; `stop` kills both daemons and waits until they are gone.
set -euo pipefail
cmd=$1 dir=$(mkdir -p "$2" && cd "$2" && pwd)
conf="$dir/slurm.conf"
host=$(hostname -s)
port_base=${MELBO_SLURM_PORT:-$((16800 + RANDOM % 800))}

stop() {
    for f in "$dir/slurmd.pid" "$dir/slurmctld.pid"; do
        [ -f "$f" ] || continue
        pid=$(cat "$f")
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$pid" 2>/dev/null || true
        rm -f "$f"
    done
    # step daemons of jobs that were still ending belong to this cluster's slurmd
    pkill -9 -x slurmstepd 2>/dev/null || true
}

case "$cmd" in
start)
    stop
    rm -rf "$dir/state" "$dir/spool" "$dir/log" "$dir/jobcomp.log"   # no jobs from an earlier run
    # job ids start at 1 again: a PMIx directory an interrupted run left for a step of the same
    # id would make that step fail to launch ("File exists")
    rm -rf /tmp/spmix_appdir_"$(id -u)"_*
    mkdir -p "$dir/state" "$dir/spool" "$dir/log"
    cat >"$conf" <<CONF
ClusterName=melbotest
SlurmctldHost=$host(127.0.0.1)
AuthType=auth/none
CredType=cred/none
SlurmUser=root
SlurmdUser=root
SlurmctldPort=$port_base
SlurmdPort=$((port_base + 1))
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SwitchType=switch/none
MpiDefault=none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/filetxt
JobCompLoc=$dir/jobcomp.log
ReturnToService=2
KillWait=5
MinJobAge=300
MailProg=/bin/true
SlurmctldTimeout=30
SlurmdTimeout=30
NodeName=$host NodeAddr=127.0.0.1 CPUs=$(nproc --all) State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
CONF
    export SLURM_CONF="$conf"
    slurmctld -i
    slurmd
    for _ in $(seq 1 100); do
        sinfo -h -o '%T' 2>/dev/null | grep -qE '^(idle|mixed|allocated)' && break
        sleep 0.2
    done
    sinfo -h -o '%T' | grep -qE '^(idle|mixed|allocated)' || {
        echo "cluster.sh: the node did not come up; logs in $dir/log" >&2
        tail -5 "$dir/log/slurmctld.log" "$dir/log/slurmd.log" >&2 || true
        stop
        exit 1
    }
    echo "export SLURM_CONF=$conf"
    ;;
stop)
    stop
    ;;
status)
    SLURM_CONF="$conf" sinfo
    ;;
*)
    echo "usage: $0 start|stop|status DIR" >&2
    exit 2
    ;;
esac
