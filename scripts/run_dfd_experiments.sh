#!/usr/bin/env bash
# Every DFD experiment of docs/dfd_results.md on one GPU: trains each config (four lanes
# at once: DenseNet training at batch 8 leaves an H100 mostly idle), evaluates each run's LAST
# checkpoint (no selection on the validation scenes) on the 11 validation scenes with the
# standard protocol, and writes the results table.
#
#   bash scripts/run_dfd_experiments.sh /path/to/dfd_indoor OUT_DIR [key=value overrides...]
#
# OUT_DIR gets logs/<run>.txt, runs/<run>/{config.yaml,log.csv}, eval/<run>/metrics.{json,md}
# (+ figures for dfd_real), results.md / results.json. Checkpoints stay in $RUNS (default runs/).
set -uo pipefail
ROOT=${1:?usage: run_dfd_experiments.sh DFD_ROOT OUT_DIR [overrides]}
OUT=${2:?usage: run_dfd_experiments.sh DFD_ROOT OUT_DIR [overrides]}
shift 2
EXTRA=("$@")
RUNS=${RUNS:-runs}
EVAL_ARGS=${EVAL_ARGS:-}   # e.g. "--limit 1" for a smoke test
mkdir -p "$OUT/logs" "$OUT/eval" "$OUT/runs"

train() {  # train CONFIG [overrides]
    local name=$1; shift
    local t0=$SECONDS
    twohded train --config "configs/$name.yaml" "data.root=$ROOT" "train.out_dir=$RUNS" train.progress=false \
        "${EXTRA[@]}" "$@" > "$OUT/logs/$name.txt" 2>&1
    local rc=$?
    echo "$name: train rc=$rc, $((SECONDS - t0)) s" | tee -a "$OUT/logs/timings.txt"
    mkdir -p "$OUT/runs/$name"
    cp "$RUNS/$name/config.yaml" "$RUNS/$name/log.csv" "$OUT/runs/$name/" 2>/dev/null
}

evaluate() {  # evaluate RUN [evaluate options]
    local name=$1; shift
    twohded evaluate --checkpoint "$RUNS/$name/last.pt" --data dfd --root "$ROOT" --split val \
        --out "$OUT/eval/$name" --overwrite --no-progress $EVAL_ARGS "$@" > "$OUT/logs/eval_$name.txt" 2>&1
    echo "$name: evaluate rc=$?" | tee -a "$OUT/logs/timings.txt"
}

run() {  # run CONFIG [train overrides]: train, then evaluate on the validation scenes
    local name=$1
    train "$@"
    case $name in
        dfd_real) evaluate "$name" --figures 6 ;;
        dfd_f8_depth) evaluate "$name" -O defocus=none ;;
        *) evaluate "$name" ;;
    esac
}

lane_a() { run dfd_real; run dfd_real_depth; run dfd_real_l1_charb; }
lane_b() { run dfd_sim2real; run dfd_sim2real_ft "model.init_checkpoint=$RUNS/dfd_sim2real/last.pt"; }
lane_c() { run dfd_synth_pretrain; run dfd_synth_ft "model.init_checkpoint=$RUNS/dfd_synth_pretrain/last.pt"; }
lane_d() { run dfd_real_aif; run dfd_f8_depth; }

lane_a & lane_b & lane_c & lane_d &
${EXTRA_LANE:-true} &   # optional extra work in parallel (e.g. the baselines' training)
wait

python scripts/dfd_results_table.py "$OUT" | tee "$OUT/results.md"
