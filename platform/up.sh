#!/usr/bin/env bash
# Install and start the whole platform on this machine: embedded PostgreSQL (pgvector, pg_trgm),
# migrations, a Celery worker per queue (with beat), and the web server on 127.0.0.1:8000.
# With --data-dir DIR, also imports every dataset found in DIR (folders named as in ../shared/data)
# and then, once the platform serves, enqueues `manage.py train` (every app with data) in the
# background: progress in the admin (Training jobs) and in $STATE_DIR/log/train.log.
# Usage: platform/up.sh [--data-dir DIR] [--no-train] [--port 8000]
set -euo pipefail
cd "$(dirname "$0")/.."
DATA_DIR=""; PORT=${PORT:-8000}; TRAIN=1
while [ $# -gt 0 ]; do
  case "$1" in
    --data-dir) DATA_DIR=$(cd "$2" && pwd); shift 2 ;;
    --port) PORT=$2; shift 2 ;;
    --no-train) TRAIN=0; shift ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
bash platform/install.sh
. .venv/bin/activate
export STATE_DIR=${STATE_DIR:-$PWD/var}
mkdir -p "$STATE_DIR/log" "$STATE_DIR/run"
bash platform/down.sh --keep-db >/dev/null 2>&1 || true

python manage.py migrate --noinput
python manage.py collectstatic --noinput >/dev/null
credentials=$(python manage.py bootstrap_platform)
if [[ "$credentials" == *admin_password* || "$credentials" == *_key* ]]; then
  echo "$credentials" | tee "$STATE_DIR/credentials.json"   # shown once: only hashes are stored
  chmod 600 "$STATE_DIR/credentials.json"
fi

if [ -n "$DATA_DIR" ]; then
  declare -A FOLDERS=([homedepot]=homedepot_search [movielens]=movielens_latest_small [online_retail]=online_retail
                      [banking77]=banking77 [clinc150]=clinc150 [ipinyou]=ipinyou_ctr)
  for name in homedepot movielens online_retail banking77 clinc150 ipinyou; do
    folder="$DATA_DIR/${FOLDERS[$name]}"
    if [ -d "$folder" ]; then
      echo "importing $name from $folder"
      python manage.py import_dataset "$name" --data-dir "$folder"
    fi
  done
fi

# One torch thread for the default and bulk workers (and the training worker keeps every core): four
# processes with a thread per core each, busy-waiting, made a 2-core machine ~10x slower at everything.
BACKBONE_TORCH_THREADS=${WORKER_TORCH_THREADS:-1} celery -A config worker -Q default -n "default@%h" --concurrency 2 -B --loglevel INFO \
  --logfile "$STATE_DIR/log/worker-default.log" --pidfile "$STATE_DIR/run/worker-default.pid" --detach
BACKBONE_TORCH_THREADS=${WORKER_TORCH_THREADS:-1} celery -A config worker -Q bulk -n "bulk@%h" --concurrency 1 --loglevel INFO \
  --logfile "$STATE_DIR/log/worker-bulk.log" --pidfile "$STATE_DIR/run/worker-bulk.pid" --detach
celery -A config worker -Q training -n "training@%h" --concurrency 1 --loglevel INFO \
  --logfile "$STATE_DIR/log/worker-training.log" --pidfile "$STATE_DIR/run/worker-training.pid" --detach
gunicorn config.wsgi -c config/gunicorn.conf.py --bind "127.0.0.1:$PORT" --daemon \
  --pid "$STATE_DIR/run/web.pid" --access-logfile "$STATE_DIR/log/web-access.log" --error-logfile "$STATE_DIR/log/web.log"

for _ in $(seq 1 60); do
  if curl -fsS "http://127.0.0.1:$PORT/api/v1/health" >/dev/null 2>&1; then
    echo "platform is up: http://127.0.0.1:$PORT/admin/  API docs: http://127.0.0.1:$PORT/api/v1/docs  demo storefront: http://127.0.0.1:$PORT/demo/"
    echo "credentials (printed once on first start): $STATE_DIR/credentials.json; logs: $STATE_DIR/log/; stop: platform/down.sh"
    if [ -n "$DATA_DIR" ] && [ "$TRAIN" = 1 ]; then
      # serving already; the training worker trains every app with data, then switches them together
      nohup python manage.py train --unless-trained > "$STATE_DIR/log/train.log" 2>&1 &
      echo "training every app with data in the background (admin: Training jobs; log: $STATE_DIR/log/train.log)"
    fi
    exit 0
  fi
  sleep 1
done
echo "health check did not pass within 60s; see $STATE_DIR/log/" >&2
curl -sS "http://127.0.0.1:$PORT/api/v1/health" >&2 || true
exit 1
