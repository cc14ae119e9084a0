#!/usr/bin/env bash
# Idempotent set-up: a virtual environment in .venv with sam_widget (editable) and everything
# the demo and the tests need. With --browser it also installs Debian's Chromium (apt) for the
# real-browser tests. Safe to run again: pip runs only when .venv is new, pyproject.toml
# changed since the last successful install (a stamp in .venv records its hash), or the
# installed packages no longer import.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PY=${PYTHON:-python3}
STAMP=.venv/.sam_widget_setup
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
  rm -f "$STAMP"
fi
# What the install depends on: the dependency list, and where the editable install points.
want="$("$ROOT/.venv/bin/python" -c 'import hashlib, sys; print(hashlib.sha256(open(sys.argv[1], "rb").read()).hexdigest(), sys.argv[2])' pyproject.toml "$ROOT")"
imports_ok() {
  # From outside the repo, so that it is the installed package that imports (as in a kernel
  # started in the demo's working folder), not the checkout in the current directory.
  (cd / && "$ROOT/.venv/bin/python" -c "import sam_widget, torch, segment_anything, ipycanvas, ipyevents" >/dev/null 2>&1)
}
installed_here() {
  # Cheap (nothing imported): every package is installed and sam_widget is this checkout.
  (cd / && "$ROOT/.venv/bin/python" -c '
import importlib.util as u, os, sys
specs = [u.find_spec(m) for m in ("sam_widget", "torch", "segment_anything", "ipycanvas", "ipyevents", "jupyterlab")]
ok = all(specs) and os.path.realpath(specs[0].origin).startswith(os.path.realpath(sys.argv[1]) + os.sep)
sys.exit(0 if ok else 1)' "$ROOT" >/dev/null 2>&1)
}
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ] && installed_here; then
  :  # nothing changed since the last install
else
  rm -f "$STAMP"
  .venv/bin/python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
  # setuptools announces every editable install with a multi-line "Editable installation."
  # warning; it is information only, so it is filtered out of the build's output.
  set +e
  PYTHONWARNINGS="ignore:Editable installation" \
    .venv/bin/python -m pip install -q -e '.[test]' 2>&1 | grep -v "^WARNING: Location"
  pip_rc=${PIPESTATUS[0]}
  set -e
  imports_ok || {
    echo "setup: the Python install failed (see above)"
    exit 1
  }
  if [ "$pip_rc" = "0" ]; then
    printf '%s\n' "$want" >"$STAMP"
  else  # e.g. offline with an older install: usable, but pip is tried again next time
    echo "setup: pip install failed (see above); using the existing .venv"
  fi
fi
if [ "${1:-}" = "--browser" ] && ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = "0" ]; then
    apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null
  elif command -v sudo >/dev/null 2>&1; then
    sudo apt-get update -q >/dev/null && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null
  fi
  command -v chromium >/dev/null 2>&1 || { echo "setup: could not install chromium (apt-get install chromium)"; exit 1; }
fi
echo "setup: ready (.venv)"
