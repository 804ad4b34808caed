"""The render specification (twohded.render_spec.RenderSpec): stated once, used everywhere.

The first four groups are regression tests of issue 13's bugs; each failed before the render
specification existed (the renderer's settings travelled inside the batch as ``item["preset"]``
and were read back by ``render_batch``).
"""

import json

import numpy as np
import pytest
import torch
from torch.utils.data import default_collate

from twohded import render_defocus
from twohded.cli import main
from twohded.data import SyntheticScenes, render_batch
from twohded.data.cache import PreparedDataset, prepare_cache
from twohded.errors import InputError
from twohded.io import read_depth, read_image
from twohded.models import DefocusModel, ModelOutput
from twohded.optics import D3NET_NYU, PRESETS
from twohded.render import D3NetMode, DefaultMode

SCENES = dict(n=2, height=32, width=40, augment=False)


class _Identity(DefocusModel):
    """A stand-in model: its all-in-focus output is its input image (so validation's PSNR
    measures the rendered input against the sharp target)."""

    outputs = ("aif",)

    def forward(self, image):
        return ModelOutput(depth=None, aif=image)


def _validation_psnr(ds) -> float:
    """The training loop's validation (which renders deferred batches) on ``ds``."""
    from twohded.losses import HybridLoss
    from twohded.training.validation import validate

    loader = torch.utils.data.DataLoader(ds, batch_size=len(ds))
    return validate(_Identity(), loader, HybridLoss(), torch.device("cpu"))["psnr"]


def _mean_psnr(images, ds) -> float:
    from twohded.metrics import image_metrics

    return float(np.mean([image_metrics(images[i], ds[i]["aif"])["psnr"] for i in range(len(ds))]))


def _deferred_batch(ds):
    return default_collate([ds[i] for i in range(len(ds))])


def _reference(ds, preset, mode):
    """Each item's aif rendered directly with ``render_defocus`` (its own depth, no resize)."""
    items = [ds[i] for i in range(len(ds))]
    return torch.stack([render_defocus(it["aif"], it["render_depth"], preset, mode=mode).clamp(0, 1) for it in items])


# --- bug 1: render_mode ignored in deferred mode ------------------------------------------------

def test_render_mode_is_kept_in_deferred_mode():
    """Bug: ``SyntheticScenes(defocus="deferred", preset="d3net_nyu", render_mode="default")``
    rendered the d3net image (render_batch never saw render_mode)."""
    ds = SyntheticScenes(None, "test", defocus="deferred", preset="d3net_nyu", render_mode="default", **SCENES)
    expected = _mean_psnr(_reference(ds, "d3net_nyu", "default"), ds)
    assert abs(expected - _mean_psnr(_reference(ds, "d3net_nyu", "d3net"), ds)) > 0.1
    assert _validation_psnr(ds) == pytest.approx(expected, abs=1e-4)  # the training loop's path
    assert ds.render_spec.mode == DefaultMode()
    out = render_batch(_deferred_batch(ds), ds.render_spec)
    torch.testing.assert_close(out["image"], _reference(ds, "d3net_nyu", "default"), atol=1e-6, rtol=0)
    d3net = _reference(ds, "d3net_nyu", "d3net")
    assert (out["image"] - d3net).abs().max() > 1e-3  # the two renderers do differ here
    eager = SyntheticScenes(None, "test", defocus="render", preset="d3net_nyu", render_mode="default", **SCENES)
    torch.testing.assert_close(out["image"], torch.stack([eager[i]["image"] for i in range(2)]), atol=1e-6, rtol=0)


def test_prepare_cache_uses_the_datasets_render_mode(tmp_path):
    """Bug: the library's prepare_cache rendered deferred datasets with the preset's default mode."""
    ds = SyntheticScenes(None, "test", defocus="deferred", preset="d3net_nyu", render_mode="default", **SCENES)
    prepare_cache({"test": ds}, tmp_path / "c", {"x": 1}, device="cpu", progress=False)
    cached = PreparedDataset(tmp_path / "c", "test")
    images = torch.stack([cached[i]["image"] for i in range(2)])
    torch.testing.assert_close(images, _reference(ds, "d3net_nyu", "default"), atol=0.5 / 255 + 1e-6, rtol=0)


# --- bug 2: twohded prepare --mode ignored -------------------------------------------------------

def _prepare(out, mode):
    code = main(["prepare", "synthetic", "--out", str(out), "--split", "test", "--n", "2", "--height", "32",
                 "--width", "40", "--preset", "d3net_nyu", "--mode", mode, "--device", "cpu", "--workers", "0",
                 "--no-progress"])
    assert code == 0
    return torch.stack([PreparedDataset(out, "test")[i]["image"] for i in range(2)])


def test_prepare_mode_option_reaches_the_samples(tmp_path, capsys):
    """Bug: ``twohded prepare --mode default`` recorded the mode in the manifest but wrote samples
    byte-identical to a ``--mode d3net`` cache."""
    default = _prepare(tmp_path / "default", "default")
    d3net = _prepare(tmp_path / "d3net", "d3net")
    assert json.loads((tmp_path / "default" / "manifest.json").read_text())["settings"]["mode"] == "default"
    assert not torch.equal(default, d3net)
    ds = SyntheticScenes(None, "test", defocus="deferred", preset="d3net_nyu", **SCENES)
    tol = dict(atol=0.5 / 255 + 1e-6, rtol=0)
    torch.testing.assert_close(default, _reference(ds, "d3net_nyu", "default"), **tol)
    torch.testing.assert_close(d3net, _reference(ds, "d3net_nyu", "d3net"), **tol)


# --- bug 3: a Camera object in deferred mode -----------------------------------------------------

def test_camera_object_works_in_deferred_mode(tmp_path):
    """Bug: a :class:`Camera` worked for ``render_defocus`` but a deferred dataset built with one
    failed when its batch was rendered (``InputError: rendering defocus needs a camera preset``),
    since only preset *names* travelled in the batch."""
    cam = D3NET_NYU.with_(focus_m=1.5)
    ds = SyntheticScenes(None, "test", defocus="deferred", preset=cam, **SCENES)
    assert _validation_psnr(ds) == pytest.approx(_mean_psnr(_reference(ds, cam, None), ds), abs=1e-4)
    prepare_cache({"test": ds}, tmp_path / "c", {"x": 1}, device="cpu", progress=False)
    cached = torch.stack([PreparedDataset(tmp_path / "c", "test")[i]["image"] for i in range(2)])
    torch.testing.assert_close(cached, _reference(ds, cam, None), atol=0.5 / 255 + 1e-6, rtol=0)
    assert ds.render_spec.camera is cam and ds.render_spec.mode == DefaultMode()  # a bare camera: default mode
    out = render_batch(_deferred_batch(ds), ds.render_spec)  # the training loop's path
    torch.testing.assert_close(out["image"], _reference(ds, cam, None), atol=1e-6, rtol=0)


# --- bug 4: twohded render --pixel-pitch-um left the d3net mode ----------------------------------

def test_render_pixel_pitch_keeps_the_presets_mode(tmp_path, capsys):
    """Bug: ``twohded render --preset d3net_nyu --pixel-pitch-um 5.6`` returned a bare Camera,
    which renders in the default mode, while ``--focus-m`` kept d3net's mode."""
    from PIL import Image

    rng = np.random.default_rng(0)
    Image.fromarray((rng.random((40, 56, 3)) * 255).astype(np.uint8)).save(tmp_path / "rgb.png")
    depth_mm = np.full((40, 56), 1000, np.uint16)
    depth_mm[:, 28:] = 4000
    Image.fromarray(depth_mm).save(tmp_path / "depth.png")
    args = ["render", "--image", str(tmp_path / "rgb.png"), "--depth", str(tmp_path / "depth.png"), "--preset", "d3net_nyu"]
    assert main(args + ["--pixel-pitch-um", "5.6", "--out", str(tmp_path / "pitch.npy")]) == 0
    assert main(args + ["--pixel-pitch-um", "5.6", "--mode", "default", "--out", str(tmp_path / "default.npy")]) == 0
    image, depth = read_image(tmp_path / "rgb.png"), read_depth(tmp_path / "depth.png")
    expected = render_defocus(image, depth, "d3net_nyu").permute(1, 2, 0).numpy()  # 5.6 um is d3net's pitch
    np.testing.assert_allclose(np.load(tmp_path / "pitch.npy"), expected, atol=1e-6)
    assert np.abs(np.load(tmp_path / "default.npy") - expected).max() > 1e-3


# --- the specification itself --------------------------------------------------------------------

def test_resolve_validates_once_and_keeps_the_presets_mode():
    from twohded.render_spec import RenderSpec

    spec = RenderSpec.resolve("d3net_nyu")
    assert spec.camera is PRESETS["d3net_nyu"] and spec.mode == D3NetMode() and spec.blur_at == "source"
    assert RenderSpec.resolve("paper").mode == DefaultMode()
    assert RenderSpec.resolve(spec) is spec
    changed = RenderSpec.resolve(spec, "default", "output")
    assert (changed.mode, changed.blur_at, changed.camera) == (DefaultMode(), "output", spec.camera)
    for bad, words in ((("nope",), "unknown preset"), (("paper", "fast"), "unknown render mode"),
                       (("paper", None, "sensor"), "blur_at"), ((None,), "needs a camera preset")):
        with pytest.raises(InputError, match=words):
            RenderSpec.resolve(*bad)
    with pytest.raises(InputError, match="unknown render mode"):  # at the dataset constructor, not at render time
        SyntheticScenes(None, "test", defocus="deferred", render_mode="fast", **SCENES)


def test_deferred_items_carry_only_per_item_tensors():
    ds = SyntheticScenes(None, "test", defocus="deferred", preset="syndof", **SCENES)
    item = ds[0]
    assert set(item) == {"image", "depth", "aif", "mask", "name", "render_depth", "render_seed", "pixel_scale"}
    assert all(isinstance(v, torch.Tensor) for k, v in item.items() if k != "name")
    with pytest.raises(InputError, match="render specification"):
        render_batch(_deferred_batch(ds), None)
