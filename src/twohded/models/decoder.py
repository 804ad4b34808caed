"""U-Net-style decoder of 2HDED:NET (the depth and the all-in-focus heads share this shape).

Block (``BasicBlock`` in the authors' ``networks/conv_blocks.py``): ConvTranspose 4x4 stride 2
(with bias), BN, [Dropout], ReLU, 3x3 conv (no bias), BN, [Dropout], ReLU. Dropout (p = 0.5)
only in the two deepest blocks, after each BN as in the authors' code.

Five blocks go from H/32 to H; every block after the first takes ``cat(skip, x)`` (skip
first, as the authors' ``get_decoder_input``). For DenseNet-121 skips the channels are::

    block5: 1024       -> 512  (H/16)
    block4: 512 + 512  -> 256  (H/8)
    block3: 256 + 256  -> 128  (H/4)
    block2: 128 + 128  -> 64   (H/2)
    block1: 64 + 64    -> 64   (H)
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

__all__ = ["DecoderBlock", "UNetDecoder"]


class DecoderBlock(nn.Module):
    """``(B, in_channels, h, w)`` -> ``(B, out_channels, 2h, 2w)``."""

    def __init__(self, in_channels: int, out_channels: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.conv1 = nn.ConvTranspose2d(in_channels, out_channels, kernel_size=4, stride=2, padding=1, bias=True)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.drop1 = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.relu1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(out_channels, out_channels, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.drop2 = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.relu2 = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        x = self.relu1(self.drop1(self.bn1(self.conv1(x))))
        return self.relu2(self.drop2(self.bn2(self.conv2(x))))


class UNetDecoder(nn.Module):
    """Five upsampling blocks over the encoder's ``[s1, s2, s3, s4, bottleneck]``.

    Args:
        encoder_channels: channels of ``[s1, s2, s3, s4, bottleneck]`` ((64, 128, 256, 512, 1024)).
        decoder_channels: output channels of blocks 5..1 ((512, 256, 128, 64, 64)).
        dropout: dropout probability of the ``dropout_blocks`` deepest blocks (0 disables).
        dropout_blocks: how many of the deepest blocks get dropout (2, as the authors' code).

    ``forward(features)`` returns ``(B, decoder_channels[-1], H, W)`` at the input resolution.
    """

    def __init__(
        self,
        encoder_channels: Sequence[int] = (64, 128, 256, 512, 1024),
        decoder_channels: Sequence[int] = (512, 256, 128, 64, 64),
        dropout: float = 0.5,
        dropout_blocks: int = 2,
    ) -> None:
        super().__init__()
        skips = list(reversed(encoder_channels[:-1]))  # 512, 256, 128, 64
        in_ch = encoder_channels[-1]
        blocks = []
        for i, out_ch in enumerate(decoder_channels):
            blocks.append(DecoderBlock(in_ch, out_ch, dropout if i < dropout_blocks else 0.0))
            if i < len(skips):
                in_ch = out_ch + skips[i]
        self.blocks = nn.ModuleList(blocks)
        self.out_channels = decoder_channels[-1]

    def forward(self, features: Sequence[Tensor]) -> Tensor:
        *skips, x = features
        skips = skips[::-1]
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i < len(skips):
                x = torch.cat([skips[i], x], 1)
        return x
