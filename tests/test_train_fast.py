"""The fast training options on the CPU: ``train.preload`` (the split on the device, rendered
once, flips drawn per epoch) and ``train.cuda_graphs`` (refused off CUDA with a note); the
parity benchmark's script. The CUDA-graph step itself is measured on a GPU by
benchmarks/speed_benchmark.py and benchmarks/training_parity.py."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

from twohded import render_defocus
from twohded.data import build_dataset
from twohded.errors import InputError
from twohded.training import train
from twohded.training.graphs import graph_problem
from twohded.training.preload import DeviceData, preload_problem
from twohded.training.sampler import ShardedEpochSampler

from .test_train import tiny

ROOT = Path(__file__).resolve().parents[1]


def _dataset(**kw):
    opts = dict(size=32, defocus="deferred", preset="paper", n=6, height=32, width=32, seed=1)
    opts.update(kw)
    return build_dataset("synthetic", None, "train", **opts)


def test_preloaded_batches_follow_the_sampler_and_flip_all_tensors_together():
    ds = _dataset()
    sampler = ShardedEpochSampler(len(ds), batch_size=2, seed=1)
    data = DeviceData(ds, sampler, torch.device("cpu"), seed=1)
    assert data.n == 6 and ds.augment  # augmentation restored after loading
    stored = data.tensors
    flipped_any = False
    for epoch in range(3):
        batches = list(data.batches(epoch))
        assert len(batches) == sampler.steps_per_epoch == 3
        order = sampler.order(epoch)
        for k, b in enumerate(batches):
            assert b["image"].shape == (2, 3, 32, 32) and b["mask"].dtype == torch.bool
            for j, i in enumerate(order[2 * k:2 * k + 2]):
                flip = not torch.equal(b["depth"][j], stored["depth"][i])
                flipped_any |= flip
                for key in ("image", "depth", "aif", "mask"):
                    want = stored[key][i].flip(-1) if flip else stored[key][i]
                    assert torch.equal(b[key][j], want), (epoch, k, key)
    assert flipped_any
    # resuming mid-epoch gives the same remaining batches
    full, resumed = list(data.batches(1)), list(data.batches(1, start_step=1))
    assert all(torch.equal(a["image"], b["image"]) for a, b in zip(full[1:], resumed))


def test_preloaded_images_are_the_rendered_scenes():
    ds = _dataset()
    ds.augment = False
    item = ds[2]
    data = DeviceData(ds, ShardedEpochSampler(len(ds), 2), torch.device("cpu"))
    ds.augment = False
    want = render_defocus(item["aif"][None], item["render_depth"][None], "paper").clamp(0, 1)
    assert torch.allclose(data.tensors["image"][2], want[0], atol=1e-5)


def test_flipping_a_rendering_equals_rendering_the_flipped_scene():
    """What lets train.preload draw flips after rendering once: the blur kernels are symmetric."""
    g = torch.Generator().manual_seed(0)
    aif = torch.rand(2, 3, 40, 48, generator=g)
    depth = 1.0 + 8.0 * torch.rand(2, 1, 40, 48, generator=g)
    a = render_defocus(aif, depth, "paper").flip(-1)
    b = render_defocus(aif.flip(-1), depth.flip(-1), "paper")
    assert float((a - b).abs().max()) < 1e-4


def test_preload_refuses_random_crops():
    ds = _dataset(size=24, resize="crop")
    assert "random crop" in preload_problem(ds)
    with pytest.raises(InputError, match="train.preload"):
        DeviceData(ds, ShardedEpochSampler(len(ds), 2), torch.device("cpu"))


def test_training_with_preload_and_cuda_graphs_on_a_cpu(tmp_path, capsys):
    cfg = tiny(tmp_path, **{"train.preload": True, "train.cuda_graphs": True, "train.epochs": 2})
    result = train(cfg)
    out = capsys.readouterr().out
    assert "train.cuda_graphs off: CUDA graphs need a CUDA device" in out
    assert "train.preload: 4 training items on cpu" in out
    assert result.step == 4 and all(torch.isfinite(torch.tensor(result.metrics[k])) for k in ("loss", "rmse"))


def test_graph_problems():
    cpu, gpu = torch.device("cpu"), torch.device("cuda", 0)
    assert "CUDA" in graph_problem(cpu, False, "bf16")
    assert "DDP" in graph_problem(gpu, True, "bf16")
    assert "fp16" in graph_problem(gpu, False, "fp16")
    assert graph_problem(gpu, False, "bf16") is None


def test_training_parity_script_quick(tmp_path):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import training_parity
    finally:
        sys.path.pop(0)
    assert training_parity.main(["--quick", "--out", str(tmp_path), "--seeds", "0", "--jobs", "2"]) == 0
    result = json.loads((tmp_path / "parity.json").read_text())
    assert {(r["setting"], r["rc"]) for r in result["runs"]} == {("paper", 0), ("fast", 0)}
    assert [c["metric"] for c in result["comparison"]] == ["rmse", "abs_rel", "delta1", "psnr", "ssim"]
    assert (tmp_path / "parity.md").read_text().startswith("| setting | seed |")
