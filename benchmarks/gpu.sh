#!/usr/bin/env bash
# The GPU benchmark on a bare machine (python3 with torch + CUDA, no network):
#
#   bash benchmarks/gpu.sh --prepare          # HERE, with network: fetch the one missing wheel
#                                             # (segment_anything) into .gpu_wheels/ (git-ignored)
#   bash benchmarks/gpu.sh [OUTDIR] [ARGS]    # THERE: install the project, run
#                                             # benchmarks/gpu_bench.py, write OUTDIR/gpu_results.{json,md}
#   bash benchmarks/gpu.sh --dry-run          # anywhere: tiny model on the CPU, seconds
#
# OUTDIR defaults to $OUT (set by the device tool), else ./gpu_out. ARGS go to gpu_bench.py
# (e.g. --models vit_b --reps 3 --no-compile --budget-s 300). On the device tool, carry the
# wheels: run(command="bash benchmarks/gpu.sh", carry=[".gpu_wheels"]). The whole run is
# sized for <= 8 minutes on an H200 (install ~10 s, vit_b and vit_h, two compiles).
set -euo pipefail
cd "$(dirname "$0")/.."
REPO="$PWD"
PY="${PYTHON:-}"
if [[ -z "$PY" ]]; then  # the project's venv where there is one (scripts/setup.sh), else the system Python
    if [[ -x "$REPO/.venv/bin/python" ]]; then PY="$REPO/.venv/bin/python"; else PY=python3; fi
fi
WHEELS="$REPO/.gpu_wheels"

if [[ "${1:-}" == "--prepare" ]]; then
    mkdir -p "$WHEELS"
    "$PY" -m pip download --no-deps --dest "$WHEELS" "segment-anything>=1.0"
    ls -l "$WHEELS"
    exit 0
fi

DRY=0
if [[ "${1:-}" == "--dry-run" ]]; then
    DRY=1
    shift
fi
OUTDIR="${OUT:-$REPO/gpu_out}"
if [[ $# -gt 0 && "${1:0:2}" != "--" ]]; then
    OUTDIR="$1"
    shift
fi
mkdir -p "$OUTDIR"
START=$(date +%s)

echo "== machine"
"$PY" - <<'EOF'
import platform, torch
print("python", platform.python_version(), "| torch", torch.__version__, "| cuda available", torch.cuda.is_available())
if torch.cuda.is_available():
    print("gpu", torch.cuda.get_device_name(0), "| capability", torch.cuda.get_device_capability(0))
EOF
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true

echo "== install"
if ! "$PY" -c "import segment_anything" 2>/dev/null; then
    if compgen -G "$WHEELS/segment_anything-*.whl" >/dev/null; then
        "$PY" -m pip install --quiet --no-deps --no-index --find-links "$WHEELS" segment-anything
    else
        "$PY" -m pip install --quiet --no-deps "segment-anything>=1.0" || {
            echo "segment_anything is missing and cannot be installed: run 'bash benchmarks/gpu.sh --prepare'" \
                 "where a package registry is reachable and carry .gpu_wheels/ to this machine." >&2
            exit 3
        }
    fi
fi
# the project itself, without touching the machine's torch (no dependency resolution); a dry
# run only checks the script and leaves the Python environment as it is
if [[ $DRY == 0 ]] && ! "$PY" -m pip install --quiet --no-deps --no-build-isolation --no-index -e "$REPO" 2>"$OUTDIR/pip_install.log"; then
    echo "pip install -e failed (see $OUTDIR/pip_install.log); using PYTHONPATH=$REPO instead"
fi
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
"$PY" -c "import sam_widget, segment_anything; print('sam_widget from', sam_widget.__file__)"
echo "install took $(( $(date +%s) - START )) s"

echo "== benchmark"
if [[ $DRY == 1 ]]; then
    "$PY" benchmarks/gpu_bench.py --device cpu --dry-run --out "$OUTDIR" "$@"
else
    "$PY" benchmarks/gpu_bench.py --out "$OUTDIR" "$@"
fi
echo "== done in $(( $(date +%s) - START )) s; results in $OUTDIR/gpu_results.md and .json"
