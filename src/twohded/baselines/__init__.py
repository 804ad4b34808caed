"""Baselines evaluated in the same harness as 2HDED:NET (docs/baselines.md).

* learned: ``dncnn`` and ``ircnn`` (registered models, :mod:`twohded.models.dncnn`,
  :mod:`twohded.models.ircnn`), ``2hded-depth`` (the depth-only, D3-Net-like variant);
* classical: :class:`DepthThenDeconvolution` (depth first, then non-blind, layered Wiener
  deconvolution with the renderer's kernels; oracle or predicted depth);
* trivial: :class:`TrivialBaseline` (mean training depth; the input as its own deblurring).

``benchmarks/compare_baselines.py`` runs them all and writes the comparison table.
"""

from __future__ import annotations

from .deconvolution import (
    DepthThenDeconvolution,
    deconvolve,
    layer_decomposition,
    tune_regularisation,
)
from .trivial import TrivialBaseline, mean_depth

__all__ = [
    "DepthThenDeconvolution",
    "TrivialBaseline",
    "deconvolve",
    "layer_decomposition",
    "mean_depth",
    "tune_regularisation",
]
