"""The ``twohded prepare`` cache: (defocused, depth, aif) samples that load fast.

Layout of a cache folder ``OUT``::

    OUT/settings.json            what was prepared (dataset, root, preset, size, ...), written first
    OUT/<split>/<index>.npz      one sample each (uncompressed numpy archive):
                                   image  (3, H, W) uint8   defocused input
                                   aif    (3, H, W) uint8   sharp target
                                   depth  (1, H, W) float32 metres (0 = no reading)
                                   mask   (1, H, W) bool    valid depth
                                   name   str
                                   stats  (4,) float32      depth min/max (m), blur sigma min/max (px)
    OUT/manifest.json            written last: splits, file lists, names, summary

Every file is written atomically (temporary file + rename), so a killed run leaves only
complete samples; running the same command again skips them and finishes the rest. A run
with different settings on the same ``OUT`` is refused, and so is a second run while one is
writing (``OUT/.twohded.lock``, see :func:`twohded.io.folder_lock`). ``manifest.json`` exists only once
every sample is there: :class:`PreparedDataset` needs it.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import torch

from ..errors import InputError
from ..io import atomic_write, folder_lock, write_error
from .base import DefocusDataset, FrameInfo
from .defocus import blur_stats, render_batch

FORMAT = "twohded-prepare-cache"
VERSION = 1
MANIFEST = "manifest.json"
SETTINGS = "settings.json"


def sample_path(out: Path, split: str, index: int) -> Path:
    return Path(out) / split / f"{index:06d}.npz"


def _to_u8(image: torch.Tensor) -> np.ndarray:
    return np.round(image.detach().float().cpu().clamp(0, 1).numpy() * 255.0).astype(np.uint8)


def write_sample(path: Path, image, aif, depth, mask, name: str, stats) -> None:
    """Write one sample atomically (see module docstring for the arrays)."""
    with atomic_write(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(
                fh,
                image=_to_u8(image),
                aif=_to_u8(aif),
                depth=depth.detach().float().cpu().numpy(),
                mask=mask.detach().bool().cpu().numpy(),
                name=np.array(str(name)),
                stats=np.asarray(stats, dtype=np.float32),
            )


def read_sample(path: Path) -> dict:
    """One cached sample as tensors: image/aif ``(3, H, W)`` float [0, 1], depth, mask, name."""
    try:
        with np.load(path, allow_pickle=False) as z:
            return {
                "defocused": torch.from_numpy(z["image"]).float().div_(255.0),
                "aif": torch.from_numpy(z["aif"]).float().div_(255.0),
                "depth": torch.from_numpy(z["depth"].copy()),
                "mask": torch.from_numpy(z["mask"].copy()),
                "name": str(z["name"]),
            }
    except (OSError, ValueError, KeyError, EOFError) as exc:
        raise InputError(f"{path}: cannot read cached sample: {exc}") from None


def read_stats(path: Path) -> np.ndarray:
    with np.load(path, allow_pickle=False) as z:
        return np.asarray(z["stats"], dtype=np.float64)


def sample_stats(depth: torch.Tensor, mask: torch.Tensor, blur: tuple[float, float] | None) -> list[float]:
    d = depth[mask]
    lo, hi = (float(d.min()), float(d.max())) if d.numel() else (math.nan, math.nan)
    b = blur if blur is not None else (math.nan, math.nan)
    return [lo, hi, float(b[0]), float(b[1])]


# ---------------------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------------------


def _check_settings(out: Path, settings: dict) -> None:
    path = out / SETTINGS
    if path.exists():
        try:
            old = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise InputError(f"{path}: unreadable cache settings ({exc}); remove {out} or use another --out") from None
        if old != settings:
            diff = sorted(k for k in set(old) | set(settings) if old.get(k) != settings.get(k))
            raise InputError(
                f"{out}: already holds a cache prepared with other settings ({', '.join(diff)} differ); "
                "use another --out or delete it"
            )
        return
    with atomic_write(path) as tmp:
        tmp.write_text(json.dumps(settings, indent=2, sort_keys=True))


def _clean_temporaries(out: Path) -> None:
    for tmp in out.glob("**/.*.tmp*"):
        tmp.unlink(missing_ok=True)


def _collate(items: list[dict]) -> dict:
    from torch.utils.data import default_collate

    return default_collate(items)


def prepare_cache(
    datasets: dict[str, DefocusDataset],
    out: str | Path,
    settings: dict,
    *,
    device: str | torch.device | None = None,
    batch_size: int = 8,
    workers: int = 0,
    progress: bool = True,
    limit: int | None = None,
) -> dict:
    """Write (or complete) a cache from datasets in ``"real"`` or ``"deferred"`` mode.

    Args:
        datasets: split name -> dataset (deterministic: ``augment=False``).
        out: cache folder.
        settings: JSON-able description of what is prepared (compared on resume).
        device: where deferred items are rendered (``"cuda"``, ``"cpu"``; None: CPU).
        batch_size: items rendered together (1 when frames differ in size).
        workers: DataLoader workers loading frames.
        progress: show a tqdm progress bar on stderr.
        limit: prepare only the first ``limit`` items of each split.

    Returns:
        The manifest dict (also written to ``out/manifest.json``).
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: --out exists and is not a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise (write_error(out, exc) or InputError(f"{out}: cannot create the cache folder: {exc}")) from None
    with folder_lock(out, "prepare"):
        return _prepare_locked(datasets, out, settings, device, batch_size, workers, progress, limit)


def _prepare_locked(datasets, out: Path, settings: dict, device, batch_size: int, workers: int, progress: bool,
                    limit: int | None) -> dict:
    """:func:`prepare_cache` once ``out`` exists and is locked."""
    from torch.utils.data import DataLoader, Subset
    from tqdm import tqdm

    _check_settings(out, settings)
    _clean_temporaries(out)
    (out / MANIFEST).unlink(missing_ok=True)
    splits_info = {}
    new_counts = {}
    for split, ds in datasets.items():
        count = len(ds) if limit is None else min(len(ds), int(limit))
        pending = [i for i in range(count) if not sample_path(out, split, i).exists()]
        new_counts[split] = len(pending)
        if pending:
            same_size = ds.geometry.size is not None
            loader = DataLoader(
                Subset(ds, pending), batch_size=batch_size if same_size else 1, num_workers=workers,
                collate_fn=_collate, shuffle=False,
            )
            bar = tqdm(total=len(pending), desc=f"prepare {split}", unit="sample", disable=not progress, file=sys.stderr)
            position = 0
            for batch in loader:
                batch, cams = render_batch(batch, ds.render_spec, device, return_cameras=True)
                blurs = blur_stats(cams, batch["render_depth"], batch["mask"]) if cams else None
                for b in range(batch["image"].shape[0]):
                    index = pending[position]
                    position += 1
                    stats = sample_stats(batch["depth"][b], batch["mask"][b], blurs[b] if blurs else None)
                    write_sample(
                        sample_path(out, split, index), batch["image"][b], batch["aif"][b],
                        batch["depth"][b], batch["mask"][b], batch["name"][b], stats,
                    )
                    bar.update(1)
            bar.close()
        files = [sample_path(out, split, i).name for i in range(count)]
        splits_info[split] = {"count": count, "files": files, "names": list(ds.names[:count])}
    summary = summarize(out, splits_info)
    manifest = {"format": FORMAT, "version": VERSION, "settings": settings, "splits": splits_info,
                "summary": summary, "new": new_counts}
    with atomic_write(out / MANIFEST) as tmp:
        tmp.write_text(json.dumps(manifest, indent=1))
    return manifest


def summarize(out: Path, splits_info: dict) -> dict:
    """Counts, depth range and blur range over every sample of the cache."""
    stats = []
    for split, info in splits_info.items():
        for f in info["files"]:
            stats.append(read_stats(Path(out) / split / f))
    arr = np.array(stats, dtype=np.float64).reshape(-1, 4)

    def rng(lo_col: int, hi_col: int):
        lo, hi = arr[:, lo_col], arr[:, hi_col]
        if arr.size == 0 or np.all(np.isnan(lo)):
            return None
        return [float(np.nanmin(lo)), float(np.nanmax(hi))]

    return {
        "counts": {s: i["count"] for s, i in splits_info.items()},
        "depth_range_m": rng(0, 1),
        "blur_sigma_range_px": rng(2, 3),
    }


def format_summary(manifest: dict, out: Path) -> str:
    s = manifest["summary"]
    st = manifest["settings"]
    how = f"rendered with preset {st.get('preset')}" if st.get("defocus") != "real" else "real defocus"
    size = f"{st['size'][1]}x{st['size'][0]}" if st.get("size") else "native size"
    lines = [f"prepared {st.get('dataset')} -> {out} ({how}, {size}, {st.get('resize')})"]
    for split, n in s["counts"].items():
        new = manifest.get("new", {}).get(split, n)
        lines.append(f"  {split}: {n} samples ({new} new, {n - new} already done)")
    d = s["depth_range_m"]
    lines.append(f"  depth: {d[0]:.3f} to {d[1]:.3f} m" if d else "  depth: n/a")
    b = s["blur_sigma_range_px"]
    lines.append(
        f"  blur (Gaussian sigma): {b[0]:.2f} to {b[1]:.2f} px" if b else "  blur: n/a (real defocus, not rendered)"
    )
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------------------


def load_manifest(root: str | Path) -> dict:
    root = Path(root)
    path = root / MANIFEST
    if not root.is_dir():
        raise InputError(f"{root}: cache folder does not exist")
    if not path.is_file():
        hint = " (the prepare run did not finish: run the same command again to complete it)" if (root / SETTINGS).exists() else ""
        raise InputError(f"{root}: no {MANIFEST}; not a twohded prepare cache{hint}")
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: unreadable manifest: {exc}") from None
    if manifest.get("format") != FORMAT:
        raise InputError(f"{path}: not a twohded prepare cache manifest")
    if manifest.get("version") != VERSION:
        raise InputError(f"{path}: cache format version {manifest.get('version')}, this twohded reads {VERSION}")
    return manifest


class PreparedDataset(DefocusDataset):
    """Samples from a ``twohded prepare`` cache (the defocus is baked in).

    Args:
        root: the cache folder (``--out`` of ``twohded prepare``).
        split: one of the prepared splits.
        size, resize, flip, augment, seed: as for every dataset, but only ``resize="crop"``
            (or no size) is allowed, since the cached images are already defocused.
    """

    defocus_modes = ("real",)
    dataset_name = "cache"

    def __init__(self, root, split: str = "train", **common) -> None:
        common.pop("defocus", None)
        common.pop("preset", None)
        if common.get("size") is not None:
            common.setdefault("resize", "crop")
        super().__init__(split, defocus="real", **common)
        self.manifest = load_manifest(root)
        self.root = Path(root)
        splits = self.manifest["splits"]
        if split not in splits:
            raise InputError(f"{root}: cache has no split {split!r} (it has {', '.join(splits)})")
        self.files = [self.root / split / f for f in splits[split]["files"]]
        self.names = list(splits[split]["names"])
        self.settings = self.manifest["settings"]

    def frame_info(self) -> FrameInfo:
        """What the cached items show, from the prepare settings (``dataset``: the source dataset)."""
        from . import DATASETS

        s = self.settings
        resize = s.get("resize") if s.get("size") else "none"
        full_frame = resize in ("resize", "none", None)
        name = s.get("dataset")
        root = s.get("root")
        native = None
        if name in ("nyu", "make3d") and root and Path(root).exists() and full_frame:
            opts = ({"border": s.get("border", "crop"), "depth_key": s.get("depth_key", "depths")} if name == "nyu"
                    else {"crop_ratio": s.get("crop_ratio"), "allow_truncated": bool(s.get("allow_truncated"))})
            native = (DATASETS[name], root, "all" if name == "nyu" else self.split, opts)
        return FrameInfo(dataset=name, full_frame=full_frame, resized=bool(s.get("size")) and resize == "resize",
                         border=s.get("border", "crop") if name == "nyu" else None, native=native)

    def _load(self, index: int) -> dict:
        path = self.files[index]
        if not path.is_file():
            raise InputError(f"{path}: cached sample missing (re-run twohded prepare with the same settings)")
        sample = read_sample(path)
        sample.pop("name")
        sample["source"] = str(path)
        return sample
