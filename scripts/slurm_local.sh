#!/usr/bin/env bash
# A one-node Slurm cluster on this machine, for hpo's tests and for trying
# scripts/slurm_array.sbatch by hand (Debian's slurmctld, slurmd, slurm-client and munge).
#
#   scripts/slurm_local.sh start    # install when missing, configure, start, wait until the node is idle
#   scripts/slurm_local.sh status   # the daemons, then `sinfo`
#   scripts/slurm_local.sh stop     # cancel the cluster's jobs, stop the daemons that `start` started
#
# `start` writes /etc/slurm/slurm.conf for this host (its CPUs and memory as `slurmd -C` reports
# them, proctrack/linuxproc and task/none: no cgroups needed) unless a slurm.conf not written by
# this script is there; then it only checks that the cluster answers.  A second `start` while the
# daemons run does nothing (it restarts them when this script's slurm.conf changed).  Spool,
# state, pid and log files of slurmctld and slurmd go to $HPO_SLURM_STATE (default
# /var/lib/hpo-slurm); the list of the daemons `start` started is $HPO_SLURM_STATE/started.
# Works as root and, through sudo, as any other user.
set -euo pipefail

STATE="${HPO_SLURM_STATE:-/var/lib/hpo-slurm}"
CONF=/etc/slurm/slurm.conf
MARK="# Written by hpo scripts/slurm_local.sh: a one-node cluster for tests."
KILL_WAIT="${HPO_SLURM_KILL_WAIT:-10}" # seconds between Slurm's SIGTERM and SIGKILL
CRED_EXPIRE=15                         # seconds; a requeued job waits this long (+1) before it runs again
WAIT_IDLE=60                           # seconds at most for the node to come up idle

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive

say() { printf 'slurm_local: %s\n' "$*"; }
die() { say "$*" >&2; exit 1; }

as_munge() {
  if [ -n "$SUDO" ]; then sudo -u munge "$@"; else runuser -u munge -- "$@"; fi
}

pid_alive() { # pid_alive PIDFILE: the process in PIDFILE runs
  local pid
  pid="$($SUDO cat "$1" 2>/dev/null || true)"
  [ -n "$pid" ] && $SUDO kill -0 "$pid" 2>/dev/null
}

munge_up() { munge -n 2>/dev/null | unmunge >/dev/null 2>&1; }
ctld_up() { scontrol ping 2>/dev/null | grep -q 'is UP'; }
node_state() { sinfo -h -N -o '%t' 2>/dev/null | head -1; }

ours() { [ -f "$CONF" ] && head -1 "$CONF" | grep -qF "$MARK"; }

started() { # started NAME: note that this script started the daemon NAME
  $SUDO mkdir -p "$STATE"
  grep -qx "$1" "$STATE/started" 2>/dev/null || echo "$1" | $SUDO tee -a "$STATE/started" >/dev/null
}

install_packages() {
  local need=()
  command -v munged >/dev/null 2>&1 || [ -x /usr/sbin/munged ] || need+=(munge)
  [ -x /usr/sbin/slurmctld ] || need+=(slurmctld)
  [ -x /usr/sbin/slurmd ] || need+=(slurmd)
  command -v sbatch >/dev/null 2>&1 || need+=(slurm-client)
  [ ${#need[@]} -eq 0 ] && return
  say "apt-get install ${need[*]}"
  $SUDO apt-get update -q
  $SUDO apt-get install -y -q --no-install-recommends "${need[@]}"
}

write_conf() { # (re)writes $CONF; returns 1 when it holds that text already
  local node host
  host="$(hostname -s)"
  # `slurmd -C`: "NodeName=HOST CPUs=2 Boards=1 SocketsPerBoard=1 CoresPerSocket=2 ThreadsPerCore=1 RealMemory=24105"
  node="$(slurmd -C | head -1)"
  [[ "$node" == NodeName=* ]] || die "slurmd -C printed no node line: $node"
  $SUDO mkdir -p /etc/slurm "$STATE/ctld" "$STATE/d" || die "cannot create /etc/slurm and $STATE"
  local text
  text="$(cat <<EOF
$MARK
ClusterName=hpo-local
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/d
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$STATE/slurmctld.log
SlurmdLogFile=$STATE/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=5,bf_interval=5
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
DefMemPerCPU=1024
ReturnToService=2
SlurmdTimeout=30
KillWait=$KILL_WAIT
MinJobAge=600
AuthInfo=cred_expire=$CRED_EXPIRE
MailProg=/bin/true
$node NodeAddr=127.0.0.1 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
)"
  [ -f "$CONF" ] && [ "$text" = "$(cat "$CONF")" ] && return 1
  printf '%s\n' "$text" | $SUDO tee "$CONF" >/dev/null || die "cannot write $CONF"
  say "wrote $CONF: $node"
}

start_munge() {
  munge_up && return
  if ! $SUDO test -s /etc/munge/munge.key; then
    say "creating /etc/munge/munge.key"
    if command -v mungekey >/dev/null 2>&1; then $SUDO mungekey --create --keyfile=/etc/munge/munge.key
    else $SUDO create-munge-key -f; fi
    $SUDO chown munge:munge /etc/munge/munge.key
    $SUDO chmod 400 /etc/munge/munge.key
  fi
  $SUDO mkdir -p /run/munge /var/log/munge /var/lib/munge
  $SUDO chown munge:munge /run/munge /var/log/munge /var/lib/munge
  say "starting munged"
  as_munge /usr/sbin/munged
  started munged
  for _ in $(seq 20); do munge_up && return; sleep 0.5; done
  die "munged does not answer (see /var/log/munge/munged.log)"
}

start_daemon() { # start_daemon NAME: slurmctld or slurmd, as root, unless it runs
  pid_alive "$STATE/$1.pid" && return
  say "starting $1"
  [ "$1" = slurmd ] && SLURMD_SINCE="$(date +%s)"
  $SUDO "/usr/sbin/$1"
  started "$1"
}

registered() { # the slurmd started at $SLURMD_SINCE has registered (the node's state before may be stale)
  local since
  [ -z "${SLURMD_SINCE:-}" ] && return 0
  since="$(scontrol -o show node "$(hostname -s)" 2>/dev/null | grep -o 'SlurmdStartTime=[^ ]*' | cut -d= -f2)"
  [ -n "$since" ] && [ "$since" != None ] && [ "$(date -d "$since" +%s)" -ge $((SLURMD_SINCE - 1)) ]
}

wait_idle() {
  local state="" i
  for i in $(seq $((WAIT_IDLE * 2))); do
    state="$(node_state)"
    case "$state" in
      idle | mix | alloc) registered && return 0 ;;
      down* | drain* | drng*) # a node back after a stop: put it into service again
        if [ $((i % 4)) -eq 0 ]; then $SUDO scontrol update nodename="$(hostname -s)" state=resume 2>/dev/null || true; fi ;;
    esac
    sleep 0.5
  done
  die "the node is not idle after ${WAIT_IDLE} s (state '${state}'; see $STATE/slurmctld.log and $STATE/slurmd.log)"
}

cmd_start() {
  local t0=$SECONDS
  install_packages
  if [ -f "$CONF" ] && ! ours; then
    ctld_up || die "$CONF was not written by this script and its cluster does not answer; not touching it"
    say "using the existing cluster of $CONF"
  else
    local changed=0
    write_conf && changed=1
    start_munge
    if [ "$changed" -eq 1 ]; then # restarted: `scontrol reconfigure` leaves some settings (cred_expire) as they were
      stop_pidfile slurmd "$STATE/slurmd.pid"
      stop_pidfile slurmctld "$STATE/slurmctld.pid"
    fi
    start_daemon slurmctld
    for _ in $(seq 40); do ctld_up && break; sleep 0.5; done
    ctld_up || die "slurmctld does not answer (see $STATE/slurmctld.log)"
    start_daemon slurmd
  fi
  wait_idle
  say "node $(sinfo -h -N -o '%N %t, %c CPUs, %m MB') after $((SECONDS - t0)) s"
}

stop_pidfile() { # stop_pidfile NAME PIDFILE: SIGTERM, then SIGKILL after 20 s
  local pid
  pid="$($SUDO cat "$2" 2>/dev/null || true)"
  if [ -n "$pid" ] && $SUDO kill -0 "$pid" 2>/dev/null; then
    say "stopping $1 ($pid)"
    $SUDO kill "$pid"
    for _ in $(seq 40); do $SUDO kill -0 "$pid" 2>/dev/null || return 0; sleep 0.5; done
    $SUDO kill -KILL "$pid" 2>/dev/null || true
  fi
}

cmd_stop() {
  [ -f "$STATE/started" ] || { say "nothing to stop (no $STATE/started)"; return 0; }
  local jobs=()
  ctld_up && mapfile -t jobs < <(squeue -h -o %A 2>/dev/null)
  if [ ${#jobs[@]} -gt 0 ]; then
    say "cancelling the cluster's jobs"
    $SUDO scancel "${jobs[@]}" 2>/dev/null || true
    for _ in $(seq 60); do [ -z "$(squeue -h -o %i 2>/dev/null)" ] && break; sleep 0.5; done
  fi
  local name
  for name in slurmd slurmctld munged; do
    grep -qx "$name" "$STATE/started" || continue
    case "$name" in
      munged) stop_pidfile munged /run/munge/munged.pid ;;
      *) stop_pidfile "$name" "$STATE/$name.pid" ;;
    esac
  done
  $SUDO rm -f "$STATE/started"
}

cmd_status() {
  local name
  for name in slurmctld slurmd; do
    if pid_alive "$STATE/$name.pid"; then say "$name runs"; else say "$name does not run"; fi
  done
  if munge_up; then say "munged runs"; else say "munged does not run"; fi
  sinfo
}

case "${1:-}" in
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
