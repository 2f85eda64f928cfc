#!/usr/bin/env bash
# Stop the web server and workers started by platform/up.sh, then the embedded PostgreSQL.
# Usage: platform/down.sh [--keep-db]
set -uo pipefail
cd "$(dirname "$0")/.."
export STATE_DIR=${STATE_DIR:-$PWD/var}
for name in web worker-default worker-bulk worker-training; do
  pidfile="$STATE_DIR/run/$name.pid"
  if [ -f "$pidfile" ]; then
    kill "$(cat "$pidfile")" 2>/dev/null && echo "stopped $name"
    rm -f "$pidfile"
  fi
done
if [ "${1:-}" != "--keep-db" ] && [ -x .venv/bin/python ]; then
  .venv/bin/python manage.py embedded_db stop
fi
