#!/usr/bin/env bash
# One device call of the DFD cross-validation study (docs/dfd_results.md), as run on one H200:
#   bash scripts/gpu_session_dfd_cv.sh OUT_DIR [scripts/dfd_cv.py arguments ...]
# Expects the DFD indoor folder at .devdata/dfd_indoor (a git-ignored copy of ../shared/data/dfd_indoor,
# symlinks dereferenced) and, where pytorch_msssim is missing, its wheel in .whl/. Writes OUT_DIR/cv.tgz
# (logs, log.csv, config.yaml, metrics, summary; no checkpoints) and prints the summary.
set -uo pipefail
OUT=${1:?out dir}; shift
if ! python3 -c "import pytorch_msssim" 2>/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
    export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=$PWD/src${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
mkdir -p "$OUT"
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader; python3 -c "import torch; print('torch', torch.__version__)"; date -u; } | tee "$OUT/machine.txt"
python3 scripts/dfd_cv.py --root .devdata/dfd_indoor --out /tmp/cv "$@" 2>&1 | tee "$OUT/driver.txt"
(cd /tmp/cv && tar czf "$OUT/cv.tgz" --exclude='*.pt' --exclude='tb' .)
nvidia-smi --query-gpu=memory.used --format=csv,noheader >> "$OUT/machine.txt"
