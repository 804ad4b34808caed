#!/usr/bin/env bash
# The "your own camera" workflow (README) on a camera the program did not know: DFD indoor's
# DSLR at f/2.8, as a user would meet it (issue 16).
#   (a) calibrate on 5 training triplets only, and on all 70 (CPU work);
#   (b) pre-train with configs/own_camera.yaml on synthetic scenes rendered with the
#       5-triplet camera (no real photo), evaluate on the 11 real validation photos;
#   (c) fine-tune that model on the 70 real training photos (configs/dfd_real.yaml's budget),
#       evaluate;
#   (d) the depth table, with the mean-depth reference.
#
#   bash scripts/own_camera_dfd.sh DFD_ROOT OUT_DIR [a|b|c|d|all] [train overrides...]
#
# OUT_DIR gets dfd5/ and dfd70/ (camera.yaml, calibration.md/.json, residuals.png),
# calibration.md (side by side), logs/, eval/<run>/metrics.json, depth.md. Checkpoints stay
# in $RUNS (default runs/). Steps b-d need a GPU for the full budget.
set -euo pipefail
ROOT=${1:?usage: own_camera_dfd.sh DFD_ROOT OUT_DIR [a|b|c|d|all] [overrides]}
OUT=${2:?usage: own_camera_dfd.sh DFD_ROOT OUT_DIR [a|b|c|d|all] [overrides]}
STEP=${3:-all}
shift $(( $# < 3 ? $# : 3 ))
EXTRA=("$@")
RUNS=${RUNS:-runs}
TWOHDED=${TWOHDED:-twohded}
mkdir -p "$OUT/logs" "$OUT/eval"

step_a() {
    $TWOHDED camera calibrate --dfd "$ROOT" --limit 5 --name dfd5 --out "$OUT/dfd5" 2>&1 | tee "$OUT/logs/calibrate_dfd5.txt"
    $TWOHDED camera calibrate --dfd "$ROOT" --refine-scenes 35 --name dfd70 --out "$OUT/dfd70" 2>&1 | tee "$OUT/logs/calibrate_dfd70.txt"
    python scripts/own_camera_tables.py calibration "$OUT" | tee "$OUT/calibration.md"
}

evaluate() {  # evaluate RUN
    $TWOHDED evaluate --checkpoint "$RUNS/$1/last.pt" --data dfd --root "$ROOT" --split val \
        --out "$OUT/eval/$1" --overwrite --no-progress > "$OUT/logs/eval_$1.txt" 2>&1
}

step_b() {  # synthetic scenes at 256x256 with the 5-triplet camera (blur in the 645x432 frames' pixels), DFD's depths
    $TWOHDED train --config configs/own_camera.yaml name=own_camera_dfd5 "data.preset=$OUT/dfd5/camera.yaml" \
        "data.options={n: 2400, height: 256, width: 256, depth_range_m: [0.25, 10.0]}" \
        "train.out_dir=$RUNS" train.progress=false "${EXTRA[@]}" > "$OUT/logs/own_camera_dfd5.txt" 2>&1
    evaluate own_camera_dfd5
}

step_c() {  # fine-tune on the 70 real f/2.8 training photos
    $TWOHDED train --config configs/dfd_real.yaml name=own_camera_dfd5_ft "data.root=$ROOT" \
        "model.init_checkpoint=$RUNS/own_camera_dfd5/last.pt" "train.out_dir=$RUNS" train.progress=false \
        "${EXTRA[@]}" > "$OUT/logs/own_camera_dfd5_ft.txt" 2>&1
    evaluate own_camera_dfd5_ft
}

step_d() {
    python scripts/own_camera_tables.py depth "$OUT" --root "$ROOT" | tee "$OUT/depth.md"
}

case $STEP in
    a) step_a ;; b) step_b ;; c) step_c ;; d) step_d ;;
    all) step_a; step_b; step_c; step_d ;;
    *) echo "unknown step $STEP (a, b, c, d or all)" >&2; exit 2 ;;
esac
