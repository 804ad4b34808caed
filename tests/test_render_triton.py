"""The fused Triton renderer kernels (twohded.render_triton) against the PyTorch path.

Triton decides at ``@triton.jit`` time whether kernels run in its CPU interpreter, so the
comparison runs in one subprocess with ``TRITON_INTERPRET=1`` set before triton is imported;
it prints the largest differences as JSON and the tests below assert on them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import twohded
from twohded.errors import InputError

triton = pytest.importorskip("triton", reason="triton is not installed (pip install 'twohded[fast]')")

SRC = Path(__file__).resolve().parents[1] / "src"

# Runs in the subprocess: chunk-level and whole-render comparisons, small CPU tensors.
COMPARE = r"""
import json, os
assert os.environ["TRITON_INTERPRET"] == "1"
import torch, twohded
from twohded import render, render_triton

def maxdiff(a, b):
    return max(float((x - y).abs().max()) for x, y in zip(a, b))

out = {}
g = torch.Generator().manual_seed(0)
for name, (c, sigmas, dilate) in {
    "chunk_rgb_k9": (3, [0.0, 1.0, 2.5, 0.7, 3.0, 1.2], False),
    "chunk_rgb_k9_dilated": (3, [0.0, 1.0, 2.5, 0.7, 3.0, 1.2], True),
    "chunk_grey_delta": (1, [0.0] * 6, False),
}.items():
    image = torch.rand(2, c, 19, 37, generator=g)
    index = torch.randint(-1, 3, (2, 1, 19, 37), generator=g)
    masks = index == torch.arange(3)[None, :, None, None]
    radius = 4 if max(sigmas) > 0 else 0
    taps = render.gaussian_taps(torch.tensor(sigmas), radius, True).view(2, 3, -1)
    transmit = torch.rand(2, 1, 19, 37, generator=g)
    args = (image, masks, taps, transmit)
    ref = render._composite_chunk(*args, "zeros", dilate, index >= 0)
    got = render_triton.composite_chunk(*args, dilate, index >= 0)
    out[name] = maxdiff(ref, got)

image = torch.rand(2, 3, 20, 28, generator=g)
cols = torch.arange(28)  # steps between planes: few layers per tile keep the interpreter fast
d0 = torch.where(cols < 9, 1.0, torch.where(cols < 19, 1.3, 2.0)).repeat(20, 1)
depth = torch.stack([d0, torch.where(cols < 14, 1.2, 1.25).repeat(20, 1)])
d3net_like = render.D3NetMode(kernel_size=9)  # zero padding, dilation, MATLAB taps; 9x9 for speed
for mode, preset in ((d3net_like, "d3net_nyu"), (render.DefaultMode(), "paper")):
    for batch in (1, 2):  # batch 1 on the CPU may take the per-layer-box path
        args = (image[:batch], depth[:batch, None], preset, mode)
        ref = twohded.render_defocus(*args, tile=16)
        got = twohded.render_defocus(*args, tile=16, backend="triton")
        out[f"render_{mode.name}_b{batch}"] = float((ref - got).abs().max())
print(json.dumps(out))
"""

CASES = [
    "chunk_rgb_k9",
    "chunk_rgb_k9_dilated",
    "chunk_grey_delta",
    "render_d3net_b1",
    "render_d3net_b2",
    "render_default_b1",
    "render_default_b2",
]


@pytest.fixture(scope="module")
def interpreter_diffs() -> dict:
    env = {**os.environ, "TRITON_INTERPRET": "1", "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    done = subprocess.run([sys.executable, "-c", COMPARE], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("case", CASES)
def test_triton_kernels_match_torch_in_the_interpreter(interpreter_diffs, case):
    assert interpreter_diffs[case] <= 1e-5, interpreter_diffs


def test_triton_backend_is_refused_on_the_cpu_without_the_interpreter(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    img, depth = torch.rand(3, 8, 8), torch.ones(8, 8)
    with pytest.raises(InputError, match="TRITON_INTERPRET=1"):
        twohded.render_defocus(img, depth, "paper", backend="triton")


def test_unknown_backend_is_rejected():
    with pytest.raises(InputError, match="unknown render backend"):
        twohded.render_defocus(torch.rand(3, 8, 8), torch.ones(8, 8), "paper", backend="cuda")


def test_default_backend_is_torch():
    img, depth = torch.rand(3, 12, 16), torch.linspace(0.8, 3.0, 16).repeat(12, 1)
    a = twohded.render_defocus(img, depth, "paper")
    b = twohded.render_defocus(img, depth, "paper", backend="torch")
    assert torch.equal(a, b)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU on this machine")
def test_triton_matches_torch_on_the_gpu():
    g = torch.Generator().manual_seed(0)
    img = torch.rand(2, 3, 96, 128, generator=g).cuda()
    depth = torch.linspace(0.7, 8.0, 128).repeat(2, 1, 96, 1).cuda()
    for mode, preset in (("d3net", "d3net_nyu"), ("default", "paper")):
        ref = twohded.render_defocus(img, depth, preset, mode)
        got = twohded.render_defocus(img, depth, preset, mode, backend="triton")
        assert float((ref - got).abs().max()) <= 1e-5
