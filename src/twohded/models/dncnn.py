"""DnCNN (Zhang, Zuo, Chen, Meng, Zhang, *Beyond a Gaussian Denoiser: Residual Learning of
Deep CNN for Image Denoising*, IEEE TIP 2017), retrained here as a deblurring baseline.

17 convolutions 3x3, 64 channels: ``Conv + ReLU``, 15 x ``Conv + BN + ReLU``, ``Conv``.
Residual learning: the network predicts the residual ``v = R(y)`` and the restored image
is ``x = y - v`` (the paper's formulation, for blur as well as noise: the "residual" is
what the blur removed, with the opposite sign). Receptive field 35x35.

Our choices (docs/baselines.md):

* the first and last convolutions have a bias, the 15 middle ones none (their BN has one);
  1,792 + 15 x 36,992 + 1,731 = 558,403 parameters (``num_params`` below, asserted by the model tester);
* Kaiming-normal initialisation (the paper's "He" init) and the **last convolution starts
  at zero** (``zero_init=True``), so that the untrained network is the identity (the input
  as its own deblurring), as 2HDED:NET's AiF head; ``zero_init=False`` keeps the He init;
* like every twohded model, the output is clamped to ``[0, 1]`` in eval mode
  (``clamp_aif=True``) and left raw in training mode so that the loss sees it unclamped.

:class:`ResidualCNN` is the shared plain residual CNN; IRCNN (``twohded.models.ircnn``) is
the same class with dilated convolutions.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from twohded.errors import InputError
from twohded.models.registry import register_model
from twohded.models.base import DefocusModel, ModelOutput

__all__ = ["DNCNN_PARAMS", "ResidualCNN", "dncnn", "residual_cnn_params"]


class ResidualCNN(DefocusModel):
    """A plain residual CNN for image restoration (DnCNN, IRCNN): ``aif = image - body(image)``.

    Args:
        dilations: one dilation per 3x3 convolution (their number is the depth), e.g.
            ``[1] * 17`` (DnCNN) or ``[1, 2, 3, 4, 3, 2, 1]`` (IRCNN). Padding equals the
            dilation, so the output has the input's size (zero padding, any ``H, W``).
        channels: feature channels (64 in both papers).
        batch_norm: batch normalisation after every middle convolution (both papers).
        zero_init: start the last convolution at zero (identity at initialisation).
        clamp_aif: clamp the output to ``[0, 1]`` in eval mode.
        image_channels: input/output channels (3).
    """

    outputs = ("aif",)

    def __init__(
        self,
        dilations: Sequence[int],
        *,
        channels: int = 64,
        batch_norm: bool = True,
        zero_init: bool = True,
        clamp_aif: bool = True,
        image_channels: int = 3,
    ) -> None:
        super().__init__()
        dilations = [int(d) for d in dilations]
        if len(dilations) < 2 or any(d < 1 for d in dilations):
            raise InputError(f"dilations: expected at least 2 positive dilations, got {dilations}")
        if int(channels) < 1:
            raise InputError(f"channels: expected a positive number, got {channels}")
        self.clamp_aif = bool(clamp_aif)
        self.image_channels = int(image_channels)
        layers: list[nn.Module] = []
        c_in = self.image_channels
        for i, d in enumerate(dilations):
            first, last = i == 0, i == len(dilations) - 1
            c_out = self.image_channels if last else int(channels)
            bn = batch_norm and not first and not last
            layers.append(nn.Conv2d(c_in, c_out, 3, padding=d, dilation=d, bias=not bn))
            if bn:
                layers.append(nn.BatchNorm2d(c_out))
            if not last:
                layers.append(nn.ReLU(inplace=True))
            c_in = c_out
        self.body = nn.Sequential(*layers)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if zero_init:
            tail = self.body[-1]
            nn.init.zeros_(tail.weight)
            nn.init.zeros_(tail.bias)

    @property
    def receptive_field(self) -> int:
        """Receptive field in pixels (1 + 2 * sum of dilations)."""
        return 1 + 2 * sum(m.dilation[0] for m in self.body if isinstance(m, nn.Conv2d))

    def forward(self, image: Tensor) -> ModelOutput:
        """``(B, 3, H, W)`` in ``[0, 1]`` -> ``ModelOutput(aif=(B, 3, H, W))``."""
        if image.dim() != 4 or image.shape[1] != self.image_channels:
            raise InputError(f"image: expected (B, {self.image_channels}, H, W), got {tuple(image.shape)}")
        aif = image - self.body(image)
        if self.clamp_aif and not self.training:
            aif = aif.clamp(0.0, 1.0)
        return ModelOutput(aif=aif)


def residual_cnn_params(layers: int, channels: int = 64, image_channels: int = 3) -> int:
    """Parameters of a :class:`ResidualCNN` of ``layers`` 3x3 convs: conv+bias in, conv+BN between, conv+bias out."""
    inner = layers - 2
    return (image_channels * channels * 9 + channels) + inner * (channels * channels * 9 + 2 * channels) + (
        channels * image_channels * 9 + image_channels
    )


#: DnCNN's parameter count with the default options (asserted by tests/test_models.py)
DNCNN_PARAMS = residual_cnn_params(17)


@register_model(
    "dncnn",
    outputs=("aif",),
    num_params=DNCNN_PARAMS,
    description="DnCNN (Zhang et al. 2017): 17 conv layers, 64 channels, BN, residual; deblurring baseline",
    options_of=ResidualCNN,
    tester={"export": True},
)
def dncnn(depth: int = 17, **options) -> ResidualCNN:
    """DnCNN: ``depth`` 3x3 convolutions (17), 64 channels, BN in the middle, residual output."""
    return ResidualCNN([1] * int(depth), **options)


def _check() -> None:  # pragma: no cover - a quick self-check: python -m twohded.models.dncnn
    model = dncnn()
    print(model, sum(p.numel() for p in model.parameters()), "parameters, receptive field", model.receptive_field)
    with torch.no_grad():
        print(model.eval()(torch.rand(1, 3, 32, 32)).aif.shape)


if __name__ == "__main__":  # pragma: no cover
    _check()
