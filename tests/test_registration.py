"""Registration of one photo onto another (twohded.registration)."""

import numpy as np
import pytest
from scipy import ndimage as ndi

from twohded.registration import Affine, phase_shift, register_affine, register_onto, warp


def _texture(shape=(120, 160), seed=0):
    return ndi.gaussian_filter(np.random.default_rng(seed).random(shape), 2.0)


@pytest.mark.parametrize("shift", [(1.3, -2.6), (-7.4, 11.2), (0.0, 0.0)])
def test_register_affine_recovers_a_shift(shift):
    fixed = _texture()
    moving = ndi.shift(fixed, shift, order=3, mode="reflect")  # moving(p) = fixed(p - s)
    affine = register_affine(moving, fixed)
    assert np.allclose(affine.matrix, np.eye(2), atol=2e-3)
    assert np.allclose(affine.offset, shift, atol=0.05)  # fixed(p) = moving(p + s)
    back = warp(moving[None], affine)[0]
    assert np.abs(back - fixed)[20:-20, 20:-20].max() < 0.01 * np.ptp(fixed)


def test_phase_shift_integer_and_subpixel():
    fixed = _texture(seed=1)
    moving = ndi.shift(fixed, (-3.0, 5.0), order=3, mode="reflect")
    assert np.allclose(phase_shift(fixed, moving), (3.0, -5.0), atol=0.3)


def test_register_affine_recovers_a_small_scale_with_gain_and_blur():
    fixed = _texture((160, 200), seed=2)
    h, w = fixed.shape
    centre = np.array([(h - 1) / 2, (w - 1) / 2])
    true = Affine(np.eye(2) * 1.01, centre - 1.01 * centre + np.array([2.0, -1.0]))
    # moving(q) = fixed(true^-1 q): warp(moving, true) = fixed
    inv = np.linalg.inv(true.matrix)
    moving = ndi.affine_transform(fixed, inv, -inv @ true.offset, order=3, mode="reflect")
    moving = 0.7 * ndi.gaussian_filter(moving, 1.0) + 0.1  # other exposure, blurrier
    affine = register_affine(moving, fixed)
    assert np.allclose(affine.matrix, true.matrix, atol=2e-3)
    assert np.allclose(affine.offset, true.offset, atol=0.2)
    assert affine.shift_at(tuple(centre)) == pytest.approx((-2.0, 1.0), abs=0.1)


def test_register_onto_keeps_shape_dtype_and_range():
    fixed = np.stack([_texture(seed=3)] * 3).astype(np.float32)
    moving = np.stack([ndi.shift(c, (2.0, 3.0), order=3, mode="reflect") for c in fixed]).astype(np.float32)
    out, affine = register_onto(moving, fixed)
    assert out.shape == fixed.shape and out.dtype == np.float32
    assert 0.0 <= out.min() and out.max() <= 1.0
    assert len(affine.to_list()) == 6
    assert np.abs(out - fixed)[:, 20:-20, 20:-20].mean() < 0.01
