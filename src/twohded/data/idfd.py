"""iDFD: the 2HDED:NET authors' real defocus dataset (Nazir et al.; repository ``saqibnaziir/iDFD``).

764 indoor scenes from a Nikon DSLR with registered Azure Kinect depth: an all-in-focus and an
out-of-focus photo of each. Published layout (about 1 GB)::

    Data/Raw/        1050 x 1050   inpainting/  and  without_inpainting/
    Data/Processed/   640 x 480    inpainting/  (764 frames) and without_inpainting/ (752)
        <variant>/All_In_Focus/<Scene>_<k>.JPG|.jpg    sharp target
        <variant>/Out_Of_Focus/<Scene>_<k>.JPG|.jpg    real defocused input
        <variant>/Depth/<Scene>_<k>.png                16-bit PNG, millimetres

``root`` is the repository (holding ``Data/``), ``Data/`` itself, or the resolution folder.
``variant`` is ``"inpainting"`` (depth holes filled) or ``"without_inpainting"``; the two are
different subsets of frames, not the same frames twice. ``resolution`` is ``"processed"``
(640 x 480) or ``"raw"`` (1050 x 1050). Folder names and file extensions are matched without
regard to case (``.JPG`` and ``.jpg`` mix in one folder).

Pairing: the three folders pair by file stem; a stem missing from any of them (Raw is not
fully paired: 757 / 756 / 764 files) is reported in one logging warning with the counts and
the first names, and skipped. Two files of one folder with the same stem (``a.JPG`` and
``a.jpg``) are an error. Frames are in natural order (``Apartment1_2`` before
``Apartment1_10``).

Depth: the capture scripts store Kinect depth as 16-bit millimetres; that is what is read. An
8-bit depth PNG would hold a per-image normalisation, not metres: it is refused with an
:class:`~twohded.errors.InputError` naming the file.

Splits (none are published): by scene, where the scene of ``<Scene>_<k>`` is ``<Scene>``
(``Bedroom_room2_3`` -> ``Bedroom_room2``), so that no scene is in two splits. A scene goes to
``test`` if ``h < test_fraction``, to ``val`` if ``h < test_fraction + val_fraction``, else to
``train``, where ``h`` in [0, 1) is the first 8 bytes of SHA-256(``"idfd:" + scene``) over
2^64 (:func:`scene_split`). Defaults 0.1 / 0.1 (about 80 / 10 / 10 % of the scenes; the frame
counts follow the scenes' sizes). The hash depends on the scene name only: a scene is in the
same split in both variants and both resolutions, on every machine, with no seed to keep.
``"all"`` is every frame.

Camera: no camera parameters are published, so iDFD has no renderer preset. Training uses the
real defocus: ``image`` is the Out_Of_Focus photo (``defocus="real"``, the default), ``aif`` the
All_In_Focus photo; real defocus is cropped, never resized (``resize="crop"``).
``defocus="render"`` / ``"deferred"`` need a camera you give (``preset=``); ``defocus="none"``
feeds the all-in-focus photo itself.

Licence: CC BY-NC-SA (non-commercial, share alike); cite the 2HDED:NET paper when you use it.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from ..errors import InputError
from ..io import read_depth, read_image
from .base import DatasetOption, DefocusDataset, report_unmatched

VARIANTS = ("inpainting", "without_inpainting")
RESOLUTIONS = {"processed": "Processed", "raw": "Raw"}
FOLDERS = ("All_In_Focus", "Out_Of_Focus", "Depth")
RGB_SUFFIXES = (".jpg", ".jpeg", ".png")
SPLITS = ("train", "val", "test", "all")
VAL_FRACTION = 0.1
TEST_FRACTION = 0.1
#: PIL modes of a 16-bit single-channel PNG
METRIC_MODES = ("I;16", "I;16B", "I;16L", "I")

_SCENE = re.compile(r"^(?P<scene>.+)_(?P<k>\d+)$")


def natural_key(name: str) -> tuple:
    """Sort key putting ``Apartment1_2`` before ``Apartment1_10`` (digit runs compare as numbers)."""
    return tuple((0, int(part), "") if part.isdigit() else (1, 0, part.lower())
                 for part in re.split(r"(\d+)", name) if part)


def scene_of(stem: str) -> str:
    """``"Bedroom_room2_3"`` -> ``"Bedroom_room2"``: the stem without its trailing ``_<k>``."""
    m = _SCENE.match(stem)
    return m.group("scene") if m else stem


def scene_split(scene: str, val_fraction: float = VAL_FRACTION, test_fraction: float = TEST_FRACTION) -> str:
    """``"train"``, ``"val"`` or ``"test"`` for a scene name (see the module docstring)."""
    h = int.from_bytes(hashlib.sha256(f"idfd:{scene}".encode()).digest()[:8], "big") / 2.0**64
    if h < test_fraction:
        return "test"
    return "val" if h < test_fraction + val_fraction else "train"


def check_metric_depth(path: Path) -> None:
    """Raise :class:`InputError` unless ``path`` is a 16-bit single-channel PNG (millimetres)."""
    try:
        with Image.open(path) as img:
            mode = img.mode
    except (UnidentifiedImageError, OSError) as exc:
        raise InputError(f"{path}: cannot read iDFD depth: {exc}") from None
    if mode not in METRIC_MODES:
        bits = "8-bit" if mode in ("L", "P", "LA", "RGB", "RGBA", "1") else "not 16-bit single-channel"
        raise InputError(
            f"{path}: iDFD depth PNG is {bits} (PIL mode {mode}): a per-image normalisation, not metric depth; "
            "twohded needs the 16-bit millimetre depth maps"
        )


def _child(parent: Path, name: str) -> Path | None:
    """``parent/name`` matched without regard to case (None if absent)."""
    exact = parent / name
    if exact.is_dir():
        return exact
    for p in sorted(parent.iterdir()) if parent.is_dir() else ():
        if p.is_dir() and p.name.lower() == name.lower():
            return p
    return None


def _list(folder: Path, suffixes: tuple[str, ...]) -> dict[str, Path]:
    """Stem -> file, suffixes matched without regard to case; a repeated stem is an error."""
    out: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        if not (p.is_file() and p.suffix.lower() in suffixes):
            continue
        if p.stem in out:
            raise InputError(f"{p}: ambiguous: {out[p.stem].name} has the same stem in {folder}")
        out[p.stem] = p
    return out


def find_variant(root: Path, resolution: str, variant: str) -> Path:
    """The folder holding All_In_Focus/, Out_Of_Focus/ and Depth/ of one resolution and variant."""
    if resolution not in RESOLUTIONS:
        raise InputError(f"iDFD resolution {resolution!r}: choose one of {', '.join(RESOLUTIONS)}")
    if variant not in VARIANTS:
        raise InputError(f"iDFD variant {variant!r}: choose one of {', '.join(VARIANTS)}")
    if not root.is_dir():
        raise InputError(f"{root}: iDFD root folder does not exist")
    res_name = RESOLUTIONS[resolution]
    data = _child(root, "Data")
    candidates = [_child(data, res_name) if data is not None else None, _child(root, res_name),
                  root if root.name.lower() == res_name.lower() else None]
    for res in candidates:
        if res is not None and (found := _child(res, variant)) is not None:
            return found
    raise InputError(
        f"{root}: no iDFD {res_name}/{variant}/ folder (expected Data/{res_name}/{variant}/ with "
        f"{', '.join(FOLDERS)})"
    )


def pair_folders(folder: Path, what: str) -> tuple[list[str], dict[str, dict[str, Path]]]:
    """Stems present in all three folders (natural order) and the files of each folder; the
    stems missing somewhere are reported in one warning."""
    files = {}
    for name in FOLDERS:
        d = _child(folder, name)
        if d is None:
            raise InputError(f"{folder}: iDFD folder {name}/ missing (expected {', '.join(FOLDERS)})")
        files[name] = _list(d, (".png",) if name == "Depth" else RGB_SUFFIXES)
    stems = set.intersection(*(set(f) for f in files.values()))
    lone = sorted(set.union(*(set(f) for f in files.values())) - stems, key=natural_key)
    counts = " / ".join(f"{len(files[n])} {n}" for n in FOLDERS)
    report_unmatched(
        what,
        [f"{s} (no {', '.join(n for n in FOLDERS if s not in files[n])})" for s in lone],
        f"{counts} files, {len(stems)} complete",
    )
    return sorted(stems, key=natural_key), files


class IDFD(DefocusDataset):
    """iDFD real defocus: Out_Of_Focus photo -> depth (mm PNG) and All_In_Focus photo.

    Args:
        root: the iDFD repository (with ``Data/``), ``Data/`` or the resolution folder.
        split: ``"train"``, ``"val"``, ``"test"`` (by scene, see the module docstring) or ``"all"``.
        variant: ``"inpainting"`` (default) or ``"without_inpainting"``.
        resolution: ``"processed"`` (640 x 480, default) or ``"raw"`` (1050 x 1050).
        defocus: ``"real"`` (default), ``"render"`` / ``"deferred"`` (needs ``preset=``) or ``"none"``.
        val_fraction, test_fraction: shares of the scenes in val and test.
        **common: see :class:`~twohded.data.base.DefocusDataset` (real defocus: ``resize="crop"``).
    """

    defocus_modes = ("real", "render", "deferred", "none")
    dataset_name = "idfd"
    prepare_options = (
        DatasetOption("variant", "idfd: depth with holes inpainted (default) or not (a different subset of frames)",
                      choices=VARIANTS),
        DatasetOption("resolution", "idfd: Processed 640x480 (default) or Raw 1050x1050", choices=tuple(RESOLUTIONS)),
    )

    def __init__(self, root, split: str = "train", *, variant: str = "inpainting",
                 resolution: str = "processed", defocus: str = "real",
                 val_fraction: float = VAL_FRACTION, test_fraction: float = TEST_FRACTION, **common) -> None:
        if defocus == "real":
            common.setdefault("resize", "crop")
        super().__init__(split, defocus=defocus, **common)
        if split not in SPLITS:
            raise InputError(f"iDFD split {split!r}: choose one of {', '.join(SPLITS)}")
        if not (0 <= val_fraction and 0 <= test_fraction and val_fraction + test_fraction < 1):
            raise InputError(f"iDFD val_fraction={val_fraction}, test_fraction={test_fraction}: need >= 0, sum < 1")
        resolution, variant = str(resolution).lower(), str(variant).lower()
        self.root = Path(root)
        self.variant, self.resolution = variant, resolution
        self.folder = find_variant(self.root, resolution, variant)
        stems, files = pair_folders(self.folder, f"iDFD {RESOLUTIONS[resolution]}/{variant} ({self.folder})")
        if split != "all":
            stems = [s for s in stems if scene_split(scene_of(s), val_fraction, test_fraction) == split]
        if not stems:
            raise InputError(f"{self.folder}: no iDFD frame in split {split!r}")
        self.names = stems
        self.scenes = [scene_of(s) for s in stems]
        self.aif_paths = [files["All_In_Focus"][s] for s in stems]
        self.defocused_paths = [files["Out_Of_Focus"][s] for s in stems]
        self.depth_paths = [files["Depth"][s] for s in stems]
        check_metric_depth(self.depth_paths[0])  # fail at construction on 8-bit depth

    def _load(self, index: int) -> dict:
        depth_path = self.depth_paths[index]
        check_metric_depth(depth_path)
        raw = {
            "aif": read_image(self.aif_paths[index]),
            "depth": read_depth(depth_path)[None],
            "source": f"{self.defocused_paths[index]} (depth {depth_path.name})",
        }
        if self.defocus == "real":
            raw["defocused"] = read_image(self.defocused_paths[index])
        return raw
