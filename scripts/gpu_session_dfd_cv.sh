#!/usr/bin/env bash
# One device call of the DFD cross-validation study (docs/dfd_results.md), as run on one H200:
#   BUDGET_S=540 bash scripts/gpu_session_dfd_cv.sh OUT_DIR [scripts/dfd_cv.py arguments ...]
# (BUDGET_S: wall seconds for the driver; OUT_DIR/cv.tgz is refreshed every 40 s meanwhile)
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
pack() { (cd /tmp/cv 2>/dev/null && tar czf "$OUT/cv.tgz.tmp" --exclude='*.pt' --exclude='tb' . && mv "$OUT/cv.tgz.tmp" "$OUT/cv.tgz"); }
( while sleep 40; do pack; done ) &  # what has come so far comes back even if the call is cut
packer=$!
timeout "${BUDGET_S:-540}" python3 scripts/dfd_cv.py --root .devdata/dfd_indoor --out /tmp/cv "$@" 2>&1 | tee "$OUT/driver.txt"
kill $packer 2>/dev/null; pack
nvidia-smi --query-gpu=memory.used --format=csv,noheader >> "$OUT/machine.txt"
