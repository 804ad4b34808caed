"""Any RGB-D folder: ``rgb/`` (+ optional ``aif/``, ``defocused/``) and ``depth/``, matched by stem.

Layout (at ``root``, at ``root/<split>``, or split inside each folder as D3-Net and the
2HDED:NET code keep it: ``root/rgb/<split>``, ``root/depth/<split>`` ...)::

    rgb/<stem>.{png,jpg,...}        the photo
    aif/<stem>.{png,jpg,...}        optional: the sharp (all-in-focus) target
    defocused/<stem>.{png,jpg,...}  optional: a real defocused photo of the same scene
    depth/<stem>.png                16-bit PNG, ``depth_scale`` metres per unit (default mm)
    depth/<stem>.npy                float array (H, W) in metres (times ``npy_scale``)

Roles (``defocus="auto"``, the default):

- ``defocused/`` present: it is the real input, the target is ``aif/`` if present, else ``rgb/``;
- else ``aif/`` present: ``rgb/`` is the real (defocused) input, ``aif/`` the target;
- else: ``rgb/`` is taken as sharp and the defocus is rendered (``"render"``).

``defocus="render"`` / ``"deferred"`` always render from the target (``aif/`` or ``rgb/``).
Files are matched by stem; a file without a partner in every folder the roles need is
reported once and skipped. ``.exr`` depth is not read (no maintained EXR reader among the
dependencies): convert it to ``.npy`` in metres.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..errors import InputError
from ..io import DEPTH_SUFFIXES, IMAGE_SUFFIXES, read_depth, read_image
from .base import DatasetOption, DefocusDataset, report_unmatched


def _index(folder: Path, suffixes: tuple[str, ...]) -> dict[str, Path]:
    out: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        if p.is_file() and p.suffix.lower() in suffixes and not p.name.startswith("."):
            out.setdefault(p.stem, p)
    return out


class RGBDFolder(DefocusDataset):
    """A folder of RGB(-defocused)-D frames.

    Args:
        root: the folder (holding ``rgb/`` and ``depth/``, or ``<split>/rgb`` ...).
        split: a subfolder name (``"train"``, ``"val"``, ``"test"`` ...) or None / ``"all"``
            to read ``root`` itself.
        defocus: ``"auto"``, ``"real"``, ``"render"`` or ``"deferred"`` (see module docstring).
        depth_scale: metres per unit of the 16-bit depth PNGs (default 0.001: millimetres).
        npy_scale: metres per unit of ``.npy`` depth (default 1: metres).
        **common: see :class:`~twohded.data.base.DefocusDataset`.
    """

    defocus_modes = ("real", "render", "deferred")
    dataset_name = "folder"
    prepare_options = (DatasetOption("depth_scale", "folder: metres per 16-bit PNG unit (default 0.001)", type=float),)

    def __init__(
        self,
        root,
        split: str | None = None,
        *,
        defocus: str = "auto",
        depth_scale: float = 1e-3,
        npy_scale: float = 1.0,
        **common,
    ) -> None:
        root = Path(root)
        if not root.is_dir():
            raise InputError(f"{root}: RGB-D folder does not exist")
        dirs = self._layout(root, split)
        base = dirs["rgb"].parent if dirs["rgb"].name == "rgb" else root
        for sub in ("rgb", "depth"):
            if not dirs[sub].is_dir():
                raise InputError(f"{dirs[sub].parent}: no {dirs[sub].name}/ folder (expected rgb/ and depth/, optional aif/ and defocused/)")
        has_aif, has_defocused = dirs["aif"].is_dir(), dirs["defocused"].is_dir()
        if defocus == "auto":
            defocus = "real" if (has_aif or has_defocused) else "render"
        if defocus == "real" and not (has_aif or has_defocused):
            raise InputError(f"{base}: defocus='real' needs a defocused/ (or aif/ target) folder beside rgb/")
        if defocus != "real":
            common.setdefault("preset", "d3net_nyu")
        else:
            common.setdefault("resize", "crop")  # real defocus: crop, never resample
        super().__init__(split or "all", defocus=defocus, **common)
        self.root = base
        self.depth_scale = float(depth_scale)
        self.npy_scale = float(npy_scale)

        folders = {"rgb": _index(dirs["rgb"], IMAGE_SUFFIXES), "depth": self._depth_index(dirs["depth"])}
        if has_aif:
            folders["aif"] = _index(dirs["aif"], IMAGE_SUFFIXES)
        if has_defocused and defocus == "real":
            folders["defocused"] = _index(dirs["defocused"], IMAGE_SUFFIXES)
        # the target is aif/ if present, else rgb/; the real input is defocused/ if present, else rgb/
        self.target_key = "aif" if has_aif else "rgb"
        self.input_key = ("defocused" if has_defocused else "rgb") if defocus == "real" else None
        stems = set.intersection(*(set(v) for v in folders.values()))
        lonely = sorted(f"{k}/{p.name}" for k, files in folders.items() for s, p in files.items() if s not in stems)
        report_unmatched(f"RGB-D folder {base}", lonely, "no file with the same stem in every folder")
        self.names = sorted(stems)
        if not self.names:
            raise InputError(f"{base}: no frame has files with the same stem in {', '.join(f + '/' for f in folders)}")
        self.files = {k: [v[s] for s in self.names] for k, v in folders.items()}

    @staticmethod
    def _layout(root: Path, split: str | None) -> dict[str, Path]:
        kinds = ("rgb", "aif", "defocused", "depth")
        if split in (None, "all"):
            return {k: root / k for k in kinds}
        if (root / split / "rgb").is_dir():
            return {k: root / split / k for k in kinds}
        if (root / "rgb" / split).is_dir():  # the D3-Net / 2HDED:NET layout rgb/<split>/
            return {k: root / k / split for k in kinds}
        if (root / "rgb").is_dir() and any(p.is_file() for p in (root / "rgb").iterdir()):
            raise InputError(f"{root}: no {split}/ subfolder (this folder has no splits: use split=None)")
        raise InputError(f"{root}: split {split!r} missing (expected {split}/rgb/ and {split}/depth/, or rgb/{split}/ and depth/{split}/)")

    @staticmethod
    def _depth_index(folder: Path) -> dict[str, Path]:
        exr = [p.name for p in folder.glob("*.exr")] + [p.name for p in folder.glob("*.EXR")]
        files = _index(folder, DEPTH_SUFFIXES)
        if exr and not files:
            raise InputError(
                f"{folder}: .exr depth is not supported (no EXR reader installed); convert to .npy in "
                "metres or 16-bit PNG in millimetres"
            )
        return files

    def _read_depth(self, path: Path) -> torch.Tensor:
        if path.suffix.lower() == ".npy":
            return read_depth(path) * self.npy_scale
        return read_depth(path, png_scale_m=self.depth_scale)

    def _load(self, index: int) -> dict:
        depth_path = self.files["depth"][index]
        target = self.files[self.target_key][index]
        raw = {"aif": read_image(target), "depth": self._read_depth(depth_path)[None], "source": f"{target} (depth {depth_path})"}
        if self.input_key is not None:
            raw["defocused"] = read_image(self.files[self.input_key][index])
        return raw

