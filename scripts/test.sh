#!/usr/bin/env bash
# Set up (venv, pip, Chromium) and run the whole test suite. Extra arguments go to pytest,
# e.g.  bash scripts/test.sh -m "not slow and not browser"   for the quick subset.
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ "$*" == *"not browser"* ]]; then
  # the browser tests are deselected: no Chromium needed (apt needs root), none required
  bash scripts/setup.sh
  required=0
else
  bash scripts/setup.sh --browser
  required=1
fi
set +e
SAM_BROWSER_REQUIRED=$required .venv/bin/python -m pytest -ra --durations=15 "$@"
rc=$?
set -e
if [ "$rc" = "5" ]; then
  echo "test.sh: pytest collected no tests - treating that as a failure"
  exit 1
fi
exit "$rc"
