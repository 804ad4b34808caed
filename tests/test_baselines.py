"""Baselines (docs/baselines.md): DnCNN / IRCNN, depth-then-deconvolution, trivial references,
and the one-command comparison, all on tiny CPU inputs.

The shared model tester (tests/test_models.py) also runs over ``dncnn`` and ``ircnn``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

import twohded
from twohded.baselines import (
    DepthThenDeconvolution,
    TrivialBaseline,
    deconvolve,
    mean_depth,
    tune_regularisation,
)
from twohded.baselines.compare import main as compare_main
from twohded.baselines.deconvolution import LayeredBlur, _cameras
from twohded.config import load_config
from twohded.data import SyntheticScenes
from twohded.errors import InputError
from twohded.evaluate import evaluate_model
from twohded.losses import HybridLoss, LossConfig
from twohded.metrics import psnr
from twohded.models import ModelOutput, count_parameters
from twohded.optics import get_preset
from twohded.render import DefaultMode
from twohded.training import train

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs" / "baselines"

# The paper camera at 48 px blurs by at most 1 px; as if the sensor were 160 px wide, the
# same scene gets up to ~3.5 px of blur, enough for deconvolution to matter.
STRONG = get_preset("paper").camera.with_(pixel_pitch_m=0.036 / 160)
S = 48


@pytest.fixture(scope="module")
def scenes():
    """Three 48x48 built-in scenes (sharp image, depth) and their STRONG-camera blur."""
    ds = SyntheticScenes(None, "train", n=3, height=S, width=S, defocus="deferred", preset="paper", augment=False)
    sharp = torch.stack([ds[i]["aif"] for i in range(3)])
    depth = torch.stack([ds[i]["depth"] for i in range(3)])
    blurred = twohded.render_defocus(sharp, depth, STRONG).clamp(0, 1)
    return sharp, depth, blurred


def _mean_psnr(a, b) -> float:
    return sum(psnr(x, y) for x, y in zip(a, b)) / len(a)


# ------------------------------------------------------------------------------ DnCNN / IRCNN


@pytest.mark.parametrize("name, convs, bns, dilations, rf", [
    ("dncnn", 17, 15, [1] * 17, 35),
    ("ircnn", 7, 5, [1, 2, 3, 4, 3, 2, 1], 33),
])
def test_residual_cnn_architecture(name, convs, bns, dilations, rf):
    model = twohded.create_model(name)
    conv = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(conv) == convs and sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules()) == bns
    assert [c.dilation[0] for c in conv] == dilations and all(c.kernel_size == (3, 3) for c in conv)
    assert [c.out_channels for c in conv[:-1]] == [64] * (convs - 1) and conv[-1].out_channels == 3
    assert model.receptive_field == rf and model.outputs == ("aif",)
    assert count_parameters(model) == twohded.models.model_info(name).num_params


@pytest.mark.parametrize("name", ["dncnn", "ircnn"])
def test_residual_cnn_is_identity_at_init_and_residual(name):
    model = twohded.create_model(name)
    x = torch.rand(2, 3, 19, 26)
    out = model.train()(x)
    assert isinstance(out, ModelOutput) and out.depth is None
    assert torch.equal(out.aif, x)  # zero-initialised last layer: the input itself
    with torch.no_grad():
        model.body[-1].bias.fill_(-0.7)  # residual -0.7: output = input + 0.7
        assert torch.allclose(model.train()(x).aif, x + 0.7)  # raw in training mode
        assert model.eval()(x).aif.max() <= 1.0  # clamped in eval mode
    torch.manual_seed(0)
    he = twohded.create_model(name, zero_init=False)
    assert not torch.equal(he.train()(x).aif, x)
    with pytest.raises(InputError, match="zero_inti"):
        twohded.create_model(name, zero_inti=True)


def test_mse_loss_term():
    cfg = LossConfig(depth=False, charbonnier=False, ssim=False, mse=True, lam=1.0)
    assert cfg.uses_aif and not cfg.uses_depth and not LossConfig(charbonnier=False, ssim=False).uses_aif
    pred, target = torch.rand(2, 3, 16, 16), torch.rand(2, 3, 16, 16)
    out = HybridLoss(cfg)(ModelOutput(aif=pred), aif=target)
    torch.testing.assert_close(out.total, (pred - target).square().mean())
    assert set(out.parts) == {"deblur_mse", "deblur", "total"}


@pytest.mark.parametrize("name", ["dncnn", "ircnn"])
def test_baseline_config_trains_and_lowers_the_loss(tmp_path, name):
    """The shipped synthetic config, shrunk: the trainer lowers DnCNN's / IRCNN's L2 loss."""
    cfg = load_config(CONFIGS / f"{name}_synthetic.yaml", [
        "data.size=32", "data.options={n: 4, height: 32, width: 32}", "data.val_options={n: 2}",
        "train.epochs=3", "train.batch_size=2", "train.num_workers=0", "train.device=cpu", "train.progress=false",
        "train.ema_decay=null", "schedule.warmup_epochs=0", f"train.out_dir={tmp_path}", "train.val_every=3",
    ])
    assert cfg.model.name == name and cfg.loss.mse and not cfg.loss.charbonnier and cfg.train.best_metric == "psnr"
    result = train(cfg, verbose=False)
    losses = [h["loss"] for h in result.history]
    assert len(losses) == 3 and losses[-1] < losses[0], losses
    assert result.best_metric == "psnr" and result.metrics["psnr"] > 0
    from twohded.checkpoint import model_from_checkpoint

    assert model_from_checkpoint(result.run_dir).outputs == ("aif",)


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.name)
def test_baseline_configs_load(path):
    cfg = load_config(path, ["data.root=/data"] if "dfd" in path.name else [])
    assert cfg.name == path.stem
    model = twohded.models.model_info(cfg.model.name)
    if model.outputs == ("aif",):
        assert cfg.loss.uses_aif and cfg.loss.mse and cfg.train.best_metric == "psnr"
    if "dfd" in path.name:
        d = cfg.data
        assert (d.name, d.defocus, d.size, d.resize, d.train_split, d.val_split) == ("dfd", "real", 256, "crop", "train", "val")
    else:
        assert (cfg.data.name, cfg.data.preset, cfg.data.size) == ("synthetic", "paper", 256)


# ------------------------------------------------------------------------------ deconvolution


def test_layered_blur_is_the_renderer_and_its_transpose(scenes):
    sharp, depth, _blurred = scenes
    blur = LayeredBlur(depth, _cameras(STRONG, depth), DefaultMode(), chunk=5)
    assert blur.n_layers > 10
    torch.testing.assert_close(blur.forward(sharp), twohded.render_defocus(sharp, depth, STRONG), atol=2e-5, rtol=0)
    a, b = torch.rand_like(sharp), torch.rand_like(sharp)
    lhs, rhs = float((blur.forward(a) * b).double().sum()), float((a * blur.adjoint(b)).double().sum())
    assert math.isclose(lhs, rhs, rel_tol=1e-5)


def test_oracle_deconvolution_beats_the_blurred_input(scenes):
    """Renderer-blurred scenes (occlusions included), true depth: CG and RL restore several dB
    (measured: 28.7 -> 33.5 dB with CG, 31.8 dB with RL); the per-layer Wiener does not ring away."""
    sharp, depth, blurred = scenes
    before = _mean_psnr(blurred, sharp)
    cg = deconvolve(blurred, depth, STRONG, method="cg", reg=1e-4, iterations=15, chunk=16)
    rl = deconvolve(blurred, depth, STRONG, method="rl", iterations=15, chunk=16)
    wiener = deconvolve(blurred, depth, STRONG, method="wiener", reg=3e-2)
    assert cg.shape == blurred.shape and 0 <= float(cg.min()) and float(cg.max()) <= 1
    assert _mean_psnr(cg, sharp) > before + 3.5, (before, _mean_psnr(cg, sharp))
    assert _mean_psnr(rl, sharp) > before + 2.0, (before, _mean_psnr(rl, sharp))
    assert _mean_psnr(wiener, sharp) > before, (before, _mean_psnr(wiener, sharp))


def test_deconvolution_batched_equals_one_at_a_time(scenes):
    _sharp, depth, blurred = scenes
    both = deconvolve(blurred[:2], depth[:2], STRONG, method="cg", reg=1e-3, iterations=4)
    one = deconvolve(blurred[1], depth[1, 0], STRONG, method="cg", reg=1e-3, iterations=4)
    torch.testing.assert_close(one, both[1], atol=1e-4, rtol=0)


@pytest.mark.parametrize("blend", ["soft", "hard", "render"])
def test_wiener_restores_a_plane(scenes, blend):
    sharp = scenes[0]
    depth = torch.full((3, 1, S, S), 1.2)  # sigma 1.16 px: 25.7 dB blurred, 34.3 dB restored (measured)
    blurred = twohded.render_defocus(sharp, depth, STRONG)
    out = deconvolve(blurred, depth, STRONG, method="wiener", reg=1e-5, blend=blend)
    assert _mean_psnr(out, sharp) > _mean_psnr(blurred, sharp) + 5.0


def test_deconvolution_bad_input(scenes):
    _sharp, depth, blurred = scenes
    with pytest.raises(InputError, match="method"):
        deconvolve(blurred, depth, STRONG, method="magic")
    with pytest.raises(InputError, match="reg"):
        deconvolve(blurred, depth, STRONG, reg=-1.0)
    with pytest.raises(InputError, match="finite and > 0"):
        deconvolve(blurred, torch.zeros_like(depth), STRONG)
    with pytest.raises(InputError, match="does not match"):
        deconvolve(blurred, depth[..., :10], STRONG)
    with pytest.raises(InputError, match="preset"):
        deconvolve(blurred, depth, "no-such-camera")
    with pytest.raises(InputError, match="ground-truth depth"):
        DepthThenDeconvolution("oracle", STRONG)(blurred)
    with pytest.raises(InputError, match="depth output"):
        DepthThenDeconvolution(twohded.create_model("ircnn"), STRONG)


def test_oracle_through_evaluate_model():
    """The evaluation passes the true depth to a ``needs_depth`` model; no device needed."""
    test = SyntheticScenes(None, "test", n=2, height=S, width=S, size=(S, S), preset=STRONG, defocus="render")
    oracle = DepthThenDeconvolution("oracle", STRONG, method="cg", reg=1e-4, iterations=10, chunk=16)
    assert oracle.needs_depth and oracle.outputs == ("aif",) and count_parameters(oracle) == 0
    result = evaluate_model(oracle, test, dataset_name="synthetic", batch_size=2)
    assert result.count == 2 and not result.depth
    assert result.aif["psnr"] > result.input["psnr"] + 3.0, (result.aif, result.input)


def test_pipeline_with_a_depth_model():
    # a depth "model" that says everything is at the focus distance (2 m): no blur to undo
    pipeline = DepthThenDeconvolution(TrivialBaseline(2.0), "paper", method="wiener", reg=1e-3)
    assert not pipeline.needs_depth and pipeline.outputs == ("depth", "aif")
    x = torch.rand(2, 3, 32, 40)
    out = pipeline.eval()(x)
    assert out.depth.shape == (2, 1, 32, 40) and out.aif.shape == x.shape
    assert psnr(out.aif[0], x[0]) > 30.0


def test_tune_regularisation_prefers_a_working_value():
    ds = SyntheticScenes(None, "train", n=2, height=S, width=S, preset=STRONG, defocus="render", augment=False)
    best, scores = tune_regularisation(ds, STRONG, grid=(1e-4, 10.0), limit=2, method="wiener")
    assert best == 1e-4 and scores[1e-4] > scores[10.0]


def test_trivial_baseline_lives_in_one_place():
    from twohded import demo

    assert demo.TrivialBaseline is TrivialBaseline and demo.mean_depth is mean_depth
    ds = SyntheticScenes(None, "train", n=3, height=32, width=32, defocus="deferred", preset="paper")
    full = mean_depth(ds)
    assert 0.7 <= mean_depth(ds, limit=1) <= 10.0 and 0.7 <= full <= 10.0
    out = TrivialBaseline(full)(torch.rand(1, 3, 8, 8))
    assert torch.allclose(out.depth, torch.full_like(out.depth, full))


# ------------------------------------------------------------------------------ the comparison


def test_compare_quick_writes_the_table(tmp_path, capsys):
    """Every method on tiny synthetic scenes (random weights; a real dncnn checkpoint is picked up)."""
    from twohded.checkpoint import save_checkpoint

    torch.manual_seed(0)
    dn = twohded.create_model("dncnn")
    save_checkpoint(tmp_path / "runs" / "dncnn_synthetic" / "best.pt",
                    {"model_name": "dncnn", "model_options": {}, "model_state": dn.state_dict()})
    out = tmp_path / "cmp"
    rc = compare_main(["--quick", "--datasets", "synthetic", "--runs", str(tmp_path / "runs"), "--out", str(out), "--device", "cpu"])
    assert rc == 0, capsys.readouterr().err
    report = json.loads((out / "comparison.json").read_text())
    methods = report["datasets"]["synthetic"]["methods"]
    assert set(methods) == {"2hded", "2hded-depth", "dncnn", "ircnn", "deconv-wiener-oracle", "deconv-cg-oracle",
                            "deconv-wiener-2hded-depth", "deconv-cg-2hded-depth", "trivial"}
    assert "checkpoint" in methods["dncnn"]["note"] and "untrained" in methods["ircnn"]["note"]
    for name, m in methods.items():
        assert m["speed"]["images_per_s"] > 0 and m["parameters"] >= 0, name
    assert methods["2hded"]["parameters"] == 41_414_400 and methods["deconv-cg-oracle"]["parameters"] == 0
    assert methods["deconv-cg-2hded-depth"]["parameters"] == 24_212_544
    assert methods["deconv-cg-oracle"]["aif"]["psnr"] > 0 and methods["2hded-depth"]["depth"]["rmse"] > 0
    md = (out / "comparison.md").read_text()
    assert "--quick run" in md and "| method | RMSE (m) ↓" in md and "mean training depth" in md
    assert "defocused input as its own deblurring" in md and "Where 2HDED:NET wins" in md
    assert (out / "synthetic" / "dncnn" / "metrics.json").exists()


def test_compare_skips_missing_checkpoints(tmp_path, capsys):
    out = tmp_path / "cmp"
    rc = compare_main(["--datasets", "synthetic", "--methods", "dncnn,deconv-cg-2hded-depth,trivial", "--runs", str(tmp_path / "none"),
                       "--out", str(out), "--synthetic-n", "2", "--synthetic-size", "32", "--mean-depth-items", "2",
                       "--warmup", "0", "--speed-iters", "1", "--device", "cpu"])
    assert rc == 0, capsys.readouterr().err
    entry = json.loads((out / "comparison.json").read_text())["datasets"]["synthetic"]
    assert set(entry["methods"]) == {"trivial"}
    assert "no checkpoint at" in entry["skipped"]["dncnn"] and "dncnn_synthetic.yaml" in entry["skipped"]["dncnn"]
    assert "2hded-depth" in entry["skipped"]["deconv-cg-2hded-depth"]
    md = (out / "comparison.md").read_text()
    assert "Not evaluated" in md and "no verdict" in md
    assert compare_main(["--out", str(out), "--checkpoint", "nope"]) == 2


def test_compare_names_run_folders_from_a_given_configs_folder(tmp_path):
    """The comparison needs no repository checkout: configs come from --configs (the benchmark
    script passes its checkout's), else the run folders are named after the config files."""
    from twohded.baselines.compare import Settings, checkpoint_path

    bare = Settings(out=tmp_path, runs=tmp_path / "runs")
    assert checkpoint_path("dncnn", "synthetic", bare) == tmp_path / "runs" / "dncnn_synthetic"
    shipped = Settings(out=tmp_path, runs=tmp_path / "runs", configs=ROOT / "configs")
    assert checkpoint_path("2hded", "dfd", shipped) == tmp_path / "runs" / "dfd_real"
    own = tmp_path / "configs"
    (own / "baselines").mkdir(parents=True)
    (own / "baselines" / "dncnn_synthetic.yaml").write_text(f"base: {CONFIGS / 'dncnn_synthetic.yaml'}\nname: my_dncnn\n")
    mine = Settings(out=tmp_path, runs=tmp_path / "runs", configs=own)
    assert checkpoint_path("dncnn", "synthetic", mine) == tmp_path / "runs" / "my_dncnn"
