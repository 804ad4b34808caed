"""DFD indoor: real DSLR defocus with registered depth (Carvalho et al., 3DRW ECCV-W 2018).

Published layout (``marcelampc/d3net_depth_estimation``, ``dfd_datasets/dfd_indoor``)::

    dfd_dataset_indoor_N2_8/rgb/{train,test}/<timestamp>.JPG    f/2.8, strongly defocused
    dfd_dataset_indoor_N2_8/depth/{train,test}/<timestamp>.png  16-bit PNG, millimetres
    dfd_dataset_indoor_N8/rgb/{train,test}/<timestamp>.JPG      same scenes at f/8 (sharper)
    dfd_dataset_indoor_N8/depth/{train,test}/...                same depth maps

Item: ``image`` = the f/2.8 photo (``defocus="real"``), ``aif`` = the f/8 photo of the same
scene (same file name; it is the sharpest image the dataset has, not a perfect all-in-focus
image), ``depth`` from the PNG. ``defocus="render"`` / ``"deferred"`` instead render synthetic
defocus from the f/8 photo and the depth (sim-to-real studies).

Pairing: RGB and depth names are capture timestamps of two devices (ISO 8601 with
microseconds), so they differ by a fraction of a second. Each f/2.8 photo is paired with the
depth map nearest in time, one to one (closest pairs first), if within ``tolerance_s``
(default 0.5 s; the published train split is within 0.31 s). A photo or depth map without a
partner (or an f/2.8 photo without its f/8 twin) is reported once (logging warning) and
skipped, never paired with another scene. A ``depth/<split>`` that is a plain text file
holding a relative path (a git symlink checked out without symlink support) is followed.

Splits: ``"train"`` = published train minus the validation scenes, ``"val"`` = the 11 scenes
of :data:`VAL_SCENES`, ``"trainval"`` = all of published train (81), ``"test"`` = published
test (29; not in ``../shared``). Consecutive captures often show the same place from a
slightly moved viewpoint, so the validation scenes are two runs of consecutive captures whose
places appear nowhere else in train: the copier corner (17:14:37 to 17:16:27) and the ONERA
poster / fire alarm / poster wall / lift hall (17:23:20 to 17:26:10).
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..io import read_depth, read_image
from .base import DefocusDataset, report_unmatched

WIDE = "dfd_dataset_indoor_N2_8"
NARROW = "dfd_dataset_indoor_N8"
SPLITS = ("train", "val", "trainval", "test")

#: validation scenes carved out of the published train split (f/2.8 file stems)
VAL_SCENES = (
    "2018-04-26T17:14:37.623943",
    "2018-04-26T17:15:01.922668",
    "2018-04-26T17:15:36.843792",
    "2018-04-26T17:16:27.518643",
    "2018-04-26T17:23:20.556479",
    "2018-04-26T17:23:36.205750",
    "2018-04-26T17:23:56.452109",
    "2018-04-26T17:24:49.705452",
    "2018-04-26T17:25:15.679965",
    "2018-04-26T17:25:51.440617",
    "2018-04-26T17:26:10.242356",
)

RGB_SUFFIXES = (".jpg", ".jpeg", ".png")


def parse_timestamp(stem: str) -> float | None:
    """``"2018-04-26T16:38:31.689710"`` -> POSIX seconds (naive, UTC assumed); None if not a timestamp."""
    try:
        return datetime.fromisoformat(stem).timestamp()
    except ValueError:
        return None


def resolve_dir(path: Path) -> Path:
    """Follow a git symlink stored as a text file holding a relative path."""
    if path.is_file() and path.stat().st_size < 4096:
        target = path.read_text(errors="replace").strip()
        candidate = (path.parent / target).resolve()
        if target and "\n" not in target and candidate.is_dir():
            return candidate
    return path


def pair_by_time(
    left: dict[str, float], right: dict[str, float], tolerance_s: float
) -> tuple[dict[str, str], list[str], list[str]]:
    """One-to-one nearest-timestamp matching.

    Args:
        left, right: name -> timestamp (seconds).
        tolerance_s: largest accepted time difference.

    Returns:
        ``(pairs left -> right, unmatched left names, unmatched right names)``. Closest pairs
        are taken first, so a file is never stolen by a farther partner.
    """
    ln, rn = sorted(left), sorted(right)
    if not ln or not rn:
        return {}, ln, rn
    lt = np.array([left[n] for n in ln])
    rt = np.array([right[n] for n in rn])
    diff = np.abs(lt[:, None] - rt[None, :])
    cand = np.argwhere(diff <= tolerance_s)
    order = np.argsort(diff[cand[:, 0], cand[:, 1]], kind="stable")
    pairs, used_r = {}, set()
    for i, j in cand[order]:
        if ln[i] in pairs or j in used_r:
            continue
        pairs[ln[i]] = rn[j]
        used_r.add(j)
    return pairs, [n for n in ln if n not in pairs], [rn[j] for j in range(len(rn)) if j not in used_r]


def _list(folder: Path, suffixes: tuple[str, ...]) -> dict[str, Path]:
    return {p.stem: p for p in sorted(folder.iterdir()) if p.is_file() and p.suffix.lower() in suffixes}


class DFDIndoor(DefocusDataset):
    """The DFD indoor dataset (real f/2.8 defocus, f/8 target, depth in mm).

    Args:
        root: the ``dfd_indoor`` folder holding ``dfd_dataset_indoor_N2_8`` and ``_N8``.
        split: ``"train"``, ``"val"``, ``"trainval"`` or ``"test"`` (see module docstring).
        defocus: ``"real"`` (default: the f/2.8 photo), ``"render"`` or ``"deferred"`` (render
            from the f/8 photo and the depth), or ``"none"`` (the f/8 photo itself as the input:
            does defocus help depth?).
        tolerance_s: largest RGB/depth timestamp difference accepted as one scene.
        **common: see :class:`~twohded.data.base.DefocusDataset`. Real defocus is only
            cropped and flipped; resizing it needs ``allow_real_resize=True``.
    """

    defocus_modes = ("real", "render", "deferred", "none")

    def __init__(self, root, split: str = "train", *, defocus: str = "real", tolerance_s: float = 0.5, **common) -> None:
        if defocus in ("render", "deferred"):
            common.setdefault("preset", "d3net_nyu")
        else:
            common.setdefault("resize", "crop")  # real defocus: crop, never resample
        if defocus == "none":
            common.setdefault("resize", "crop")  # the f/8 photo keeps its own (small) blur
        super().__init__(split, defocus=defocus, **common)
        root = Path(root)
        if not root.is_dir():
            raise InputError(f"{root}: DFD root folder does not exist")
        if split not in SPLITS:
            raise InputError(f"DFD split {split!r}: choose one of {', '.join(SPLITS)}")
        folder = "test" if split == "test" else "train"
        wide_rgb = root / WIDE / "rgb" / folder
        narrow_rgb = root / NARROW / "rgb" / folder
        depth_dir = self._depth_dir(root, folder)
        for d in (wide_rgb, narrow_rgb):
            if not d.is_dir():
                raise InputError(
                    f"{d}: folder missing; expected the published DFD layout {WIDE}/ and {NARROW}/, "
                    f"each with rgb/{folder}/ (and depth/{folder}/)"
                )
        self.root = root
        self.tolerance_s = float(tolerance_s)
        self.wide_paths, self.narrow_paths, self.depth_paths, self.names, self.time_offsets = self._pair(
            wide_rgb, narrow_rgb, depth_dir
        )
        if split in ("train", "val"):
            keep = [(n in VAL_SCENES) == (split == "val") for n in self.names]
            for attr in ("wide_paths", "narrow_paths", "depth_paths", "names", "time_offsets"):
                setattr(self, attr, [v for v, k in zip(getattr(self, attr), keep) if k])
        if not self.names:
            raise InputError(f"{root}: no DFD {split} scene left after pairing")

    @staticmethod
    def _depth_dir(root: Path, folder: str) -> Path:
        for base in (WIDE, NARROW):
            d = resolve_dir(root / base / "depth" / folder)
            if d.is_dir():
                return d
        raise InputError(f"{root / WIDE / 'depth' / folder}: depth folder missing (published DFD layout expected)")

    def _pair(self, wide_rgb: Path, narrow_rgb: Path, depth_dir: Path):
        wide = _list(wide_rgb, RGB_SUFFIXES)
        narrow = _list(narrow_rgb, RGB_SUFFIXES)
        depths = _list(depth_dir, (".png",))
        unparsable = [p.name for n, p in {**wide, **depths}.items() if parse_timestamp(n) is None]
        report_unmatched(f"DFD ({self.root})", unparsable, "file name is not an ISO timestamp")
        no_twin = sorted(set(wide) ^ set(narrow))
        report_unmatched(
            f"DFD ({self.root})",
            [f"{WIDE if n in wide else NARROW}/{(wide.get(n) or narrow.get(n)).name}" for n in no_twin],
            "no f/2.8 + f/8 pair with the same name",
        )
        left = {n: t for n in sorted(set(wide) & set(narrow)) if (t := parse_timestamp(n)) is not None}
        right = {n: t for n in depths if (t := parse_timestamp(n)) is not None}
        pairs, lone_rgb, lone_depth = pair_by_time(left, right, self.tolerance_s)
        report_unmatched(
            f"DFD ({self.root})",
            [f"rgb {wide[n].name}" for n in lone_rgb] + [f"depth {depths[n].name}" for n in lone_depth],
            f"no partner within {self.tolerance_s:g} s",
        )
        names = sorted(pairs)
        return (
            [wide[n] for n in names],
            [narrow[n] for n in names],
            [depths[pairs[n]] for n in names],
            names,
            [left[n] - right[pairs[n]] for n in names],
        )

    def _load(self, index: int) -> dict:
        depth_path = self.depth_paths[index]
        raw = {
            "aif": read_image(self.narrow_paths[index]),
            "depth": read_depth(depth_path)[None],
            "source": f"{self.wide_paths[index]} (depth {depth_path.name})",
        }
        if self.defocus == "real":
            raw["defocused"] = read_image(self.wide_paths[index])
        return raw
