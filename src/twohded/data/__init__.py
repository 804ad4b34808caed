"""Datasets: NYU Depth v2, Make3D, DFD indoor and iDFD (real defocus), any RGB-D folder, synthetic scenes.

Every dataset is a :class:`torch.utils.data.Dataset` built as ``Cls(root, split, **options)``
whose items are dicts (see :mod:`twohded.data.base`)::

    image  (3, H, W) float [0, 1]   defocused input
    depth  (1, H, W) float metres
    aif    (3, H, W) float [0, 1]   sharp target
    mask   (1, H, W) bool           valid depth
    name   str

Defocus is real (DFD f/2.8, iDFD Out_Of_Focus, a folder's ``defocused/``), rendered in ``__getitem__``
(``defocus="render"``), rendered on the GPU by the training loop (``defocus="deferred"`` +
:func:`render_batch`), or read from a ``twohded prepare`` cache (:class:`PreparedDataset`).
See ``docs/datasets.md``.
"""

from __future__ import annotations

from ..errors import InputError
from .base import DefocusDataset, base_dataset, render_spec_of
from .cache import PreparedDataset
from .defocus import render_batch
from .dfd import DFDIndoor
from .folder import RGBDFolder
from .idfd import IDFD
from .make3d import Make3D
from .nyu import NYUv2
from .synthetic_dataset import SyntheticScenes
from .transforms import Geometry, parse_size

#: names accepted by :func:`build_dataset`
DATASETS = {
    "nyu": NYUv2,
    "make3d": Make3D,
    "dfd": DFDIndoor,
    "idfd": IDFD,
    "folder": RGBDFolder,
    "synthetic": SyntheticScenes,
    "cache": PreparedDataset,
}

#: splits each dataset offers (RGBDFolder: None or any subfolder name)
SPLITS = {
    "nyu": ("train", "test"),
    "make3d": ("train", "test"),
    "dfd": ("train", "val", "test"),
    "idfd": ("train", "val", "test"),
    "synthetic": ("train", "val", "test"),
}


def build_dataset(name: str, root=None, split: str = "train", /, *, where: str = "build_dataset",
                  **options) -> DefocusDataset:
    """Build a dataset by name (for configs): ``nyu``, ``make3d``, ``dfd``, ``idfd``, ``folder``,
    ``synthetic`` or ``cache``. ``options`` go to the class (``size`` may be a string such as
    ``"256"`` or ``"640x480"`` (width x height)); an option the class does not declare is an
    :class:`InputError` starting with ``where`` (e.g. ``"data.options"``)."""
    try:
        cls = DATASETS[name.lower()]
    except KeyError:
        raise InputError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}") from None
    cls.check_options(options, where)
    if "size" in options:
        options["size"] = parse_size(options["size"])
    if cls is not SyntheticScenes and root is None:
        raise InputError(f"dataset {name!r} needs a root path")
    return cls(root, split, **options)


__all__ = [
    "DATASETS",
    "SPLITS",
    "DFDIndoor",
    "DefocusDataset",
    "IDFD",
    "Geometry",
    "Make3D",
    "NYUv2",
    "PreparedDataset",
    "RGBDFolder",
    "SyntheticScenes",
    "base_dataset",
    "build_dataset",
    "parse_size",
    "render_batch",
    "render_spec_of",
]
