#!/usr/bin/env bash
# Idempotent set-up: a virtual environment in .venv with sam_widget and everything the
# demo and the tests need. With --browser it also installs Debian's Chromium (apt) for the
# real-browser tests. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
.venv/bin/python -m pip install -q -e '.[test]' 2>&1 | grep -v "^WARNING: Location" || true
.venv/bin/python -c "import sam_widget, torch, segment_anything, ipycanvas, ipyevents" \
  || { echo "setup: the Python install failed (see above)"; exit 1; }
if [ "${1:-}" = "--browser" ] && ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = "0" ]; then
    apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null
  elif command -v sudo >/dev/null 2>&1; then
    sudo apt-get update -q >/dev/null && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null
  fi
  command -v chromium >/dev/null 2>&1 || { echo "setup: could not install chromium (apt-get install chromium)"; exit 1; }
fi
echo "setup: ready (.venv)"
