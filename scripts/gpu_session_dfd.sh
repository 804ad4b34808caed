#!/usr/bin/env bash
# The GPU session behind docs/dfd_results.md and the DFD half of docs/baselines.md, as run on the
# device machine (one H100): the nine DFD experiments (scripts/run_dfd_experiments.sh) with the
# DFD baselines' training alongside, then the DFD comparison (benchmarks/compare_baselines.py).
#   bash scripts/gpu_session_dfd.sh DFD_ROOT OUT_DIR
set -uo pipefail
ROOT=${1:?DFD root}; OUT=${2:?out dir}
export RUNS=${RUNS:-runs}
mkdir -p "$OUT/logs"
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee "$OUT/logs/gpu.txt"
python -c "import torch; print('torch', torch.__version__)" | tee -a "$OUT/logs/gpu.txt"
baselines() {
    for cfg in dncnn_dfd ircnn_dfd; do
        local t0=$SECONDS
        twohded train --config "configs/baselines/$cfg.yaml" "data.root=$ROOT" "train.out_dir=$RUNS" train.progress=false \
            > "$OUT/logs/$cfg.txt" 2>&1
        echo "$cfg: train rc=$?, $((SECONDS - t0)) s" | tee -a "$OUT/logs/timings.txt"
    done
}
export -f baselines
export ROOT OUT
EXTRA_LANE=baselines bash scripts/run_dfd_experiments.sh "$ROOT" "$OUT"
ck=()
for m in "2hded=dfd_real" "2hded-depth=dfd_real_depth" "dncnn=dncnn_dfd" "ircnn=ircnn_dfd"; do
    ck+=(--checkpoint "${m%%=*}@dfd=$RUNS/${m#*=}/last.pt")
done
python benchmarks/compare_baselines.py --datasets dfd --dfd-root "$ROOT" --runs "$RUNS" --dfd-preset dfd_indoor \
    --tune-items 4 "${ck[@]}" --out "$OUT/compare_dfd" 2>&1 | tee "$OUT/logs/compare_dfd.txt"
