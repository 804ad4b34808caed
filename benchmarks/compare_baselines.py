#!/usr/bin/env python
"""Every baseline next to 2HDED:NET, on the same data, through the same ``twohded evaluate``.

    python benchmarks/compare_baselines.py --dfd-root ../shared/data/dfd_indoor --runs runs --out results/baselines
    python benchmarks/compare_baselines.py --quick --dfd-root ../shared/data/dfd_indoor --out /tmp/cmp   # CI plumbing

Evaluates on the DFD indoor validation split (real f/2.8 -> f/8, whole frames) and on held-out
built-in synthetic scenes (256x256, paper camera): 2HDED:NET, the depth-only 2HDED:NET
(D3-Net-like), DnCNN and IRCNN retrained as deblurring networks, depth-then-deconvolution
(layered Wiener and occlusion-aware CG, with the true depth as an oracle and with 2hded-depth's
prediction), the mean training depth and the input as its own deblurring. Trained methods are
read from RUNS/<config name> (configs/dfd_real.yaml, configs/synthetic.yaml,
configs/baselines/*.yaml) and skipped, with a note, when missing. Writes OUT/comparison.md and
OUT/comparison.json (+ each method's metrics). Details: docs/baselines.md and
``python benchmarks/compare_baselines.py --help``.
"""

from __future__ import annotations

import sys
from pathlib import Path

from twohded.baselines.compare import main

if __name__ == "__main__":
    sys.exit(main(default_configs=Path(__file__).resolve().parents[1] / "configs"))
