"""twohded.cuda_graph.CapturedGraph, the CUDA-graph helper of inference and training: its
bookkeeping on the CPU with stand-ins for the CUDA stream and graph calls (capture records the
calls; a replay is a no-op, so a static output stays as the capture left it)."""

from __future__ import annotations

import contextlib

import pytest
import torch
from torch import nn

import twohded.cuda_graph as cg
from twohded.training.graphs import GraphedStep


@pytest.fixture
def fake_cuda(monkeypatch):
    events: list[str] = []

    class Stream:
        def __init__(self, device=None):
            pass

        def wait_stream(self, other):
            events.append("wait")

    class Graph:
        def replay(self):
            events.append("replay")

    @contextlib.contextmanager
    def graph(g, capture_error_mode="global"):
        events.append(f"capture:{capture_error_mode}")
        yield

    monkeypatch.setattr(torch.cuda, "Stream", Stream)
    monkeypatch.setattr(torch.cuda, "stream", lambda s: contextlib.nullcontext())
    monkeypatch.setattr(torch.cuda, "current_stream", lambda device=None: Stream())
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: events.append("sync"))
    monkeypatch.setattr(torch.cuda, "CUDAGraph", Graph)
    monkeypatch.setattr(torch.cuda, "graph", graph)
    return events


def test_warm_up_hooks_capture_and_replay_order(fake_cuda):
    calls = []

    def fn(inputs):
        calls.append(inputs["x"].clone())
        return {"y": inputs["x"] * 2}

    x = torch.rand(1, 3, 4, 4).contiguous(memory_format=torch.channels_last)
    g = cg.CapturedGraph(fn, {"x": x}, warmup=2, after_warmup_call=lambda: fake_cuda.append("after"),
                         before_capture=lambda: fake_cuda.append("before"))
    assert len(calls) == 3  # two warm-up calls and the captured one
    assert fake_cuda == ["wait", "after", "after", "wait", "sync", "before", "capture:thread_local"]
    assert g.static_in["x"] is not x and torch.equal(g.static_in["x"], x)
    assert g.static_in["x"].is_contiguous(memory_format=torch.channels_last)  # the example's layout kept
    new = torch.rand(1, 3, 4, 4)
    out = g({"x": new})
    assert out is g.static_out and fake_cuda[-1] == "replay" and g.replays == 1
    assert torch.equal(g.static_in["x"], new)  # the replay reads the copied input


def test_graphed_training_step_drops_warm_up_gradients_and_restores_batchnorm(fake_cuda):
    from twohded.losses import HybridLoss
    from twohded.models import ModelOutput

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 1, 3, padding=1)
            self.bn = nn.BatchNorm2d(1)

        def forward(self, x):
            return ModelOutput(depth=self.bn(self.conv(x)) + 2.0, aif=None)

    torch.manual_seed(0)
    model = Net().train()
    before = model.bn.running_mean.clone()
    seen_grads = []
    step = GraphedStep(model, model, HybridLoss(), None, channels_last=True)
    real_run = step._run

    def run(batch):
        seen_grads.append(model.conv.weight.grad is None)
        return real_run(batch)

    step._run = run
    batch = {"image": torch.rand(2, 3, 8, 8), "depth": 1 + torch.rand(2, 1, 8, 8), "aif": torch.rand(2, 3, 8, 8),
             "mask": torch.ones(2, 1, 8, 8, dtype=torch.bool)}
    parts = step(batch)
    assert seen_grads == [True, True, True]  # every call starts from unset gradients
    # the warm-up calls' statistics were undone; only the captured call moved them
    once = Net().train()
    once.load_state_dict({**model.state_dict(), "bn.running_mean": before, "bn.num_batches_tracked": torch.tensor(0),
                          "bn.running_var": torch.ones(1)})
    once(batch["image"])
    assert torch.allclose(model.bn.running_mean, once.bn.running_mean)
    assert model.conv.weight.grad is not None and set(parts) >= {"total", "depth"}
    assert step.static["image"].is_contiguous(memory_format=torch.channels_last)
    assert step(batch) is parts and step.replays == 2 and fake_cuda.count("replay") == 2
    assert fake_cuda.count("capture:global") == 1
