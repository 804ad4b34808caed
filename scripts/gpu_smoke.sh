#!/bin/bash
# GPU smoke test of twohded training (run from the repo root on the device machine)
set -x
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
export PYTHONPATH=$PWD/src:/tmp/site PYTHONUNBUFFERED=1
python3 -c 'import torch; print(torch.__version__, torch.cuda.device_count(), torch.cuda.get_device_name(0), torch.cuda.is_bf16_supported())'
R=/tmp/runs
COMMON="train.out_dir=$R train.progress=false data.options.n=96 data.val_options.n=16 train.batch_size=8 train.num_workers=4 train.log_every=4"
# 1) one GPU: bf16, channels_last, deferred GPU rendering, EMA, clip, cosine (configs/synthetic.yaml)
time python3 -m twohded train --config configs/synthetic.yaml $COMMON train.epochs=3 --out $R/single
# 2) kill after step 15 (mid-epoch 2, checkpoint every 5 steps) and resume
TWOHDED_KILL_AT_STEP=15 python3 -m twohded train --config configs/synthetic.yaml $COMMON train.epochs=3 train.checkpoint_every_steps=5 --out $R/killed; echo "rc=$?"
time python3 -m twohded train --resume $R/killed
# 3) paper NYU-like recipe on synthetic data at 256 with the paper camera, d3net preset (slow renderer) for timing
time python3 -m twohded train --config configs/synthetic.yaml $COMMON train.epochs=1 data.preset=d3net_nyu --out $R/d3net
# 4) two GPUs, DDP (NCCL)
time python3 -m torch.distributed.run --nproc_per_node 2 -m twohded train --config configs/synthetic.yaml $COMMON train.epochs=2 --out $R/ddp
# 5) torch.compile (one GPU)
time timeout 300 python3 -m twohded train --config configs/synthetic.yaml $COMMON train.epochs=2 train.compile=true --out $R/compiled
for d in single killed d3net ddp compiled; do cp $R/$d/log.csv $OUT/$d.csv 2>/dev/null; done
nvidia-smi --query-gpu=name,memory.used --format=csv
