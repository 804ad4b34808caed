#!/usr/bin/env bash
# The synthetic half of docs/baselines.md, as run on the device machine (one H100): the four
# trained methods on the built-in scenes at 128x128 (paper camera), 3 epochs of 2,000 scenes
# (750 steps of batch 8) each, four at once, then the comparison on 100 held-out scenes.
#   bash scripts/gpu_session_synthetic.sh OUT_DIR
set -uo pipefail
OUT=${1:?out dir}
RUNS=${RUNS:-runs}
mkdir -p "$OUT/logs"
COMMON=(data.size=128 data.options.height=128 data.options.width=128 data.val_options.n=32 train.epochs=3
        schedule.warmup_epochs=0.5 "train.out_dir=$RUNS" train.progress=false)
for cfg in synthetic baselines/2hded_depth_synthetic baselines/dncnn_synthetic baselines/ircnn_synthetic; do
    name=$(basename "$cfg")
    ( t0=$SECONDS; twohded train --config "configs/$cfg.yaml" "${COMMON[@]}" > "$OUT/logs/$name.txt" 2>&1
      echo "$name: train rc=$?, $((SECONDS - t0)) s" | tee -a "$OUT/logs/timings.txt" ) &
done
wait
ck=()
for m in "2hded=synthetic" "2hded-depth=2hded_depth_synthetic" "dncnn=dncnn_synthetic" "ircnn=ircnn_synthetic"; do
    ck+=(--checkpoint "${m%%=*}@synthetic=$RUNS/${m#*=}/last.pt")
done
python benchmarks/compare_baselines.py --datasets synthetic --runs "$RUNS" --synthetic-size 128 --synthetic-n 100 \
    --tune-items 4 "${ck[@]}" --out "$OUT/compare_synthetic" 2>&1 | tee "$OUT/logs/compare_synthetic.txt"
