#!/usr/bin/env bash
# Stop the web server and workers started by platform/up.sh, wait for them to exit, then stop the
# embedded PostgreSQL. The database goes last: a worker still finishing a task needs it.
# Workers get STOP_TIMEOUT seconds (default 60) to finish their current tasks (Celery's warm
# shutdown on SIGTERM); whatever is still running then is killed with its pool processes.
# Usage: platform/down.sh [--keep-db]
set -uo pipefail
cd "$(dirname "$0")/.."
export STATE_DIR=${STATE_DIR:-$PWD/var}
STOP_TIMEOUT=${STOP_TIMEOUT:-60}
# Process groups, not pids: up.sh detaches each server into its own session, and a pool process
# still running a task outlives a killed master.
groups=()
for name in web worker-default worker-bulk worker-training; do
  pidfile="$STATE_DIR/run/$name.pid"
  if [ -f "$pidfile" ]; then
    pid=$(cat "$pidfile")
    pgid=$(ps -o pgid= -p "$pid" 2>/dev/null | tr -d ' ')
    if kill "$pid" 2>/dev/null; then
      echo "stopping $name (pid $pid)"
      [ -n "$pgid" ] && [ "$pgid" != "$(ps -o pgid= -p $$ | tr -d ' ')" ] && groups+=("$pgid")
    fi
    rm -f "$pidfile"
  fi
done
for _ in $(seq 1 "$STOP_TIMEOUT"); do
  alive=()
  for pgid in "${groups[@]}"; do
    kill -0 -- "-$pgid" 2>/dev/null && alive+=("$pgid")
  done
  groups=("${alive[@]}")
  [ ${#groups[@]} -eq 0 ] && break
  sleep 1
done
for pgid in "${groups[@]}"; do
  echo "process group $pgid still running after ${STOP_TIMEOUT}s: killing it" >&2
  kill -KILL -- "-$pgid" 2>/dev/null
done
if [ "${1:-}" != "--keep-db" ] && [ -x .venv/bin/python ]; then
  .venv/bin/python manage.py embedded_db stop
fi
