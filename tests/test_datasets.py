"""The shared dataset tester: every class of ``twohded.data.DATASETS`` on a tiny fixture.

Like the model tester (tests/test_models.py), it checks the contract every dataset keeps:
item keys, ``image`` / ``aif`` ``(3, H, W)`` float in [0, 1], ``depth`` ``(1, H, W)`` metres,
finite and positive where ``mask`` says valid, a ``render_spec`` exactly when it renders,
``frame_info()``, declared options, and identical non-augmented items on every read. A dataset
added to ``DATASETS`` without a case here fails ``test_every_dataset_has_a_case``.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.io
import torch
from torch.utils.data import default_collate

from tests.conftest import shared_data_dir
from tests.test_data_idfd import all_stems, write_variant
from tests.test_data_make3d import _grid, _photo
from tests.test_data_nyu import _frames, write_v73
from twohded.data import DATASETS, render_batch
from twohded.data.base import FrameInfo
from twohded.render_spec import RenderSpec

SIZE = (24, 32)
KEYS = {"image", "depth", "aif", "mask", "name"}
DEFERRED_KEYS = {"render_depth", "render_seed", "pixel_scale"}


def _nyu(root):
    images, depths = _frames()
    write_v73(root / "nyu_depth_v2_labeled.mat", images[:3], depths[:3])
    scipy.io.savemat(root / "splits.mat", {"trainNdxs": np.array([[1], [3]], np.uint16), "testNdxs": np.array([[2]], np.uint16)})
    return root, "train", {"splits_file": root / "splits.mat", "defocus": "deferred", "size": SIZE}


def _make3d(root):
    (root / "Train400Img").mkdir()
    (root / "Train400Depth").mkdir()
    _photo(root / "Train400Img" / "img-a.jpg")
    _grid(root / "Train400Depth" / "depth_sph_corr-a.mat")
    return root, "train", {"defocus": "deferred", "size": SIZE}


def _dfd(root):
    path = shared_data_dir() / "dfd_indoor"
    if not (path / "dfd_dataset_indoor_N2_8").is_dir():
        pytest.skip(f"{path} not found: the DFD case needs the shared data")
    return path, "val", {"size": SIZE, "resize": "crop"}


def _idfd(root):
    write_variant(root / "Data" / "Processed" / "inpainting", all_stems(), (24, 32), np.random.default_rng(0))
    return root, "all", {}


def _folder(root):
    from PIL import Image

    rng = np.random.default_rng(0)
    for sub in ("rgb", "depth"):
        (root / sub).mkdir()
    for i in range(2):
        Image.fromarray(rng.integers(0, 255, (30, 40, 3), dtype=np.uint8)).save(root / "rgb" / f"f{i}.png")
        depth = np.full((30, 40), 900 + 400 * i, np.uint16)
        depth[:, 20:] = 0  # no reading: masked out
        depth[:, 30:] = 3000
        Image.fromarray(depth).save(root / "depth" / f"f{i}.png")
    return root, None, {"defocus": "render", "preset": "paper", "size": SIZE}


def _synthetic(root):
    return None, "val", {"n": 2, "height": 32, "width": 40, "defocus": "deferred", "preset": "syndof"}


def _cache(root):
    from twohded.data import SyntheticScenes
    from twohded.data.cache import prepare_cache

    scenes = SyntheticScenes(None, "val", n=2, height=32, width=40, defocus="deferred", augment=False)
    prepare_cache({"val": scenes}, root / "cache", {"dataset": "synthetic"}, device="cpu", progress=False)
    return root / "cache", "val", {}


CASES = {"nyu": _nyu, "make3d": _make3d, "dfd": _dfd, "idfd": _idfd, "folder": _folder, "synthetic": _synthetic, "cache": _cache}


@pytest.fixture(scope="module", params=sorted(CASES))
def case(request, tmp_path_factory):
    """(name, class, root, split, options) of one dataset's tiny fixture."""
    root, split, options = CASES[request.param](tmp_path_factory.mktemp(request.param))
    return request.param, DATASETS[request.param], root, split, {"augment": False, **options}


def _build(case):
    name, cls, root, split, options = case
    return cls(root, split, **options)


def test_every_dataset_has_a_case():
    assert set(DATASETS) == set(CASES)


def test_items_keep_the_contract(case):
    ds = _build(case)
    assert len(ds) >= 1 and len(ds.names) == len(ds)
    for i in range(min(2, len(ds))):
        item = ds[i]
        expected = KEYS | (DEFERRED_KEYS if ds.defocus == "deferred" else set())
        assert set(item) == expected, set(item) ^ expected
        h, w = item["depth"].shape[-2:]
        for key in ("image", "aif"):
            assert item[key].shape == (3, h, w) and item[key].dtype == torch.float32, key
            assert float(item[key].min()) >= 0.0 and float(item[key].max()) <= 1.0, key
        assert item["depth"].shape == (1, h, w) and item["depth"].dtype == torch.float32
        assert item["mask"].shape == (1, h, w) and item["mask"].dtype == torch.bool and bool(item["mask"].any())
        valid = item["depth"][item["mask"]]
        assert torch.isfinite(valid).all() and (valid > 0).all()
        assert isinstance(item["name"], str) and item["name"] == ds.names[i]
        if ds.geometry.size is not None:
            assert (h, w) == ds.geometry.size


def test_render_spec_exactly_when_it_renders(case):
    ds = _build(case)
    if ds.defocus in ("render", "deferred"):
        assert isinstance(ds.render_spec, RenderSpec)
    else:
        assert ds.render_spec is None
    if ds.defocus == "deferred":
        batch = default_collate([ds[0]])
        out = render_batch(batch, ds.render_spec)
        assert out["image"].shape == batch["aif"].shape
        assert float(out["image"].min()) >= 0.0 and float(out["image"].max()) <= 1.0


def test_frame_info_and_declared_options(case):
    name, cls, *_ = case
    ds = _build(case)
    info = ds.frame_info()
    assert isinstance(info, FrameInfo)
    assert info.dataset == ("synthetic" if name == "cache" else name)  # a cache names its source
    assert cls.dataset_name == name
    native = info.native_dataset()
    if native is not None:
        assert set(ds.names) <= set(native.names)
    names = cls.option_names()
    assert {"size", "resize", "defocus", "preset", "render_mode", "blur_at", "seed"} <= set(names)
    for option in cls.prepare_options:
        assert option.name in names
        cls.option_default(option.name)  # the default is read from the constructor


def test_unaugmented_items_are_deterministic(case):
    a, b = _build(case), _build(case)
    for x, y in ((a[0], a[0]), (a[0], b[0])):
        assert x.keys() == y.keys()
        for k, v in x.items():
            assert torch.equal(v, y[k]) if isinstance(v, torch.Tensor) else v == y[k], k
