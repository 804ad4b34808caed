#!/usr/bin/env bash
# One device call of the DFD study (docs/dfd_results.md) on one H200, resumable across calls:
#   BUDGET_S=500 BENCH_S=0 MPS=1 PACK=RUN bash scripts/gpu_session_dfd_study.sh OUT_DIR [scripts/dfd_cv.py args ...]
# Runs live in runs/study (git-ignored; kept between calls while the machine stays warm): pass
# --resume to continue the runs of the previous call. BENCH_S>0 first runs
# benchmarks/dfd_training_speed.py for at most that many seconds (table in OUT_DIR/speed.md).
# MPS=1 starts the CUDA MPS daemon for the trainings (when nvidia-cuda-mps-control exists).
# PACK=RUN (e.g. d3net-all-s0) writes that run's weights as int8 parts (scripts/pack_model.py) into OUT_DIR.
# Expects .devdata/dfd_indoor (a git-ignored copy of ../shared/data/dfd_indoor, symlinks dereferenced) and,
# where pytorch_msssim is missing, its wheel in .whl/. OUT_DIR/study.tgz (logs, metrics, summary; no
# checkpoints) is refreshed every 40 s.
set -uo pipefail
OUT=${1:?out dir}; shift
if ! python3 -c "import pytorch_msssim" 2>/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
    export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=$PWD/src${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
mkdir -p "$OUT" runs/study
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader; python3 -c "import torch; print('torch', torch.__version__)"; date -u; ls runs/study/runs 2>/dev/null | tr '\n' ' '; echo; } | tee "$OUT/machine.txt"
pack() { (cd runs/study && tar czf "$OUT/study.tgz.tmp" --exclude='*.pt' --exclude='tb' --exclude='runs/*/tb' . && mv "$OUT/study.tgz.tmp" "$OUT/study.tgz"); }
if [ "${BENCH_S:-0}" -gt 0 ]; then
    timeout "$BENCH_S" python3 benchmarks/dfd_training_speed.py --root .devdata/dfd_indoor --out /tmp/speed --steps 300 --concurrent 4 --mps 2>&1 | tee "$OUT/bench.txt"
    cp /tmp/speed/speed.md "$OUT/speed.md" 2>/dev/null
fi
if [ "${MPS:-0}" = 1 ] && command -v nvidia-cuda-mps-control >/dev/null; then
    nvidia-cuda-mps-control -d && echo "MPS started" | tee -a "$OUT/machine.txt"
fi
( while sleep 40; do pack; done ) &
packer=$!
timeout "${BUDGET_S:-500}" python3 scripts/dfd_cv.py --root .devdata/dfd_indoor --out runs/study "$@" 2>&1 | tee -a "$OUT/driver.txt"
kill $packer 2>/dev/null; pack
if [ -n "${PACK:-}" ]; then
    python3 scripts/pack_model.py runs/study/runs/"$PACK"/last.pt "$OUT" 2>&1 | tee -a "$OUT/driver.txt"
fi
[ "${MPS:-0}" = 1 ] && echo quit | nvidia-cuda-mps-control 2>/dev/null
nvidia-smi --query-gpu=memory.used --format=csv,noheader >> "$OUT/machine.txt"
