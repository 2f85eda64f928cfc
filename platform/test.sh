#!/usr/bin/env bash
# Install what the tests need and run them against a separate state folder (its own embedded
# PostgreSQL), so a running platform is never touched. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash platform/install.sh --dev
export STATE_DIR=${TEST_STATE_DIR:-$PWD/var/test}
mkdir -p "$STATE_DIR"
set +e
.venv/bin/python -m pytest "$@"
status=$?
set -e
# The tests' own embedded PostgreSQL is not needed any more.
.venv/bin/python manage.py embedded_db stop >/dev/null 2>&1 || true
if [ "$status" -eq 5 ]; then
  echo "pytest collected no tests: failing" >&2
  exit 1
fi
exit "$status"
