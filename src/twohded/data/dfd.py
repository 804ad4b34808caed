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

All-in-focus target: ``aif_target="published"`` (default) is the f/8 photo as it is, offset
from the f/2.8 one by up to ~12 px; ``"registered"`` warps it onto the f/2.8 frame first
(:func:`twohded.registration.register_onto`: phase correlation + affine Gauss-Newton, cubic
resampling; computed once per file and process, about 0.5 s a frame). The depth map stays as
published (registered to the f/2.8 photo).

Pairing: RGB and depth names are capture timestamps of two devices (ISO 8601 with
microseconds), so they differ by a fraction of a second. Each f/2.8 photo is paired with the
depth map nearest in time, one to one (closest pairs first), if within ``tolerance_s``
(default 0.5 s; the published train split is within 0.31 s). A photo or depth map without a
partner (or an f/2.8 photo without its f/8 twin) is reported once (logging warning) and
skipped, never paired with another scene. A ``depth/<split>`` that is a plain text file
holding a relative path (a git symlink checked out without symlink support) is followed.

Splits: ``"train"`` = published train minus the validation scenes, ``"val"`` = the 11 scenes
of :data:`VAL_SCENES`, ``"trainval"`` = all of published train (81), ``"test"`` = published
test (29; not in ``../shared``), ``"cv<k>-train"`` / ``"cv<k>-val"`` (k = 0..4) = the
cross-validation folds by place of :data:`CV_FOLDS` (model selection: mean and spread over
the five folds, never one 11-scene split). Consecutive captures often show the same place from a
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
from .base import DatasetOption, DefocusDataset, report_unmatched

WIDE = "dfd_dataset_indoor_N2_8"
NARROW = "dfd_dataset_indoor_N8"
#: the five cross-validation folds by place (see :data:`CV_FOLDS`)
N_FOLDS = 5
SPLITS = ("train", "val", "trainval", "test") + tuple(
    f"cv{k}-{part}" for k in range(N_FOLDS) for part in ("train", "val"))

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

#: K-fold cross-validation by place over the 81 published train scenes: fold k holds the f/2.8
#: captures from ``CV_FOLDS[k]`` up to the next fold's start (sorted by capture time). The
#: captures walk through the building every ~30 s, so consecutive captures often show one place;
#: the folds are contiguous runs of captures, cut at long pauses (45.5 s, 56.2 s, 402 s, 48.9 s),
#: which gives 18 / 12 / 19 / 13 / 19 scenes. Fold 3 holds the copier corner and fold 4 the
#: ONERA poster / lift hall runs of the 11-scene ``val`` split.
CV_FOLDS = (
    "2018-04-26T16:38:31.689710",
    "2018-04-26T16:47:51.864107",
    "2018-04-26T16:53:59.081380",
    "2018-04-26T17:09:15.377798",
    "2018-04-26T17:17:16.416468",
)

RGB_SUFFIXES = (".jpg", ".jpeg", ".png")
AIF_TARGETS = ("published", "registered")

#: registered f/8 photos of this process, by (f/8 path, f/2.8 path)
_REGISTERED: dict = {}  # (f/8 path, f/2.8 path) -> (3, H, W) tensor


def registered_narrow(narrow_path: Path, wide_path: Path):
    """The f/8 photo warped onto the f/2.8 frame, ``(3, H, W)`` float in [0, 1] (cached)."""
    import torch

    from ..registration import register_onto

    key = (str(narrow_path), str(wide_path))
    if key not in _REGISTERED:
        narrow = read_image(narrow_path).numpy()
        wide = read_image(wide_path).numpy()
        if narrow.shape != wide.shape:
            raise InputError(f"{narrow_path}: f/8 photo is {narrow.shape[2]}x{narrow.shape[1]}, its f/2.8 twin "
                             f"{wide_path.name} {wide.shape[2]}x{wide.shape[1]} (WxH)")
        _REGISTERED[key] = torch.from_numpy(register_onto(narrow, wide)[0])
    return _REGISTERED[key].clone()


def fold_of(stem: str) -> int:
    """Cross-validation fold (0 .. N_FOLDS-1) of a DFD scene, by its f/2.8 capture time stem."""
    k = 0
    for i, start in enumerate(CV_FOLDS):
        if stem >= start:
            k = i
    return k


def split_keeps(split: str, stem: str) -> bool:
    """Whether scene ``stem`` (of the published train folder) belongs to ``split``."""
    if split == "trainval":
        return True
    if split in ("train", "val"):
        return (stem in VAL_SCENES) == (split == "val")
    k, part = split[2:].split("-")
    return (fold_of(stem) == int(k)) == (part == "val")


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
        aif_target: ``"published"`` (the f/8 photo as it is) or ``"registered"`` (warped onto
            the f/2.8 frame; see the module docstring).
        **common: see :class:`~twohded.data.base.DefocusDataset`. Real defocus is only
            cropped and flipped; resizing it needs ``allow_real_resize=True``.
    """

    defocus_modes = ("real", "render", "deferred", "none")
    dataset_name = "dfd"
    prepare_options = (DatasetOption("tolerance_s", "dfd: largest RGB/depth timestamp difference (default 0.5)", type=float),)

    def __init__(self, root, split: str = "train", *, defocus: str = "real", tolerance_s: float = 0.5,
                 aif_target: str = "published", **common) -> None:
        if aif_target not in AIF_TARGETS:
            raise InputError(f"DFD aif_target={aif_target!r}: choose one of {', '.join(AIF_TARGETS)}")
        self.aif_target = aif_target
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
        if split != "test":
            keep = [split_keeps(split, n) for n in self.names]
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
        if self.aif_target == "registered":
            aif = registered_narrow(self.narrow_paths[index], self.wide_paths[index])
        else:
            aif = read_image(self.narrow_paths[index])
        raw = {
            "aif": aif,
            "depth": read_depth(depth_path)[None],
            "source": f"{self.wide_paths[index]} (depth {depth_path.name})",
        }
        if self.defocus == "real":
            raw["defocused"] = read_image(self.wide_paths[index])
        return raw
