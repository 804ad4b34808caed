"""The hybrid loss, eq. (1)-(7): each term against a hand computation on tiny tensors."""

from __future__ import annotations

import math

import pytest
import torch

from twohded.errors import InputError
from twohded.losses import (
    HybridLoss,
    LossConfig,
    charbonnier,
    depth_valid_mask,
    gradient_loss,
    masked_l1,
    ssim_loss,
)
from twohded.models import ModelOutput


def _t(rows) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float32).view(1, 1, len(rows), len(rows[0]))


# pred / gt on a 2x3 grid; gt 0 marks a missing pixel
PRED = _t([[1.0, 2.0, 4.0], [0.5, 1.0, 3.0]])
GT = _t([[1.5, 2.0, 0.0], [1.0, 2.0, 1.0]])
# residual R = pred - gt on valid pixels:  [[-0.5, 0, x], [-0.5, -1, 2]]


def test_l1_hand_computed_and_masked():
    # valid: 5 pixels, |R| = 0.5 + 0 + 0.5 + 1 + 2 = 4
    assert masked_l1(PRED, GT).item() == pytest.approx(4.0 / 5)
    # explicit mask overrides the default (only the first row)
    mask = torch.tensor([[True, True, True], [False, False, False]]).view(1, 1, 2, 3)
    # row 1: pixel (0,2) has gt 0 but the mask says valid -> |4 - 0| = 4
    assert masked_l1(PRED, GT, mask).item() == pytest.approx((0.5 + 0 + 4.0) / 3)
    # NaN ground truth is invalid and does not poison the loss or its gradient
    gt = GT.clone()
    gt[0, 0, 0, 0] = float("nan")
    pred = PRED.clone().requires_grad_(True)
    loss = masked_l1(pred, gt)
    loss.backward()
    assert loss.item() == pytest.approx(3.5 / 4)
    assert torch.isfinite(pred.grad).all() and pred.grad[0, 0, 0, 0] == 0


def test_l1_three_dim_target_and_no_valid_pixel():
    assert masked_l1(PRED, GT[:, 0]).item() == pytest.approx(0.8)
    zero = masked_l1(PRED, torch.zeros_like(GT))
    assert zero.item() == 0.0


def test_gradient_hand_computed():
    # R = [[-0.5, 0, x], [-0.5, -1, 2]], (0,2) invalid
    # x pairs with both valid: (0,0)-(0,1): |0 - -0.5| = 0.5; (1,0)-(1,1): 0.5; (1,1)-(1,2): 3 -> mean 4/3
    # y pairs: (0,0)-(1,0): 0; (0,1)-(1,1): 1; (0,2) invalid -> mean 1/2
    assert gradient_loss(PRED, GT).item() == pytest.approx(4.0 / 3 + 0.5)


def test_gradient_ignores_offsets_and_zero_residual():
    gt = torch.rand(2, 1, 7, 9) + 0.5
    assert gradient_loss(gt, gt).item() == 0.0
    assert gradient_loss(gt + 3.0, gt).item() == pytest.approx(0.0, abs=1e-6)  # constant residual
    assert masked_l1(gt, gt).item() == 0.0


def test_charbonnier_hand_computed():
    pred = torch.tensor([0.0, 0.3, 1.0]).view(1, 3, 1, 1)
    gt = torch.tensor([0.0, 0.0, 0.5]).view(1, 3, 1, 1)
    eps = 1e-3
    want = (eps + math.sqrt(0.09 + eps**2) + math.sqrt(0.25 + eps**2)) / 3
    assert charbonnier(pred, gt, eps).item() == pytest.approx(want, rel=1e-6)
    img = torch.rand(1, 3, 4, 4)
    assert charbonnier(img, img).item() == pytest.approx(1e-3, rel=1e-5)  # zero residual -> eps


def test_ssim_against_reference_and_bounds():
    torch.manual_seed(0)
    a = torch.rand(2, 3, 16, 16)
    assert ssim_loss(a, a).item() == pytest.approx(0.0, abs=1e-6)
    b = (a + 0.1 * torch.randn_like(a)).clamp(0, 1)
    # hand computation: Gaussian-window SSIM (11, 1.5), K = (0.01, 0.03), data_range 1, valid filtering
    coords = torch.arange(11, dtype=torch.float32) - 5
    g = torch.exp(-(coords**2) / (2 * 1.5**2))
    g = g / g.sum()
    w = (g[:, None] * g[None, :]).expand(3, 1, 11, 11)

    def blur(x):
        return torch.nn.functional.conv2d(x, w, groups=3)

    mu_a, mu_b = blur(a), blur(b)
    s_aa = blur(a * a) - mu_a**2
    s_bb = blur(b * b) - mu_b**2
    s_ab = blur(a * b) - mu_a * mu_b
    c1, c2 = 0.01**2, 0.03**2
    ssim_map = ((2 * mu_a * mu_b + c1) * (2 * s_ab + c2)) / ((mu_a**2 + mu_b**2 + c1) * (s_aa + s_bb + c2))
    assert ssim_loss(a, b).item() == pytest.approx(1 - ssim_map.mean().item(), abs=1e-5)
    assert 0 < ssim_loss(a, b).item() < 1
    # data_range matters: the same images on a 0..255 scale with data_range=255 give the same value
    assert ssim_loss(a * 255, b * 255, data_range=255.0).item() == pytest.approx(ssim_loss(a, b).item(), abs=1e-5)


def test_gaussian_window_is_the_normalised_gaussian():
    import math

    from pytorch_msssim import ssim as ms_ssim

    from twohded.losses import gaussian_window_1d, ssim_window

    g = gaussian_window_1d(11, 1.5)
    expected = [math.exp(-((i - 5) ** 2) / (2 * 1.5**2)) for i in range(11)]
    expected = [v / sum(expected) for v in expected]
    assert g.dtype == torch.float32 and g.shape == (11,)
    assert torch.allclose(g.double(), torch.tensor(expected, dtype=torch.float64), atol=1e-7, rtol=0)
    assert float(g.sum()) == pytest.approx(1.0, abs=1e-6) and int(g.argmax()) == 5
    assert torch.equal(g, g.flip(0))  # symmetric
    w = ssim_window(3, 11, 1.5, torch.device("cpu"))
    assert w.shape == (3, 1, 1, 11) and all(torch.equal(w[c, 0, 0], g) for c in range(3))
    # our window gives the value pytorch_msssim gets with the one it builds itself
    torch.manual_seed(0)
    a, b = torch.rand(2, 3, 24, 20), torch.rand(2, 3, 24, 20)
    ours = ms_ssim(a, b, data_range=1.0, win=w)
    theirs = ms_ssim(a, b, data_range=1.0, win_size=11, win_sigma=1.5)
    assert float(ours) == pytest.approx(float(theirs), abs=1e-7)


def test_ssim_window_too_large():
    with pytest.raises(ValueError, match=">= 11"):
        ssim_loss(torch.rand(1, 3, 10, 20), torch.rand(1, 3, 10, 20))


def _batch():
    torch.manual_seed(1)
    depth_gt = torch.rand(2, 1, 16, 16) * 5 + 0.5
    depth_gt[:, :, :2] = 0  # missing rows
    aif_gt = torch.rand(2, 3, 16, 16)
    out = ModelOutput(depth=depth_gt + 0.3 * torch.randn_like(depth_gt), aif=(aif_gt + 0.05 * torch.randn_like(aif_gt)))
    return out, depth_gt, aif_gt


def test_total_is_eq7_and_returns_parts():
    out, d, a = _batch()
    res = HybridLoss()(out, depth=d, aif=a)
    p = res.parts
    assert p["depth"].item() == pytest.approx(masked_l1(out.depth, d).item() + 1e-3 * gradient_loss(out.depth, d).item(), rel=1e-6)
    assert p["deblur"].item() == pytest.approx(charbonnier(out.aif, a).item() + 4.0 * ssim_loss(out.aif, a).item(), rel=1e-6)
    assert res.total.item() == pytest.approx(p["depth"].item() + 0.01 * p["deblur"].item(), rel=1e-6)
    assert set(p) == {"depth_l1", "depth_grad", "depth", "deblur_charbonnier", "deblur_ssim", "deblur", "total"}
    assert all(not v.requires_grad for v in p.values())


def test_total_backpropagates():
    out, d, a = _batch()
    depth = out.depth.clone().requires_grad_(True)
    aif = out.aif.clone().requires_grad_(True)
    HybridLoss()(ModelOutput(depth, aif), depth=d, aif=a).total.backward()
    assert torch.isfinite(depth.grad).all() and depth.grad.abs().sum() > 0
    assert depth.grad[:, :, :2].abs().sum() == 0  # masked rows get no gradient
    assert torch.isfinite(aif.grad).all() and aif.grad.abs().sum() > 0


@pytest.mark.parametrize(
    "options, keys",
    [
        ({"gradient": False, "charbonnier": False, "ssim": False}, {"depth_l1"}),
        ({"ssim": False}, {"depth_l1", "depth_grad", "deblur_charbonnier"}),
        ({"gradient": False, "ssim": False}, {"depth_l1", "deblur_charbonnier"}),
        ({"gradient": False}, {"depth_l1", "deblur_charbonnier", "deblur_ssim"}),
        ({}, {"depth_l1", "depth_grad", "deblur_charbonnier", "deblur_ssim"}),
    ],
)
def test_terms_switch_on_and_off(options, keys):
    out, d, a = _batch()
    res = HybridLoss(options)(out, depth=d, aif=a)
    terms = {k for k in res.parts if k not in ("depth", "deblur", "total")}
    assert terms == keys
    c = LossConfig.from_dict(options)
    want = 0.0
    if c.l1:
        want += masked_l1(out.depth, d).item()
    if c.gradient:
        want += c.mu * gradient_loss(out.depth, d).item()
    deblur = (charbonnier(out.aif, a).item() if c.charbonnier else 0.0) + (c.psi * ssim_loss(out.aif, a).item() if c.ssim else 0.0)
    if c.charbonnier or c.ssim:
        want += c.lam * deblur
    assert res.total.item() == pytest.approx(want, rel=1e-6)


def test_single_head_outputs_use_their_half():
    out, d, a = _batch()
    depth_only = HybridLoss()(ModelOutput(depth=out.depth), depth=d)
    assert set(depth_only.parts) == {"depth_l1", "depth_grad", "depth", "total"}
    aif_only = HybridLoss()(ModelOutput(aif=out.aif), aif=a)
    assert set(aif_only.parts) == {"deblur_charbonnier", "deblur_ssim", "deblur", "total"}
    assert aif_only.total.item() == pytest.approx(0.01 * aif_only.parts["deblur"].item())
    with pytest.raises(ValueError, match="no depth ground truth"):
        HybridLoss()(out, aif=a)
    with pytest.raises(ValueError, match="no term applies"):
        HybridLoss(depth=False)(ModelOutput(depth=out.depth), depth=d)


def test_weights_and_config_validation():
    out, d, a = _batch()
    res = HybridLoss(LossConfig(mu=1.0, psi=0.0, lam=1.0))(out, depth=d, aif=a)
    p = res.parts
    assert p["depth"].item() == pytest.approx(p["depth_l1"].item() + p["depth_grad"].item(), rel=1e-6)
    assert p["deblur"].item() == pytest.approx(p["deblur_charbonnier"].item(), rel=1e-6)
    with pytest.raises(InputError, match="unknown option"):
        HybridLoss({"lambda_": 1})
    assert LossConfig.from_dict({"psi": 2}).psi == 2 and LossConfig().to_dict()["lam"] == 0.01


def test_bf16_inputs_computed_in_float32():
    out, d, a = _batch()
    res = HybridLoss()(ModelOutput(out.depth.bfloat16(), out.aif.bfloat16()), depth=d, aif=a)
    assert res.total.dtype == torch.float32 and torch.isfinite(res.total)


def test_valid_mask():
    t = torch.tensor([0.0, -1.0, float("nan"), float("inf"), 2.0])
    assert depth_valid_mask(t).tolist() == [False, False, False, False, True]


def test_depth_mse_term_is_the_masked_mean_square():
    import torch

    from twohded.losses import HybridLoss, LossConfig
    from twohded.models import ModelOutput

    pred = torch.tensor([[[[1.0, 2.0], [3.0, 5.0]]]])
    gt = torch.tensor([[[[1.0, 4.0], [0.0, 2.0]]]])  # one missing pixel (0)
    loss = HybridLoss(LossConfig(l1=False, gradient=False, depth_mse=True, deblur=False))
    out = loss(ModelOutput(depth=pred), depth=gt)
    assert abs(float(out.total) - (0 + 4 + 9) / 3) < 1e-6
    assert set(out.parts) == {"depth_mse", "depth", "total"}
    assert LossConfig(l1=False, gradient=False, depth_mse=True).uses_depth
