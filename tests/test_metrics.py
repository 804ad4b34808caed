"""Metric functions against hand computations and against scikit-image."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from twohded.metrics import DEPTH_KEYS, MetricAverager, depth_metrics, image_metrics, psnr, ssim

skmetrics = pytest.importorskip("skimage.metrics", reason="scikit-image is the independent reference (pip install -e .[test])")


# --- depth -----------------------------------------------------------------------------


def test_depth_metrics_by_hand():
    gt = torch.tensor([[1.0, 2.0], [4.0, 5.0]])
    pred = torch.tensor([[2.0, 2.0], [2.0, 5.0]])
    m = depth_metrics(pred, gt)
    # per pixel: diff = 1, 0, -2, 0; ratio max(p/g, g/p) = 2, 1, 2, 1
    assert m["pixels"] == 4
    assert m["rmse"] == pytest.approx(math.sqrt((1 + 0 + 4 + 0) / 4))
    assert m["abs_rel"] == pytest.approx((1 / 1 + 0 + 2 / 4 + 0) / 4)
    assert m["sq_rel"] == pytest.approx((1 / 1 + 0 + 4 / 4 + 0) / 4)
    ln2 = math.log(2)
    assert m["rmse_log"] == pytest.approx(math.sqrt((ln2**2 + 0 + ln2**2 + 0) / 4))
    assert m["log10"] == pytest.approx(2 * math.log10(2) / 4)
    assert m["delta1"] == pytest.approx(0.5)  # ratio 2 fails 1.25 and 1.5625
    assert m["delta2"] == pytest.approx(0.5)
    assert m["delta3"] == pytest.approx(0.5)  # 1.25^3 = 1.953 < 2: ratio 2 fails delta3 too


def test_depth_delta3_boundary():
    gt = torch.tensor([[1.0, 1.0, 1.0, 1.0]])
    pred = torch.tensor([[1.2, 1.5, 1.9, 2.0]])
    m = depth_metrics(pred, gt)
    assert m["delta1"] == pytest.approx(0.25)
    assert m["delta2"] == pytest.approx(0.5)
    assert m["delta3"] == pytest.approx(0.75)


def test_depth_metrics_perfect_and_shapes():
    g = torch.rand(1, 1, 8, 9) * 5 + 0.5
    m = depth_metrics(g.clone(), g[0])  # (1,1,H,W) vs (1,H,W)
    for k in ("rmse", "abs_rel", "sq_rel", "rmse_log", "log10"):
        assert m[k] == pytest.approx(0.0, abs=1e-12)
    assert m["delta1"] == m["delta2"] == m["delta3"] == 1.0
    assert list(m)[: len(DEPTH_KEYS)] == list(DEPTH_KEYS)
    with pytest.raises(ValueError, match="differ in size"):
        depth_metrics(torch.ones(3, 4), torch.ones(4, 3))


def test_depth_mask_range_and_clamp():
    gt = torch.tensor([[1.0, 2.0, 0.0, float("nan"), 20.0]])
    pred = torch.tensor([[100.0, -3.0, 5.0, 5.0, 5.0]])
    mask = torch.tensor([[True, True, True, True, True]])
    m = depth_metrics(pred, gt, mask, min_depth=1e-3, max_depth=10.0)
    # only the first two pixels are valid (gt 0, NaN, and > 10 m are dropped);
    # predictions are clamped to [1e-3, 10]: 10 and 1e-3
    assert m["pixels"] == 2
    assert m["rmse"] == pytest.approx(math.sqrt(((10 - 1) ** 2 + (1e-3 - 2) ** 2) / 2))
    assert m["abs_rel"] == pytest.approx((9 / 1 + (2 - 1e-3) / 2) / 2)
    # explicit mask
    mask2 = torch.tensor([[False, True, True, True, True]])
    assert depth_metrics(pred, gt, mask2, max_depth=10.0)["pixels"] == 1
    assert depth_metrics(pred, gt, torch.zeros_like(mask)) is None


def test_depth_against_numpy_reference():
    """The usual monodepth-style compute_errors, written independently in NumPy."""
    rng = np.random.default_rng(3)
    gt = rng.uniform(0.5, 9.0, (30, 40))
    pred = gt * rng.uniform(0.6, 1.6, gt.shape)
    thresh = np.maximum(gt / pred, pred / gt)
    ref = {
        "rmse": np.sqrt(((gt - pred) ** 2).mean()),
        "abs_rel": np.mean(np.abs(gt - pred) / gt),
        "sq_rel": np.mean(((gt - pred) ** 2) / gt),
        "rmse_log": np.sqrt(((np.log(gt) - np.log(pred)) ** 2).mean()),
        "log10": np.mean(np.abs(np.log10(gt) - np.log10(pred))),
        "delta1": (thresh < 1.25).mean(),
        "delta2": (thresh < 1.25**2).mean(),
        "delta3": (thresh < 1.25**3).mean(),
    }
    m = depth_metrics(torch.from_numpy(pred).float(), torch.from_numpy(gt).float())
    for k, v in ref.items():
        assert m[k] == pytest.approx(v, rel=1e-5, abs=1e-7), k


# --- images ----------------------------------------------------------------------------


def test_psnr_by_hand():
    a = torch.full((3, 16, 16), 0.5)
    assert psnr(a + 0.1, a) == pytest.approx(20.0)  # MSE 0.01
    assert psnr(a, a) == pytest.approx(100.0)  # floored MSE: finite
    b = a.clone()
    b[0, 0, 0] = 0.5 + 0.8  # one pixel off by 0.8 of 768
    assert psnr(b, a) == pytest.approx(10 * math.log10(768 / 0.64))


def test_ssim_by_hand_constant_images():
    # constant images: variances and covariance vanish, SSIM = (2ab + C1) / (a^2 + b^2 + C1)
    a, b = 0.3, 0.6
    c1 = 0.01**2
    expected = (2 * a * b + c1) / (a * a + b * b + c1)
    x, y = torch.full((3, 20, 20), a), torch.full((3, 20, 20), b)
    assert ssim(x, y) == pytest.approx(expected)
    assert ssim(x, y, window="uniform") == pytest.approx(expected)
    r = torch.rand(3, 20, 20)
    assert ssim(r, r) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="window"):
        ssim(torch.rand(3, 8, 8), torch.rand(3, 8, 8))


@pytest.mark.parametrize("shape", [(3, 48, 64), (3, 37, 53), (1, 40, 41)])
def test_image_metrics_match_scikit_image(shape):
    g = torch.Generator().manual_seed(sum(shape))
    # a smooth target and a blurred, noisy version of it: a realistic SSIM range
    pool = lambda x: torch.nn.functional.avg_pool2d(x[None], 5, 1, 2, count_include_pad=False)[0]  # noqa: E731
    target = pool(pool(torch.rand(shape, generator=g)))
    target = (target - target.min()) / (target.max() - target.min())
    pred = (pool(target) + 0.05 * torch.randn(shape, generator=g)).clamp(0, 1)
    p, t = pred.permute(1, 2, 0).double().numpy(), target.permute(1, 2, 0).double().numpy()
    ref_g = skmetrics.structural_similarity(
        p, t, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1.0, channel_axis=2
    )
    ref_u = skmetrics.structural_similarity(p, t, data_range=1.0, channel_axis=2)
    ref_psnr = skmetrics.peak_signal_noise_ratio(t, p, data_range=1.0)
    m = image_metrics(pred, target)
    assert 0.2 < m["ssim"] < 0.99
    assert m["ssim"] == pytest.approx(ref_g, abs=1e-6)
    assert m["psnr"] == pytest.approx(ref_psnr, abs=1e-6)
    assert image_metrics(pred, target, ssim_window="uniform")["ssim"] == pytest.approx(ref_u, abs=1e-6)


def test_image_metrics_clamp_and_batch_dim():
    t = torch.rand(1, 3, 32, 32)
    over = t.clone()
    over[..., :4, :4] = 1.7  # clamped to 1 first
    m1 = image_metrics(over, t)
    m2 = image_metrics(over.clamp(0, 1)[0], t[0])
    assert m1 == m2


# --- averaging -------------------------------------------------------------------------


def test_metric_averager():
    avg = MetricAverager()
    avg.add({"rmse": 1.0, "pixels": 10})
    avg.add(None)
    avg.add({"rmse": 3.0, "psnr": float("nan"), "pixels": 5})
    avg.add({"psnr": 30.0})
    out = avg.mean()
    assert out["rmse"] == 2.0  # over the two images that have it
    assert out["psnr"] == 30.0  # NaN ignored
    assert out["pixels"] == 15  # summed
    assert len(avg) == 3 and avg.skipped == 1
