#!/usr/bin/env bash
# Set up and open the quick-start notebook in JupyterLab.
# Uses the official vit_b checkpoint when present or downloadable; otherwise the notebook
# says so in one line and runs the offline demo (synthetic shapes + the shipped tiny model).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/jupyter lab notebooks/quickstart.ipynb "$@"
