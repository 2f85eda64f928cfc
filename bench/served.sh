#!/usr/bin/env bash
# The check of "Serve what you measure" on your own split: for each app, a fresh platform (its own
# STATE_DIR) with the train side of SPLIT imported, `manage.py train` (timed), then the held-out side
# sent through the public API by bench/served.py; prints the train time, the JSON report and the
# web workers' resident memory, then stops that platform.
# Usage: bench/served.sh SPLIT [APP ...]   (APP: search recommend banking77 clinc150; default all)
# REUSE=1 serves the platform an earlier run left in /tmp/served-state-APP again, without importing
# or training (to compare serving changes on the same trained models).
# SPLIT holds what `manage.py split_dataset NAME --data-dir ../shared/data/... --out SPLIT/NAME` wrote.
set -uo pipefail
cd "$(dirname "$0")/.."
SPLIT=$(cd "$1" && pwd); shift
PORT=${PORT:-8200}
APPS=${*:-search recommend banking77 clinc150}

measure() {  # name "folder=side ..." served.py arguments...
  local name=$1 links=$2; shift 2
  local data="/tmp/served-data-$name" state="/tmp/served-state-$name"
  export STATE_DIR=$state
  if [ "${REUSE:-0}" = 1 ] && [ -f "$state/credentials.json" ]; then
    echo "== $name: the trained platform of $state up again $(date +%T)"
    bash platform/up.sh --no-train --port "$PORT" > "$state.up.log" 2>&1 || { tail -20 "$state.up.log"; return 1; }
  else
    rm -rf "$data" "$state"; mkdir -p "$data"
    for link in $links; do ln -s "$SPLIT/${link#*=}" "$data/${link%%=*}"; done
    echo "== $name: platform up $(date +%T)"
    bash platform/up.sh --data-dir "$data" --no-train --port "$PORT" > "$state.up.log" 2>&1 || { tail -20 "$state.up.log"; return 1; }
    local started=$(date +%s)
    .venv/bin/python manage.py train > "$state.train.log" 2>&1
    echo "train exit $? after $(( $(date +%s) - started )) s"
  fi
  local key
  key=$(.venv/bin/python -c "import json; print(json.load(open('$state/credentials.json'))['storefront_key'])")
  .venv/bin/python bench/served.py --url "http://127.0.0.1:$PORT" --key "$key" "$@"
  echo "web workers (RSS KiB):"; ps -o rss=,args= --ppid "$(cat "$state/run/web.pid")" | cut -c1-60
  bash platform/down.sh > /dev/null 2>&1
}

for app in $APPS; do
  case "$app" in
    search) measure search "homedepot_search=homedepot/train" --homedepot "$SPLIT/homedepot/test" ;;
    recommend) measure recommend "movielens_latest_small=movielens/train online_retail=online_retail/train" \
      --movielens "$SPLIT/movielens/test" --movielens-train "$SPLIT/movielens/train" \
      --online-retail "$SPLIT/online_retail/test" --online-retail-train "$SPLIT/online_retail/train" ;;
    banking77|clinc150) measure "$app" "$app=$app/train" --intents "$SPLIT/$app/test/test.csv" ;;
    *) echo "unknown app $app" >&2; exit 2 ;;
  esac
done
