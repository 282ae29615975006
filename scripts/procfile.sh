#!/usr/bin/env bash
# Run every process of the Procfile (web, worker, beat, hl7), plus any `name 'command'` pairs given as arguments, in the
# foreground with their output prefixed by their name, as `honcho start` does, but so that nothing outlives them:
# - the processes stay in this script's process group (honcho gives each its own session), so Ctrl-C, and a TERM
#   or KILL sent to the group of `make demo` or `make serve`, reaches every one of them, Celery's pool included;
# - on INT, TERM, exit, or when one process ends, the script sends TERM to every process it started (each inherits
#   PROCFILE_RUN, this run's id), waits up to PROCFILE_KILL_WAIT seconds (5), then KILLs what is left;
# - it writes its pid and run id to HC_VAR_DIR/procfile.pid; a run that finds that file refuses to start while the
#   run that wrote it is alive, and otherwise first stops the processes that run left behind, so a stale worker
#   never consumes this run's broker folders.
# Used by scripts/demo.sh (make demo) and make serve; tests/test_demo_processes.py checks all of this.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
VAR_DIR="${HC_VAR_DIR:-var}"
mkdir -p "$VAR_DIR"
PID_FILE="$VAR_DIR/procfile.pid"
KILL_WAIT="${PROCFILE_KILL_WAIT:-5}"
export PYTHONUNBUFFERED=1

say() { printf '%(%H:%M:%S)T %-8s | %s\n' -1 system "$*"; }

# Every process this run starts inherits PROCFILE_RUN, a fresh id; that is how the run finds its processes again,
# Celery's pool and orphans included, and only them (never make, nor anything else in the same process group).
RUN_ID="$(date +%s)-$$-$RANDOM"
export PROCFILE_RUN="$RUN_ID"

# The processes started by run $1, but for this script itself (pid per line).
run_members() {
  local file pid
  for file in $(grep -lzx "PROCFILE_RUN=$1" /proc/[0-9]*/environ 2>/dev/null); do
    pid="${file#/proc/}"
    pid="${pid%/environ}"
    [ "$pid" != "$$" ] && [ "$pid" != "$BASHPID" ] && echo "$pid"
  done
}

# TERM the given pids, wait up to KILL_WAIT seconds, KILL the ones still alive.
stop_pids() {
  [ $# -gt 0 ] || return 0
  kill -TERM "$@" 2>/dev/null
  local tries=$((KILL_WAIT * 10)) alive
  while [ "$tries" -gt 0 ]; do
    alive=()
    for pid in "$@"; do kill -0 "$pid" 2>/dev/null && alive+=("$pid"); done
    [ ${#alive[@]} -eq 0 ] && return 0
    sleep 0.1
    tries=$((tries - 1))
  done
  say "still running after ${KILL_WAIT} s, killed: ${alive[*]}"
  kill -KILL "${alive[@]}" 2>/dev/null
  return 0
}

if [ -f "$PID_FILE" ]; then
  read -r old_pid old_run <"$PID_FILE" || true
  if [ -n "${old_pid:-}" ] && kill -0 "$old_pid" 2>/dev/null &&
    tr '\0' ' ' <"/proc/$old_pid/cmdline" 2>/dev/null | grep -q procfile.sh; then
    say "another run is using $VAR_DIR (pid $old_pid): stop it first (Ctrl-C in its terminal, or kill $old_pid)."
    exit 1
  fi
  if [ -n "${old_run:-}" ]; then
    mapfile -t stale < <(run_members "$old_run")
    if [ ${#stale[@]} -gt 0 ]; then
      say "stopping ${#stale[@]} process(es) an earlier run left behind: ${stale[*]}"
      stop_pids "${stale[@]}"
    fi
  fi
fi
echo "$$ $RUN_ID" >"$PID_FILE"

STOPPING=0
stop() {
  local code="${1:-0}"
  [ "$STOPPING" = 1 ] && return
  STOPPING=1
  trap '' INT TERM
  mapfile -t ours < <(run_members "$RUN_ID")
  stop_pids "${ours[@]}"
  rm -f "$PID_FILE"
  exit "$code"
}
trap 'stop 130' INT
trap 'stop 143' TERM
trap 'stop $?' EXIT

# name, command, PORT: run it in this process group, each output line prefixed with the name (honcho's PORT names
# the worker's node, worker-<PORT>@host).
start() {
  say "$1 starting"
  PORT="$3" bash -c "exec $2" > >(exec sed -u "s/^/$(printf '%-8s' "$1") | /") 2>&1 &
}

port=5000
while IFS= read -r line; do
  case "$line" in '#'* | '') continue ;; esac
  start "${line%%:*}.1" "${line#*:}" "$port"
  port=$((port + 100))
done <Procfile
while [ $# -ge 2 ]; do
  start "$1" "$2" "$port"
  port=$((port + 100))
  shift 2
done

wait -n
code=$?
say "a process ended (status $code): stopping the others"
stop "$code"
