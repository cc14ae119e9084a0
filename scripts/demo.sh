#!/usr/bin/env bash
# Set up, then open the quick-start notebook in JupyterLab.
#
# The notebooks are opened as fresh copies in a working folder outside the repository,
# $SAM_WIDGET_WORKDIR (default ~/sam_widget_work), so JupyterLab's autosave never writes
# into the repo and every launch starts clean: no saved outputs, no saved widget views (which
# a new kernel cannot show), no restored layout. A copy whose cells you edited is kept under
# a new name (one line says which). Extra arguments go to `jupyter lab`.
#
# Uses the official vit_b checkpoint when present or downloadable; otherwise the notebook
# says so in one line and runs the offline demo (synthetic shapes + the shipped tiny model).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
bash scripts/setup.sh
WORK=${SAM_WIDGET_WORKDIR:-$HOME/sam_widget_work}
WORK=$("$ROOT/.venv/bin/python" - "$WORK" "$ROOT" notebooks/quickstart.ipynb notebooks/teaching.ipynb notebooks/analysis.ipynb <<'PY'
import sys
from sam_widget.demo import prepare_workdir

try:
    out = prepare_workdir(sys.argv[1], sys.argv[3:], repo=sys.argv[2])
except (OSError, ValueError) as e:
    sys.exit(f"demo: {e}")
print(out[0].parent)
PY
)
export JUPYTERLAB_WORKSPACES_DIR="$WORK/.jupyter/workspaces"  # emptied above: no old layout
cd "$WORK"
echo "demo: working folder $WORK (the notebooks here are copies; the repository is not touched)"
as_root=()
if [ "$(id -u)" = "0" ]; then as_root=(--allow-root); fi  # containers often run as root
exec "$ROOT/.venv/bin/jupyter" lab --ServerApp.root_dir="$WORK" ${as_root[@]+"${as_root[@]}"} quickstart.ipynb "$@"
