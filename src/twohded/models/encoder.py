"""DenseNet-121 encoder of 2HDED:NET, with torchvision's parameter names.

The layout is the one the authors' code builds (``DenseUNet_aif`` in
``networks/dense_decoders_multitask_auto.py`` of github.com/cristinamonea/2HDED and
github.com/saqibnaziir/2HDED-NET, itself D3-Net's encoder):

* stem: 3x3 stride-2 conv, BN, LeakyReLU(0.2) -> skip ``(B, 64, H/2, W/2)``; then a
  4x4 stride-2 conv, BN, LeakyReLU(0.2) in place of DenseNet's 3x3 max-pool;
* four dense blocks (6, 12, 24, 16 layers, growth 32, bottleneck 4 x 32 = 128);
* transitions BN, ReLU, 1x1 conv halving the channels, 2x2 average pool; the skips are
  the transition outputs *before* the pool: ``(B, 128, H/4)``, ``(B, 256, H/8)``,
  ``(B, 512, H/16)``;
* bottleneck ``(B, 1024, H/32, W/32)`` after the final BN (``norm5``) and LeakyReLU(0.2).

Parameter names match torchvision's ``densenet121`` (``features.conv0``,
``features.norm0``, ``features.denseblock1.denselayer1.norm1`` ... ``features.norm5``), so
:func:`load_encoder_weights` loads torchvision's ImageNet checkpoint
(``densenet121-a639ec97.pth``) from a local file, or downloads it on request
(``encoder_weights="imagenet"``: :data:`IMAGENET_URL`, cached and hash-checked by
:func:`twohded.download.download`). The stem conv (3x3 here, 7x7 there)
and the classifier do not fit and are skipped; ``features.downconv0`` and
``features.norm1`` (the 4x4 stride-2 stem conv and its BN) have no ImageNet
counterpart and keep their initialisation, as in the authors' code.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from twohded.errors import InputError

__all__ = ["IMAGENET_URL", "DenseNetEncoder", "load_encoder_weights", "remap_torchvision_keys"]

#: torchvision's ImageNet DenseNet-121 (``encoder_weights="imagenet"``); the ``a639ec97`` in the
#: name is the start of the file's SHA-256 (torch.hub's convention), which the download checks
IMAGENET_URL = "https://download.pytorch.org/models/densenet121-a639ec97.pth"

log = logging.getLogger(__name__)


class _DenseLayer(nn.Module):
    """BN-ReLU-1x1 conv (to ``bn_size * growth``) - BN-ReLU-3x3 conv (to ``growth``), concatenated."""

    def __init__(self, in_channels: int, growth_rate: int, bn_size: int) -> None:
        super().__init__()
        mid = bn_size * growth_rate
        self.norm1 = nn.BatchNorm2d(in_channels)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(in_channels, mid, kernel_size=1, stride=1, bias=False)
        self.norm2 = nn.BatchNorm2d(mid)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(mid, growth_rate, kernel_size=3, stride=1, padding=1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv1(self.relu1(self.norm1(x)))
        out = self.conv2(self.relu2(self.norm2(out)))
        return torch.cat([x, out], 1)


class _DenseBlock(nn.Sequential):
    def __init__(self, num_layers: int, in_channels: int, growth_rate: int, bn_size: int) -> None:
        super().__init__()
        for i in range(num_layers):
            self.add_module(f"denselayer{i + 1}", _DenseLayer(in_channels + i * growth_rate, growth_rate, bn_size))


class _Transition(nn.Sequential):
    """BN, ReLU, 1x1 conv; the 2x2 average pool is applied separately (its input is a skip)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.add_module("norm", nn.BatchNorm2d(in_channels))
        self.add_module("relu", nn.ReLU(inplace=True))
        self.add_module("conv", nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=1, bias=False))


class _Features(nn.Module):
    """Container that only fixes the parameter names (``features.*``); see :class:`DenseNetEncoder`."""


class DenseNetEncoder(nn.Module):
    """DenseNet-121 encoder returning five feature maps (four skips and the bottleneck).

    Args:
        in_channels: input channels (3).
        growth_rate, block_config, num_init_features, bn_size: DenseNet-121 defaults
            (32, (6, 12, 24, 16), 64, 4).

    ``forward(x)`` takes ``(B, in_channels, H, W)`` with ``H`` and ``W`` multiples of 32 and
    returns ``[s1, s2, s3, s4, bottleneck]`` with channels :attr:`out_channels` =
    ``(64, 128, 256, 512, 1024)`` at strides :attr:`reductions` = ``(2, 4, 8, 16, 32)``.
    """

    def __init__(
        self,
        in_channels: int = 3,
        growth_rate: int = 32,
        block_config: tuple[int, ...] = (6, 12, 24, 16),
        num_init_features: int = 64,
        bn_size: int = 4,
    ) -> None:
        super().__init__()
        f = _Features()
        f.conv0 = nn.Conv2d(in_channels, num_init_features, kernel_size=3, stride=2, padding=1, bias=False)
        f.norm0 = nn.BatchNorm2d(num_init_features)
        f.relu0 = nn.LeakyReLU(0.2, inplace=True)
        f.downconv0 = nn.Conv2d(num_init_features, num_init_features, kernel_size=4, stride=2, padding=1, bias=False)
        f.norm1 = nn.BatchNorm2d(num_init_features)
        f.relu1 = nn.LeakyReLU(0.2, inplace=True)
        channels = [num_init_features]
        n = num_init_features
        for i, num_layers in enumerate(block_config):
            f.add_module(f"denseblock{i + 1}", _DenseBlock(num_layers, n, growth_rate, bn_size))
            n += num_layers * growth_rate
            if i != len(block_config) - 1:
                f.add_module(f"transition{i + 1}", _Transition(n, n // 2))
                n //= 2
                channels.append(n)
        f.norm5 = nn.BatchNorm2d(n)
        f.relu5 = nn.LeakyReLU(0.2, inplace=True)
        channels.append(n)
        self.features = f
        self.num_blocks = len(block_config)
        self.out_channels: tuple[int, ...] = tuple(channels)
        self.reductions: tuple[int, ...] = tuple(2 ** (i + 1) for i in range(len(channels)))

    def forward(self, x: Tensor) -> list[Tensor]:
        """``(B, C, H, W)`` -> ``[(B, 64, H/2), (B, 128, H/4), (B, 256, H/8), (B, 512, H/16), (B, 1024, H/32)]``."""
        f = self.features
        skip = f.relu0(f.norm0(f.conv0(x)))
        out = f.relu1(f.norm1(f.downconv0(skip)))
        feats = [skip]
        for i in range(1, self.num_blocks + 1):
            out = getattr(f, f"denseblock{i}")(out)
            if i != self.num_blocks:
                out = getattr(f, f"transition{i}")(out)
                feats.append(out)
                out = F.avg_pool2d(out, kernel_size=2, stride=2)
        feats.append(f.relu5(f.norm5(out)))
        return feats

    forward_features = forward


# torchvision's old checkpoints (densenet121-a639ec97.pth) name dense-layer tensors
# "norm.1"/"conv.2"; torchvision itself renames them to "norm1"/"conv2" when loading.
_OLD_KEY = re.compile(r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var|num_batches_tracked))$")


def remap_torchvision_keys(state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Rename old-style torchvision DenseNet keys (``norm.1``) to module names (``norm1``); strip ``module.``."""
    out: dict[str, Tensor] = {}
    for key, value in state_dict.items():
        if key.startswith("module."):
            key = key[len("module.") :]
        m = _OLD_KEY.match(key)
        if m:
            key = m.group(1) + m.group(2)
        out[key] = value
    return out


def _read_state_dict(path: str | Path) -> dict[str, Tensor]:
    p = Path(path).expanduser()
    if not p.is_file():
        raise InputError(f"encoder_weights: {p}: no such file")
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt / not a torch file
        raise InputError(f"encoder_weights: {p}: not a readable PyTorch checkpoint ({type(exc).__name__}: {exc})") from None
    for wrapper in ("state_dict", "model"):
        if isinstance(obj, Mapping) and wrapper in obj and isinstance(obj[wrapper], Mapping):
            obj = obj[wrapper]
    if not isinstance(obj, Mapping) or not all(isinstance(v, Tensor) for v in obj.values()):
        raise InputError(f"encoder_weights: {p}: not a state dict of tensors")
    return dict(obj)


def load_encoder_weights(
    encoder: DenseNetEncoder, weights: str | Path | Mapping[str, Tensor]
) -> tuple[list[str], list[str]]:
    """Copy every tensor of a torchvision ``densenet121`` state dict that fits into ``encoder``.

    Args:
        encoder: the encoder to fill.
        weights: path of a local checkpoint (e.g. ``densenet121-a639ec97.pth``), a state dict
            with torchvision's key names, ``"imagenet"`` (downloads :data:`IMAGENET_URL` into
            the cache once, hash-checked) or an ``http(s)://`` URL (``#sha256=<hex>`` suffix,
            or a torchvision-style hash in the name). Only these two download.

    Returns:
        ``(loaded, skipped)``: encoder keys that were loaded, and checkpoint keys that were
        skipped (shape differs, e.g. the 7x7 ``features.conv0.weight``, or not in the encoder,
        e.g. ``classifier.*``). Both are reported in one log line.

    Raises:
        InputError: missing or unreadable file, or no tensor of the checkpoint fits.
    """
    source = str(weights) if isinstance(weights, (str, Path)) else "state dict"
    if isinstance(weights, str) and (weights == "imagenet" or weights.startswith(("http://", "https://"))):
        from twohded.download import download

        weights = download(IMAGENET_URL if weights == "imagenet" else weights, subdir="weights")
    sd = _read_state_dict(weights) if isinstance(weights, (str, Path)) else dict(weights)
    sd = remap_torchvision_keys(sd)
    own = encoder.state_dict()
    loaded: dict[str, Tensor] = {}
    skipped: list[str] = []
    for key, value in sd.items():
        if key in own and tuple(own[key].shape) == tuple(value.shape):
            loaded[key] = value
        elif key in own:
            skipped.append(f"{key} {tuple(value.shape)}!={tuple(own[key].shape)}")
        else:
            skipped.append(key)
    if not loaded:
        raise InputError(f"encoder_weights: {source}: no tensor matches the DenseNet-121 encoder (is it torchvision's densenet121?)")
    with torch.no_grad():
        for key, value in loaded.items():
            own[key].copy_(value.to(own[key].dtype))
    kept = [k for k in own if k not in loaded and not k.endswith("num_batches_tracked")]
    log.info(
        "encoder_weights %s: loaded %d tensors; skipped %d: %s; kept initialisation for %d: %s",
        source, len(loaded), len(skipped), ", ".join(skipped) or "-", len(kept), ", ".join(kept) or "-",
    )
    return list(loaded), skipped
