"""2HDED:NET (Nazir et al., IEEE TCI 2023) and its single-head variants.

One DenseNet-121 encoder, two parallel U-Net decoders of the same shape on the same
features and skips:

* depth head: decoder + 3x3 conv to 1 channel, linear output in metres;
* all-in-focus (AiF) head: decoder + 3x3 conv to 3 channels, *added to the input image*
  (the paper's "input joint layer": the head learns the residual).

``2hded`` has both heads (41,414,400 parameters, the count of the authors' network),
``2hded-depth`` only the depth head (D3-Net-like, 24,212,544) and ``2hded-aif`` only the
AiF head (24,213,696): the paper's Table III ablation. See docs/architecture.md.
"""

from __future__ import annotations

import math

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from twohded.errors import InputError
from twohded.models.base import DefocusModel, ModelOutput
from twohded.models.decoder import UNetDecoder
from twohded.models.encoder import DenseNetEncoder, load_encoder_weights
from twohded.models.registry import register_model

__all__ = ["ModelOutput", "TwoHDEDNet", "HEADS", "init_weights"]

HEADS = ("depth", "aif")
#: meanings of the depth head's raw output (``TwoHDEDNet(depth_output=...)``)
DEPTH_OUTPUTS = ("metres", "log", "inverse")


def depth_from_raw(y: Tensor, depth_output: str) -> Tensor:
    """The depth head's raw output ``(B, 1, H, W)`` -> depth ``(B, 1, H, W)`` metres."""
    if depth_output == "log":
        return torch.exp(y.clamp(-7.0, 7.0))
    if depth_output == "inverse":
        return 1.0 / (F.softplus(y) + 1e-3)
    return y


def _raw_depth(depth_m: float, depth_output: str) -> float:
    """Inverse of :func:`depth_from_raw` for one positive depth in metres (bias initialisation)."""
    if depth_output == "log":
        return math.log(depth_m)
    if depth_output == "inverse":
        z = 1.0 / depth_m - 1e-3  # softplus(y) = z  ->  y = log(exp(z) - 1)
        if z <= 0:
            raise InputError(f"depth_bias_m: {depth_m} m is beyond the inverse head's 1000 m range")
        return math.log(math.expm1(z))
    return depth_m
_HEAD_CHANNELS = {"depth": 1, "aif": 3}
_INPUT_NORMS = ("symmetric", "imagenet", "none")


def init_weights(module: nn.Module, std: float = 0.02) -> None:
    """pix2pix/D3-Net "normal" init: conv weights N(0, std), BN weights N(1, std), biases 0."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(m.weight, 0.0, std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, std)
            nn.init.zeros_(m.bias)


class TwoHDEDNet(DefocusModel):
    """DenseNet-121 encoder with a depth head and/or an all-in-focus head.

    Args:
        heads: which heads to build, a subset of ``("depth", "aif")``.
        encoder_weights: local path (or state dict) of torchvision's ImageNet ``densenet121``
            checkpoint (``densenet121-a639ec97.pth``), ``"imagenet"`` to download that file
            on request (cached, hash-checked), or ``None`` (default): the random init.
        decoder_dropout: dropout probability in the two deepest blocks of each decoder
            (0.5 as the authors' training scripts, which pass ``--use_dropout``; 0 disables).
        input_norm: how ``[0, 1]`` images are fed to the encoder: ``"symmetric"``
            (``2x - 1``, the ``[-1, 1]`` range of the authors' data loader), ``"imagenet"``
            (ImageNet mean/std) or ``"none"``. The AiF residual is always added to the
            ``[0, 1]`` input.
        clamp_aif: clamp the AiF image to ``[0, 1]`` in eval mode.
        aif_zero_init: start the AiF head's last convolution at zero, so that the network
            starts as the identity for deblurring (a zero-initialised residual branch). The
            authors' code draws it from N(0, 0.02) like every other layer (``False``); with
            that init the first hundreds of steps are spent undoing a random residual.
        depth_bias_m: if set, the depth head gets a learnable bias initialised to this value
            (metres, e.g. the training set's mean depth), so that the network starts as the
            mean-depth predictor. ``None`` (default) is the authors' bias-free head.
        depth_output: what the depth head's raw output ``y`` means (our option; the paper's
            head is linear in metres): ``"metres"`` (default, depth = y), ``"log"``
            (depth = exp(y), y clamped to [-7, 7]) or ``"inverse"`` (depth = 1 / (softplus(y) +
            1e-3)). ``depth_bias_m`` is mapped through the inverse, so the network still starts
            at that depth. The output is always metres; losses and metrics are unchanged.

    ``forward(image)``: ``(B, 3, H, W)`` in ``[0, 1]``, any ``H, W`` (reflect-padded to a
    multiple of 32 and cropped back) -> :class:`ModelOutput`.
    """

    stride = 32  # the encoder's total down-sampling; inputs are reflect-padded to a multiple

    def __init__(
        self,
        heads: tuple[str, ...] | list[str] = HEADS,
        *,
        encoder_weights: str | Path | None = None,
        decoder_dropout: float = 0.5,
        input_norm: str = "symmetric",
        clamp_aif: bool = True,
        aif_zero_init: bool = True,
        depth_bias_m: float | None = None,
        depth_output: str = "metres",
    ) -> None:
        super().__init__()
        heads = tuple(heads)
        if not heads or any(h not in HEADS for h in heads) or len(set(heads)) != len(heads):
            raise InputError(f"heads: expected a non-empty subset of {HEADS}, got {heads}")
        if input_norm not in _INPUT_NORMS:
            raise InputError(f"input_norm: expected one of {_INPUT_NORMS}, got {input_norm!r}")
        if not 0.0 <= float(decoder_dropout) < 1.0:
            raise InputError(f"decoder_dropout: expected a probability in [0, 1), got {decoder_dropout}")
        if depth_output not in DEPTH_OUTPUTS:
            raise InputError(f"depth_output: expected one of {DEPTH_OUTPUTS}, got {depth_output!r}")
        self.depth_output = depth_output
        self.input_norm = input_norm
        self.clamp_aif = bool(clamp_aif)
        self.encoder = DenseNetEncoder()
        # Keep the attribute order encoder, depth, aif so that state_dict keys read naturally.
        for head in HEADS:
            if head in heads:
                dec = UNetDecoder(self.encoder.out_channels, (512, 256, 128, 64, 64), dropout=decoder_dropout)
                self.add_module(f"{head}_decoder", dec)
                bias = head == "depth" and depth_bias_m is not None
                self.add_module(f"{head}_head", nn.Conv2d(dec.out_channels, _HEAD_CHANNELS[head], 3, padding=1, bias=bias))
            else:
                self.add_module(f"{head}_decoder", None)
                self.add_module(f"{head}_head", None)
        self.register_buffer("_mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("_std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1), persistent=False)
        init_weights(self)
        if aif_zero_init and self.aif_head is not None:
            nn.init.zeros_(self.aif_head.weight)
        if depth_bias_m is not None and self.depth_head is not None:
            if not (math.isfinite(float(depth_bias_m)) and float(depth_bias_m) > 0):
                raise InputError(f"depth_bias_m: expected a positive depth in metres, got {depth_bias_m}")
            nn.init.constant_(self.depth_head.bias, _raw_depth(float(depth_bias_m), depth_output))
        if encoder_weights is not None:
            load_encoder_weights(self.encoder, encoder_weights)

    @property
    def outputs(self) -> tuple[str, ...]:
        """Fields of :class:`ModelOutput` this model fills, e.g. ``("depth", "aif")``."""
        return tuple(h for h in HEADS if getattr(self, f"{h}_head") is not None)

    def drop_head(self, head: str) -> "TwoHDEDNet":
        """Remove ``head`` (``"depth"`` or ``"aif"``) and its decoder, e.g. after training; returns self."""
        if head not in self.outputs:
            raise InputError(f"drop_head: model has no {head!r} head (it has {self.outputs})")
        if len(self.outputs) == 1:
            raise InputError(f"drop_head: {head!r} is the model's only head")
        setattr(self, f"{head}_decoder", None)
        setattr(self, f"{head}_head", None)
        return self

    def _normalize(self, x: Tensor) -> Tensor:
        if self.input_norm == "symmetric":
            return x * 2.0 - 1.0
        if self.input_norm == "imagenet":
            return (x - self._mean.to(x.dtype)) / self._std.to(x.dtype)
        return x

    def forward(self, image: Tensor) -> ModelOutput:
        """``(B, 3, H, W)`` in ``[0, 1]`` -> ``ModelOutput(depth=(B, 1, H, W) metres, aif=(B, 3, H, W))``."""
        if image.dim() != 4 or image.shape[1] != 3:
            raise InputError(f"image: expected (B, 3, H, W), got {tuple(image.shape)}")
        h, w = image.shape[-2:]
        ph = (-h) % self.stride
        pw = (-w) % self.stride
        x = self._normalize(image)
        if ph or pw:
            # Reflect needs pad < size; tiny inputs fall back to edge replication.
            mode = "reflect" if ph < h and pw < w else "replicate"
            x = F.pad(x, (0, pw, 0, ph), mode=mode)
        feats = self.encoder(x)
        depth = aif = None
        if self.depth_head is not None:
            depth = depth_from_raw(self.depth_head(self.depth_decoder(feats))[..., :h, :w], self.depth_output)
        if self.aif_head is not None:
            aif = image + self.aif_head(self.aif_decoder(feats))[..., :h, :w]
            if self.clamp_aif and not self.training:
                aif = aif.clamp(0.0, 1.0)
        return ModelOutput(depth=depth, aif=aif)


# The tester runs torch.export on one variant only (they share all code; export is slow on CPU).
_EXPORT = {"export": True}
_NO_EXPORT = {"export": False}


@register_model(
    "2hded",
    outputs=("depth", "aif"),
    num_params=41_414_400,
    description="2HDED:NET: DenseNet-121 encoder, depth head + all-in-focus head (the paper's model)",
    tester=_NO_EXPORT,
    options_of=TwoHDEDNet,
)
def twohded(**options) -> TwoHDEDNet:
    """2HDED:NET with both heads (depth and all-in-focus)."""
    return TwoHDEDNet(("depth", "aif"), **options)


@register_model(
    "2hded-depth",
    outputs=("depth",),
    num_params=24_212_544,
    description="2HDED:NET depth head only (D3-Net-like; Table III ablation)",
    tester=_EXPORT,
    options_of=TwoHDEDNet,
)
def twohded_depth(**options) -> TwoHDEDNet:
    """2HDED:NET with the depth head only (D3-Net-like)."""
    return TwoHDEDNet(("depth",), **options)


@register_model(
    "2hded-aif",
    outputs=("aif",),
    num_params=24_213_696,
    description="2HDED:NET all-in-focus head only (Table III ablation)",
    tester=_NO_EXPORT,
    options_of=TwoHDEDNet,
)
def twohded_aif(**options) -> TwoHDEDNet:
    """2HDED:NET with the all-in-focus head only."""
    return TwoHDEDNet(("aif",), **options)


def count_parameters(module: nn.Module | None) -> int:
    """Number of parameters of ``module`` (0 for ``None``)."""
    return 0 if module is None else sum(p.numel() for p in module.parameters())

