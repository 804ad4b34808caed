"""Fused Triton kernels for one chunk of the layered renderer (opt-in, ``backend="triton"``).

Drop-in replacement of :func:`twohded.render._composite_chunk` (zero padding, the only
padding that function is called with). Two kernels per chunk of L layers:

1. ``_hblur_kernel``: forms ``(A_l, A_l * I)`` from the layer masks and the image on the fly
   and blurs it horizontally with the layer's own taps, writing ``(N, L, 1 + C, h, w)``.
   Fuses the mask multiply, the concatenation and the first depthwise convolution.
2. ``_vblur_composite_kernel``: blurs that vertically and composites the layers near to far
   in registers, keeping the running transmittance on chip; writes only the chunk's colour
   ``(N, C, h, w)``, coverage and transmittance ``(N, 1, h, w)``. Fuses the second depthwise
   convolution, the cumulative product, the multiplies and the sums over layers.

The pure-PyTorch path (:func:`twohded.render._composite_chunk`) stays the reference and the
default; ``tests/test_render_triton.py`` checks the two against each other in Triton's CPU
interpreter (``TRITON_INTERPRET=1``). GPU speed is not measured yet (docs/speed.md).
"""

from __future__ import annotations

import os

import torch

from .errors import InputError

try:  # optional dependency (extra "fast")
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - depends on the environment
    triton = None
    tl = None

BLOCK_H = 16
BLOCK_W = 32


def interpreter_enabled() -> bool:
    """True when Triton runs kernels in its CPU interpreter (``TRITON_INTERPRET=1``)."""
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def available(device: torch.device | str) -> bool:
    """Whether the Triton backend can run on ``device``: triton imports and the device is
    CUDA, or it is the CPU with the interpreter enabled."""
    if triton is None:
        return False
    kind = torch.device(device).type
    return kind == "cuda" or (kind == "cpu" and interpreter_enabled())


def check_available(device: torch.device | str) -> None:
    """Raise :class:`InputError` with one clear line if :func:`available` is False."""
    if triton is None:
        raise InputError("render backend 'triton' needs the triton package (pip install 'twohded[fast]')")
    if not available(device):
        raise InputError(
            f"render backend 'triton' runs on CUDA tensors (or on the CPU with TRITON_INTERPRET=1), got {device}"
        )


if triton is not None:

    @triton.jit
    def _hblur_kernel(
        img_ptr, mask_ptr, taps_ptr, out_ptr, L, C, H, W, K,
        BLOCK_H: tl.constexpr, BLOCK_W: tl.constexpr,
    ):
        """One (image n, layer l) pair and one BLOCK_H x BLOCK_W block: horizontal blur of
        the mask and of mask * image, zero padding. All tensors contiguous float32:
        img (N, C, H, W), mask (N, L, H, W), taps (N, L, K), out (N, L, 1 + C, H, W)."""
        nl = tl.program_id(0)
        n = nl // L
        rows = tl.program_id(1) * BLOCK_H + tl.arange(0, BLOCK_H)[:, None]
        cols = tl.program_id(2) * BLOCK_W + tl.arange(0, BLOCK_W)[None, :]
        inside = (rows < H) & (cols < W)
        r = K // 2
        hw = H * W
        mask_base = mask_ptr + nl * hw
        out_base = out_ptr + nl * (1 + C) * hw
        acc = tl.zeros((BLOCK_H, BLOCK_W), dtype=tl.float32)
        for j in range(K):
            src = cols + (j - r)
            ok = inside & (src >= 0) & (src < W)
            t = tl.load(taps_ptr + nl * K + j)
            acc += t * tl.load(mask_base + rows * W + src, mask=ok, other=0.0)
        tl.store(out_base + rows * W + cols, acc, mask=inside)
        for c in range(C):
            img_base = img_ptr + (n * C + c) * hw
            acc = tl.zeros((BLOCK_H, BLOCK_W), dtype=tl.float32)
            for j in range(K):
                src = cols + (j - r)
                ok = inside & (src >= 0) & (src < W)
                t = tl.load(taps_ptr + nl * K + j)
                m = tl.load(mask_base + rows * W + src, mask=ok, other=0.0)
                acc += t * (m * tl.load(img_base + rows * W + src, mask=ok, other=0.0))
            tl.store(out_base + (1 + c) * hw + rows * W + cols, acc, mask=inside)

    @triton.jit
    def _vblur_at(base, taps_row, rows, cols, inside, H, W, K, BLOCK_H: tl.constexpr, BLOCK_W: tl.constexpr):
        """Vertical blur (zero padding) of one (H, W) plane at a block of pixels."""
        r = K // 2
        acc = tl.zeros((BLOCK_H, BLOCK_W), dtype=tl.float32)
        for i in range(K):
            src = rows + (i - r)
            ok = inside & (src >= 0) & (src < H)
            t = tl.load(taps_row + i)
            acc += t * tl.load(base + src * W + cols, mask=ok, other=0.0)
        return acc

    @triton.jit
    def _vblur_composite_kernel(
        h_ptr, taps_ptr, transmit_ptr, colour_ptr, coverage_ptr, transmit_out_ptr, L, C, H, W, K,
        BLOCK_H: tl.constexpr, BLOCK_W: tl.constexpr,
    ):
        """One image n and one block: vertical blur of every layer of the chunk and
        near-to-far compositing with the transmittance kept in registers.
        h (N, L, 1 + C, H, W), taps (N, L, K), transmit (N, 1, H, W) in;
        colour (N, C, H, W), coverage and transmit_out (N, 1, H, W) out."""
        n = tl.program_id(0)
        rows = tl.program_id(1) * BLOCK_H + tl.arange(0, BLOCK_H)[:, None]
        cols = tl.program_id(2) * BLOCK_W + tl.arange(0, BLOCK_W)[None, :]
        inside = (rows < H) & (cols < W)
        hw = H * W
        pix = rows * W + cols
        t0 = tl.load(transmit_ptr + n * hw + pix, mask=inside, other=0.0)
        # coverage and the transmittance behind the chunk
        trans = t0
        cover = tl.zeros((BLOCK_H, BLOCK_W), dtype=tl.float32)
        for l in range(L):
            nl = n * L + l
            alpha = _vblur_at(h_ptr + nl * (1 + C) * hw, taps_ptr + nl * K, rows, cols, inside, H, W, K, BLOCK_H, BLOCK_W)
            cover += alpha * trans
            trans = trans * (1.0 - alpha)
        tl.store(coverage_ptr + n * hw + pix, cover, mask=inside)
        tl.store(transmit_out_ptr + n * hw + pix, trans, mask=inside)
        # colour, one channel at a time (alpha is recomputed: registers stay 2-D)
        for c in range(C):
            trans = t0
            acc = tl.zeros((BLOCK_H, BLOCK_W), dtype=tl.float32)
            for l in range(L):
                nl = n * L + l
                base = h_ptr + nl * (1 + C) * hw
                alpha = _vblur_at(base, taps_ptr + nl * K, rows, cols, inside, H, W, K, BLOCK_H, BLOCK_W)
                colour = _vblur_at(base + (1 + c) * hw, taps_ptr + nl * K, rows, cols, inside, H, W, K, BLOCK_H, BLOCK_W)
                acc += colour * trans
                trans = trans * (1.0 - alpha)
            tl.store(colour_ptr + (n * C + c) * hw + pix, acc, mask=inside)


def composite_chunk(
    image: torch.Tensor,
    masks: torch.Tensor,
    taps: torch.Tensor,
    transmit: torch.Tensor,
    dilate: bool,
    inside: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Triton version of :func:`twohded.render._composite_chunk` with zero padding.

    Args:
        image: ``(B, C, H, W)`` float32.
        masks: ``(B, L, H, W)`` bool layer masks, nearest first.
        taps: ``(B, L, K)`` 1-D Gaussian taps per layer (any float dtype; used in float32).
        transmit: ``(B, 1, H, W)`` transmittance left by all nearer layers.
        dilate: dilate the masks by the 7x7 octagon first (done in PyTorch).
        inside: ``(B, 1, H, W)`` bool, pixels of the real image (dilation is cut outside).

    Returns:
        colour ``(B, C, H, W)`` and coverage ``(B, 1, H, W)`` added by the chunk, and the
        transmittance ``(B, 1, H, W)`` behind it.
    """
    from .render import dilate_octagon  # render imports this module lazily; no cycle at import

    check_available(image.device)
    if image.dtype != torch.float32:
        raise InputError(f"render backend 'triton' needs a float32 image, got {image.dtype}")
    b, l, h, w = masks.shape
    c = image.shape[1]
    k = taps.shape[-1]
    if dilate:
        masks = dilate_octagon(masks)
        if inside is not None:
            masks = masks & inside
    masks = masks.to(torch.float32).contiguous()
    image = image.contiguous()
    taps = taps.to(torch.float32).contiguous()
    transmit = transmit.to(torch.float32).contiguous()
    hbuf = torch.empty(b, l, 1 + c, h, w, dtype=torch.float32, device=image.device)
    colour = torch.empty(b, c, h, w, dtype=torch.float32, device=image.device)
    coverage = torch.empty(b, 1, h, w, dtype=torch.float32, device=image.device)
    transmit_out = torch.empty_like(coverage)
    blocks = (triton.cdiv(h, BLOCK_H), triton.cdiv(w, BLOCK_W))
    _hblur_kernel[(b * l, *blocks)](image, masks, taps, hbuf, l, c, h, w, k, BLOCK_H=BLOCK_H, BLOCK_W=BLOCK_W)
    _vblur_composite_kernel[(b, *blocks)](
        hbuf, taps, transmit, colour, coverage, transmit_out, l, c, h, w, k, BLOCK_H=BLOCK_H, BLOCK_W=BLOCK_W
    )
    return colour, coverage, transmit_out
