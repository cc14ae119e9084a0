#!/usr/bin/env bash
# Set up (venv, pip, Chromium) and run the whole test suite. Extra arguments go to pytest,
# e.g.  bash scripts/test.sh -m "not slow and not browser"   for the quick subset.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --browser
set +e
SAM_BROWSER_REQUIRED=1 .venv/bin/python -m pytest -ra --durations=15 "$@"
rc=$?
set -e
if [ "$rc" = "5" ]; then
  echo "test.sh: pytest collected no tests - treating that as a failure"
  exit 1
fi
exit "$rc"
