"""The hybrid loss of 2HDED:NET, eq. (1)-(7) of Nazir et al. (IEEE TCI 2023).

Depth half (eq. 1-3), on valid pixels only::

    L1     = mean |d_pred - d_gt|                                     (1)
    L_grad = mean |dx R| + mean |dy R|,  R = d_pred - d_gt            (2)
    L_depth = L1 + mu * L_grad,            mu = 0.001                 (3)

Deblurring half (eq. 4-6)::

    L_charb = mean sqrt((aif_pred - aif_gt)^2 + eps^2),  eps = 1e-3   (4)
    L_ssim  = 1 - SSIM(aif_pred, aif_gt)                              (5)
    L_deblur = L_charb + Psi * L_ssim,     Psi = 4                    (6)

plus an optional mean squared error term (``mse``, off by default; not in the paper), the
L2 loss of the DnCNN / IRCNN baselines: ``L_deblur += mean (aif_pred - aif_gt)^2``.

Total::

    L = L_depth + lambda * L_deblur,       lambda = 0.01              (7)

Every term is switched on or off by :class:`LossConfig` (the rows of the paper's Table II
are configurations); a single-head model's output has ``None`` for the other head and
that half is skipped. SSIM is ``pytorch_msssim.ssim`` with ``data_range=1.0`` explicit,
an 11x11 Gaussian window with sigma 1.5, K = (0.01, 0.03), no padding (``valid``
filtering), so images must be at least 11 px per side. All terms are computed in float32
(safe under bf16 autocast).

Depth units are metres; images are ``[0, 1]``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace
from typing import Any, NamedTuple, Optional

import torch
from pytorch_msssim import ssim as _ms_ssim
from torch import Tensor, nn

from twohded.errors import InputError

__all__ = [
    "LossConfig",
    "LossOutput",
    "HybridLoss",
    "depth_valid_mask",
    "masked_l1",
    "gradient_loss",
    "charbonnier",
    "ssim_loss",
    "mse_loss",
]


def _as_4d(t: Tensor, name: str) -> Tensor:
    if t.dim() == 3:
        t = t.unsqueeze(1)
    if t.dim() != 4:
        raise ValueError(f"{name}: expected (B, C, H, W) or (B, H, W), got {tuple(t.shape)}")
    return t


def depth_valid_mask(target: Tensor, min_depth: float = 0.0) -> Tensor:
    """Valid ground-truth depth: finite and ``> min_depth`` (missing depth is stored as 0 or NaN)."""
    return torch.isfinite(target) & (target > min_depth)


def _prepare_depth(pred: Tensor, target: Tensor, mask: Optional[Tensor]) -> tuple[Tensor, Tensor, Tensor]:
    pred = _as_4d(pred, "depth prediction").float()
    target = _as_4d(target, "depth target").float()
    if pred.shape != target.shape:
        raise ValueError(f"depth prediction {tuple(pred.shape)} and target {tuple(target.shape)} differ")
    valid = depth_valid_mask(target) if mask is None else _as_4d(mask, "mask").to(torch.bool).expand_as(target)
    valid = valid & torch.isfinite(target)
    # Zero the invalid pixels so that NaN / garbage there never reaches the sum (NaN * 0 = NaN).
    target = torch.where(valid, target, torch.zeros_like(target))
    return pred, target, valid


def _masked_mean(values: Tensor, valid: Tensor) -> Tensor:
    n = valid.sum()
    total = torch.where(valid, values, torch.zeros_like(values)).sum()
    return total / n.clamp(min=1)  # no valid pixel -> 0 (still in the graph)


def masked_l1(pred: Tensor, target: Tensor, mask: Optional[Tensor] = None) -> Tensor:
    """Eq. (1): mean ``|pred - target|`` over valid pixels.

    Args:
        pred: ``(B, 1, H, W)`` metres.
        target: ``(B, 1, H, W)`` metres; 0 or NaN where missing.
        mask: optional ``(B, 1, H, W)`` bool, True where valid; default :func:`depth_valid_mask`.

    Returns a scalar; 0 when no pixel is valid.
    """
    pred, target, valid = _prepare_depth(pred, target, mask)
    return _masked_mean((pred - target).abs(), valid)


def masked_mse(pred: Tensor, target: Tensor, mask: Optional[Tensor] = None) -> Tensor:
    """Mean ``(pred - target)**2`` over valid pixels, metres squared (not in the paper).

    Shapes as :func:`masked_l1`. Minimised by the conditional mean, like the RMSE metric
    (L1 is minimised by the median).
    """
    pred, target, valid = _prepare_depth(pred, target, mask)
    return _masked_mean((pred - target).square(), valid)


def gradient_loss(pred: Tensor, target: Tensor, mask: Optional[Tensor] = None) -> Tensor:
    """Eq. (2): gradient of the residual ``R = pred - target``.

    ``mean |R[:, :, i, j+1] - R[:, :, i, j]|`` over horizontally adjacent valid pairs plus
    ``mean |R[:, :, i+1, j] - R[:, :, i, j]|`` over vertically adjacent valid pairs
    (forward differences; a pair counts only when both pixels are valid). Shapes as
    :func:`masked_l1`.
    """
    pred, target, valid = _prepare_depth(pred, target, mask)
    r = pred - target
    dx = (r[..., :, 1:] - r[..., :, :-1]).abs()
    vx = valid[..., :, 1:] & valid[..., :, :-1]
    dy = (r[..., 1:, :] - r[..., :-1, :]).abs()
    vy = valid[..., 1:, :] & valid[..., :-1, :]
    return _masked_mean(dx, vx) + _masked_mean(dy, vy)


def charbonnier(pred: Tensor, target: Tensor, eps: float = 1e-3) -> Tensor:
    """Eq. (4): mean ``sqrt((pred - target)^2 + eps^2)``; a zero residual gives ``eps``.

    Args:
        pred, target: ``(B, 3, H, W)`` in ``[0, 1]``.
        eps: 1e-3 (the paper).
    """
    if pred.shape != target.shape:
        raise ValueError(f"AiF prediction {tuple(pred.shape)} and target {tuple(target.shape)} differ")
    d = pred.float() - target.float()
    return torch.sqrt(d * d + eps * eps).mean()


_WINDOWS: dict[tuple, Tensor] = {}


def gaussian_window_1d(win_size: int, win_sigma: float) -> Tensor:
    """Normalised 1-D Gaussian ``(win_size,)`` float32: ``g_i = exp(-(i - win_size // 2)^2 / (2 sigma^2))``,
    ``i = 0 .. win_size - 1``, divided by its sum (the window ``pytorch_msssim.ssim`` builds itself)."""
    coords = torch.arange(int(win_size), dtype=torch.float32) - int(win_size) // 2
    g = torch.exp(-(coords**2) / (2.0 * float(win_sigma) ** 2))
    return g / g.sum()


def ssim_window(channels: int, win_size: int, win_sigma: float, device: torch.device) -> Tensor:
    """The SSIM Gaussian window as ``pytorch_msssim.ssim`` takes it (``win=``): ``(channels, 1, 1,
    win_size)`` float32 (:func:`gaussian_window_1d`), cached per device: made once instead of on
    the CPU and copied on every call (which a CUDA graph cannot capture)."""
    key = (int(channels), int(win_size), float(win_sigma), str(device))
    win = _WINDOWS.get(key)
    if win is None:
        win = gaussian_window_1d(win_size, win_sigma).view(1, 1, 1, -1).repeat(channels, 1, 1, 1).to(device)
        _WINDOWS[key] = win
    return win


def ssim_loss(
    pred: Tensor, target: Tensor, data_range: float = 1.0, win_size: int = 11, win_sigma: float = 1.5
) -> Tensor:
    """Eq. (5): ``1 - SSIM(pred, target)`` with ``pytorch_msssim.ssim``.

    Args:
        pred, target: ``(B, C, H, W)``, ``H, W >= win_size``.
        data_range: value range of the images (1.0 for ``[0, 1]``); passed explicitly.
        win_size, win_sigma: Gaussian window (11, 1.5: Wang et al. 2004).
    """
    if pred.shape != target.shape:
        raise ValueError(f"AiF prediction {tuple(pred.shape)} and target {tuple(target.shape)} differ")
    if pred.dim() != 4 or min(pred.shape[-2:]) < win_size:
        raise ValueError(f"ssim_loss: needs (B, C, H, W) with H, W >= {win_size} (window), got {tuple(pred.shape)}")
    with torch.autocast(device_type=pred.device.type, enabled=False):
        value = _ms_ssim(
            pred.float(), target.float(), data_range=data_range, size_average=True,
            win=ssim_window(pred.shape[1], win_size, win_sigma, pred.device),
        )
    return 1.0 - value


def mse_loss(pred: Tensor, target: Tensor) -> Tensor:
    """Mean squared error ``mean (pred - target)^2`` (float32), the L2 loss of DnCNN / IRCNN."""
    if pred.shape != target.shape:
        raise ValueError(f"AiF prediction {tuple(pred.shape)} and target {tuple(target.shape)} differ")
    d = pred.float() - target.float()
    return (d * d).mean()


@dataclass(frozen=True)
class LossConfig:
    """Which terms of eq. (1)-(7) are on, and their weights (defaults: the paper's full loss).

    ``LossConfig(gradient=False, ssim=False)`` is "L1 + Charbonnier", and so on; the rows
    of Table II are such configurations. ``depth=False`` / ``deblur=False`` switch a half off.
    """

    depth: bool = True  # the depth half (eq. 3)
    l1: bool = True  # eq. (1)
    gradient: bool = True  # eq. (2)
    mu: float = 1e-3  # eq. (3)
    depth_mse: bool = False  # mean squared depth error, m^2 (not in the paper; optimises RMSE)
    deblur: bool = True  # the deblurring half (eq. 6)
    charbonnier: bool = True  # eq. (4)
    ssim: bool = True  # eq. (5)
    psi: float = 4.0  # eq. (6)
    mse: bool = False  # mean squared error of the AiF image (not in the paper; DnCNN / IRCNN's L2 loss)
    lam: float = 0.01  # eq. (7), lambda
    charbonnier_eps: float = 1e-3
    ssim_data_range: float = 1.0
    ssim_win_size: int = 11
    ssim_win_sigma: float = 1.5

    @classmethod
    def from_dict(cls, options: Mapping[str, Any] | None = None, **overrides: Any) -> "LossConfig":
        """Build from a mapping (e.g. a YAML section); unknown keys raise :class:`InputError`."""
        merged = {**dict(options or {}), **overrides}
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(merged) - known)
        if unknown:
            raise InputError(f"loss: unknown option(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        return replace(cls(), **merged)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def uses_depth(self) -> bool:
        """True if a depth term is on (a depth head gets a loss)."""
        return self.depth and (self.l1 or self.gradient or self.depth_mse)

    @property
    def uses_aif(self) -> bool:
        """True if a deblurring term is on (an all-in-focus head gets a loss)."""
        return self.deblur and (self.charbonnier or self.ssim or self.mse)


class LossOutput(NamedTuple):
    """``total`` (scalar with graph) and ``parts`` (detached scalars for logging).

    ``parts`` keys, present when computed: ``depth_l1``, ``depth_grad``, ``depth_mse``, ``depth``,
    ``deblur_charbonnier``, ``deblur_ssim`` (1 - SSIM), ``deblur_mse``, ``deblur``, ``total``.
    """

    total: Tensor
    parts: dict[str, Tensor]


class HybridLoss(nn.Module):
    """Eq. (7): ``L = L_depth + lambda * L_deblur``, each half a sum of the enabled terms.

    ``forward(output, depth=None, aif=None, mask=None)``:

    * ``output``: the model's :class:`~twohded.models.ModelOutput` (or anything with
      ``depth`` / ``aif`` attributes); a ``None`` field skips that half;
    * ``depth``: ground truth ``(B, 1, H, W)`` metres (0/NaN where missing);
    * ``aif``: ground-truth all-in-focus ``(B, 3, H, W)`` in ``[0, 1]``;
    * ``mask``: optional ``(B, 1, H, W)`` bool of valid depth (default: finite and > 0).
    """

    def __init__(self, config: LossConfig | Mapping[str, Any] | None = None, **overrides: Any) -> None:
        super().__init__()
        if isinstance(config, LossConfig):
            config = replace(config, **overrides) if overrides else config
        else:
            config = LossConfig.from_dict(config, **overrides)
        self.config = config

    def forward(
        self,
        output: Any,
        depth: Optional[Tensor] = None,
        aif: Optional[Tensor] = None,
        mask: Optional[Tensor] = None,
    ) -> LossOutput:
        c = self.config
        parts: dict[str, Tensor] = {}
        total: Optional[Tensor] = None
        pred_depth = getattr(output, "depth", None)
        pred_aif = getattr(output, "aif", None)
        if c.uses_depth and pred_depth is not None:
            if depth is None:
                raise ValueError("HybridLoss: the model predicts depth but no depth ground truth was given")
            l_depth = pred_depth.new_zeros((), dtype=torch.float32)
            if c.l1:
                parts["depth_l1"] = masked_l1(pred_depth, depth, mask)
                l_depth = l_depth + parts["depth_l1"]
            if c.gradient:
                parts["depth_grad"] = gradient_loss(pred_depth, depth, mask)
                l_depth = l_depth + c.mu * parts["depth_grad"]
            if c.depth_mse:
                parts["depth_mse"] = masked_mse(pred_depth, depth, mask)
                l_depth = l_depth + parts["depth_mse"]
            parts["depth"] = l_depth
            total = l_depth
        if c.uses_aif and pred_aif is not None:
            if aif is None:
                raise ValueError("HybridLoss: the model predicts an all-in-focus image but no AiF ground truth was given")
            l_deblur = pred_aif.new_zeros((), dtype=torch.float32)
            if c.charbonnier:
                parts["deblur_charbonnier"] = charbonnier(pred_aif, aif, c.charbonnier_eps)
                l_deblur = l_deblur + parts["deblur_charbonnier"]
            if c.ssim:
                parts["deblur_ssim"] = ssim_loss(pred_aif, aif, c.ssim_data_range, c.ssim_win_size, c.ssim_win_sigma)
                l_deblur = l_deblur + c.psi * parts["deblur_ssim"]
            if c.mse:
                parts["deblur_mse"] = mse_loss(pred_aif, aif)
                l_deblur = l_deblur + parts["deblur_mse"]
            parts["deblur"] = l_deblur
            total = c.lam * l_deblur if total is None else total + c.lam * l_deblur
        if total is None:
            raise ValueError(
                f"HybridLoss: no term applies (model outputs: depth={pred_depth is not None}, aif={pred_aif is not None}; "
                f"config: {c})"
            )
        parts["total"] = total
        return LossOutput(total, {k: v.detach() for k, v in parts.items()})
