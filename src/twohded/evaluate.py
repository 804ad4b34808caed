"""Evaluation of a model on a dataset: depth errors, deblurring quality, figures.

``evaluate_model(model, dataset, dataset_name="nyu")`` returns an :class:`EvalResult`
(averaged metrics for depth, for the all-in-focus output and for the defocused input against
the same target, the image count and the per-image list); with ``out_dir`` it also writes
``metrics.json`` and ``metrics.md`` (atomically) and ``figures/*.png``. The trainer calls it
for validation; ``twohded evaluate`` wraps it. Formulas: :mod:`twohded.metrics`.

Protocols (docs/evaluation.md):

``standard`` (the field's; default)
    valid ground truth only; the prediction is resized (bilinear) to the ground truth's size
    and clamped to the dataset's depth range; metrics per image, averaged over images.
    NYU: the Eigen crop on the native 640x480 ground truth (on the 561x427 valid region for
    ``border="crop"`` frames, the same pixels), depth cap 10 m. Make3D: C1 (ground truth and
    prediction < 70 m, the primary) and C2 (< 80 m) at 460x345 (Liu et al., Laina et al.).
    DFD: 10 m. Synthetic: the scenes' depth range. Folder / unknown: no upper cap. SSIM with
    the 11x11 Gaussian window.

``paper``
    as the 2HDED:NET authors' scripts: metrics at the network's working resolution (the
    dataset items' size, no resampling to the native ground truth), the whole valid frame
    (no Eigen crop), the prediction quantised to whole millimetres (truncated, as their
    16-bit PNG outputs), SSIM with scikit-image's default 7x7 uniform window and sample
    covariance. Same depth caps, C1/C2 for Make3D.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, Subset

from .data.base import DefocusDataset, FrameInfo, base_dataset
from .errors import InputError
from .models.base import check_model
from .metrics import DEPTH_KEYS, IMAGE_KEYS, MetricAverager, depth_metrics, image_metrics

log = logging.getLogger("twohded.evaluate")

__all__ = [
    "DEPTH_PROTOCOLS",
    "PROTOCOLS",
    "DatasetProtocol",
    "EvalResult",
    "EvalPlan",
    "Region",
    "evaluate_model",
    "plan_evaluation",
    "infer_dataset_name",
]

PROTOCOLS = ("standard", "paper")
FORMAT = "twohded-eval/1"
MIN_DEPTH = 1e-3


@dataclass(frozen=True)
class Region:
    """One set of evaluated pixels with its depth cap.

    ``crop="eigen"``: the Eigen crop (NYU); ``make3d="c1"|"c2"``: Make3D's criteria
    (ground truth below 70 / 80 m); ``max_depth``: cap in metres (None: none; ``"dataset"``:
    the dataset's own range, e.g. the synthetic scenes').
    """

    name: str
    max_depth: float | str | None
    crop: str | None = None


@dataclass(frozen=True)
class DatasetProtocol:
    """How a dataset's depth is evaluated; the first region is the primary one."""

    dataset: str
    regions: tuple[Region, ...]
    native_gt: bool = False  # standard protocol: evaluate on the native-resolution ground truth
    min_depth: float = MIN_DEPTH
    note: str = ""


#: standard-protocol depth settings per dataset name (``cache`` uses its source dataset's)
DEPTH_PROTOCOLS: dict[str, DatasetProtocol] = {
    "nyu": DatasetProtocol(
        "nyu", (Region("eigen", 10.0, crop="eigen"),), native_gt=True,
        note="Eigen crop of the 640x480 frame, depth capped at 10 m",
    ),
    "make3d": DatasetProtocol(
        "make3d", (Region("c1", 70.0), Region("c2", 80.0)), native_gt=True,
        note="C1: ground truth < 70 m (prediction clamped to 70 m); C2: < 80 m",
    ),
    "dfd": DatasetProtocol("dfd", (Region("valid", 10.0),), note="valid depth, capped at 10 m"),
    "synthetic": DatasetProtocol("synthetic", (Region("valid", "dataset"),), note="the scenes' depth range"),
    "folder": DatasetProtocol("folder", (Region("valid", None),), note="valid depth, no upper cap"),
}
GENERIC = DatasetProtocol("unknown", (Region("valid", None),), note="valid depth, no upper cap")


# ---------------------------------------------------------------------------------------
# Result
# ---------------------------------------------------------------------------------------


@dataclass
class EvalResult:
    """Averaged and per-image metrics of one evaluation.

    Attributes:
        protocol: ``"standard"`` or ``"paper"``.
        dataset: dataset name (``"nyu"``, ...) or None.
        count: number of images evaluated.
        depth: the primary region's averaged depth metrics (``rmse``, ``abs_rel``, ...,
            ``delta3``, ``pixels``: total); ``{}`` for a model without depth head.
        depth_regions: every region's averages, e.g. ``{"c1": {...}, "c2": {...}}``.
        aif: PSNR / SSIM of the all-in-focus output against the target (``{}`` if none).
        input: PSNR / SSIM of the defocused input against the same target (the baseline).
        per_image: one dict per image: ``name``, ``depth`` (region -> metrics or None),
            ``aif``, ``input``.
        settings: how the evaluation was run (regions, caps, resolution, device, ...).
        figures: the figure files written (with ``out_dir`` and ``figures``).
    """

    protocol: str
    dataset: str | None
    count: int
    depth: dict[str, float] = field(default_factory=dict)
    depth_regions: dict[str, dict[str, float]] = field(default_factory=dict)
    aif: dict[str, float] = field(default_factory=dict)
    input: dict[str, float] = field(default_factory=dict)
    per_image: list[dict] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)
    figures: list[Path] = field(default_factory=list)

    @property
    def gain(self) -> dict[str, float]:
        """``aif - input`` for PSNR (dB) and SSIM: what deblurring gained."""
        return {k: self.aif[k] - self.input[k] for k in IMAGE_KEYS if k in self.aif and k in self.input}

    def flat(self) -> dict[str, float]:
        """One flat dict for logging: ``depth/rmse``, ``depth_c2/rmse``, ``aif/psnr``, ``input/ssim``, ``gain/psnr``..."""
        out: dict[str, float] = {}
        primary = next(iter(self.depth_regions), None)
        for region, metrics in self.depth_regions.items():
            prefix = "depth" if region == primary else f"depth_{region}"
            out.update({f"{prefix}/{k}": v for k, v in metrics.items() if k != "pixels"})
        for group in ("aif", "input", "gain"):
            out.update({f"{group}/{k}": v for k, v in getattr(self, group).items()})
        return out

    def to_dict(self, per_image: bool = True) -> dict[str, Any]:
        d = {
            "format": FORMAT,
            "protocol": self.protocol,
            "dataset": self.dataset,
            "count": self.count,
            "depth": self.depth,
            "depth_regions": self.depth_regions,
            "aif": self.aif,
            "input": self.input,
            "gain": self.gain,
            "settings": self.settings,
        }
        if per_image:
            d["per_image"] = self.per_image
        return d

    def to_markdown(self) -> str:
        s = self.settings
        title = f"# Evaluation: {s.get('model_name') or 'model'} on {self.dataset or 'dataset'}"
        if s.get("split"):
            title += f" ({s['split']})"
        lines = [title, ""]
        lines.append(f"{self.count} images, {self.protocol} protocol"
                     + (f", checkpoint `{s['checkpoint']}`" if s.get("checkpoint") else "") + ".")
        lines.append("")
        if self.depth_regions:
            lines.append(f"## Depth ({s.get('depth_note', '')}; ground truth at {s.get('gt_resolution', '?')} resolution)")
            lines.append("")
            names = {
                "rmse": "RMSE (m) ↓", "abs_rel": "AbsRel ↓", "sq_rel": "SqRel (m) ↓", "rmse_log": "RMSE log ↓",
                "log10": "log10 ↓", "delta1": "δ<1.25 ↑", "delta2": "δ<1.25² ↑", "delta3": "δ<1.25³ ↑",
            }
            lines.append("| region | cap (m) | " + " | ".join(names[k] for k in DEPTH_KEYS) + " |")
            lines.append("| --- | --- | " + " | ".join("---:" for _ in DEPTH_KEYS) + " |")
            caps = s.get("regions", {})
            for region, m in self.depth_regions.items():
                cap = caps.get(region, {}).get("max_depth")
                cells = [_fmt(m.get(k), 3 if k in ("rmse", "sq_rel") else 4) for k in DEPTH_KEYS]
                lines.append(f"| {region} | {cap if cap is not None else '-'} | " + " | ".join(cells) + " |")
            lines.append("")
        if self.input or self.aif:
            lines.append(f"## Deblurring (data range 1, SSIM window: {s.get('ssim_window', 'gaussian')})")
            lines.append("")
            lines.append("| image vs target | PSNR (dB) ↑ | SSIM ↑ |")
            lines.append("| --- | ---: | ---: |")
            if self.input:
                lines.append(f"| defocused input | {_fmt(self.input.get('psnr'), 2)} | {_fmt(self.input.get('ssim'), 4)} |")
            if self.aif:
                lines.append(f"| all-in-focus output | {_fmt(self.aif.get('psnr'), 2)} | {_fmt(self.aif.get('ssim'), 4)} |")
            gain = self.gain
            if gain:
                lines.append(f"| gain | {gain['psnr']:+.2f} | {gain['ssim']:+.4f} |")
            lines.append("")
        return "\n".join(lines)

    def save(self, out_dir: str | os.PathLike) -> tuple[Path, Path]:
        """Write ``metrics.json`` and ``metrics.md`` into ``out_dir`` (atomically); returns both paths."""
        from .io import atomic_write

        out_dir = Path(out_dir)
        js, md = out_dir / "metrics.json", out_dir / "metrics.md"
        with atomic_write(js) as tmp:
            tmp.write_text(json.dumps(self.to_dict(), indent=2, allow_nan=False) + "\n")
        with atomic_write(md) as tmp:
            tmp.write_text(self.to_markdown() + "\n")
        return js, md


def _fmt(v, digits: int) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


# ---------------------------------------------------------------------------------------
# Dataset introspection
# ---------------------------------------------------------------------------------------


def frame_info(dataset: Dataset) -> FrameInfo:
    """What a twohded dataset's items show (:meth:`~twohded.data.base.DefocusDataset.frame_info`,
    through Subsets); the defaults for any other dataset (whole frames, nothing known)."""
    base = base_dataset(dataset)
    return base.frame_info() if isinstance(base, DefocusDataset) else FrameInfo()


def infer_dataset_name(dataset: Dataset) -> str | None:
    """``"nyu"``, ``"make3d"``, ... for a twohded dataset (a cache: its source dataset), else None."""
    return frame_info(dataset).dataset


def _dataset_max_depth(frame: FrameInfo) -> float:
    return frame.max_depth_m if frame.max_depth_m is not None else 10.0


class _NativeGT:
    """Ground truth (depth, mask) by item name, read from a native-resolution copy of the dataset."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset
        base = base_dataset(dataset)
        names = list(getattr(base, "names", []))
        if isinstance(dataset, Subset):
            names = [names[i] for i in dataset.indices]
        self.index = {n: i for i, n in enumerate(names)}

    def __call__(self, name: str) -> tuple[Tensor, Tensor]:
        if name not in self.index:
            raise InputError(f"ground truth: no frame named {name!r} in the native-resolution dataset")
        item = self.dataset[self.index[name]]
        return item["depth"], item["mask"]


# ---------------------------------------------------------------------------------------
# Evaluation
# ---------------------------------------------------------------------------------------


def _collate(items: list[dict]) -> dict:
    sizes = {tuple(it["image"].shape[-2:]) for it in items}
    if len(sizes) > 1:
        raise InputError(
            f"items of one batch differ in size ({', '.join(f'{w}x{h}' for h, w in sorted(sizes))}); "
            "use --batch-size 1 or a fixed --size"
        )
    from torch.utils.data import default_collate

    return default_collate(items)


def _region_mask(region: Region, depth: Tensor, border: str | None) -> Tensor | None:
    """Extra mask of ``region`` on a ``(1, H, W)`` ground truth (None: none)."""
    h, w = depth.shape[-2:]
    if region.crop == "eigen":
        from .data.nyu import eigen_crop_mask

        frame = "projection" if border == "crop" else "full"
        return eigen_crop_mask(h, w, frame=frame).to(depth.device)
    if region.name in ("c1", "c2"):
        from .data.make3d import c1_mask, c2_mask

        return (c1_mask if region.name == "c1" else c2_mask)(depth)
    return None


def _inference_summary(runner) -> dict[str, Any]:
    """How the network ran (JSON-friendly): autocast dtype, layout, graphs, compile, notes."""
    d = runner.describe()
    keys = ("autocast", "dtype", "channels_last", "fold_bn", "folded_bn", "cuda_graphs_active", "compiled", "notes")
    return {k: d[k] for k in keys}


def _has_target(image: Tensor, target: Tensor) -> bool:
    """False where the dataset has no sharp target (its ``aif`` is the input itself)."""
    return not torch.equal(image, target)


# long: 15 documented keyword arguments (the public API's signature and docstring); the body is ~35 lines
def evaluate_model(
    model: nn.Module,
    dataset: Dataset,
    *,
    protocol: str = "standard",
    dataset_name: str | None = None,
    batch_size: int = 1,
    device: str | torch.device | None = None,
    fast: bool | None = None,
    compile: bool = False,
    settings: Any = None,
    figures: int = 0,
    out_dir: str | os.PathLike | None = None,
    gt: str | Dataset = "auto",
    workers: int = 0,
    progress: bool = False,
    info: dict | None = None,
) -> EvalResult:
    """Evaluate ``model`` on ``dataset`` (items as :mod:`twohded.data` makes them).

    Args:
        model: a :class:`~twohded.models.DefocusModel` (``ModelOutput`` with ``depth`` and/or
            ``aif``, as its ``outputs`` declare). It is put in
            eval mode for the run and its mode restored afterwards; with ``device`` given it
            is moved there, else it stays where it is. A model with ``needs_depth = True``
            (an oracle baseline, :mod:`twohded.baselines`) is called as
            ``model(image, depth=...)`` with the batch's ground-truth depth (the renderer's
            hole-filled depth for rendered items).
        dataset: any twohded dataset (``"deferred"`` items are rendered on ``device``).
        protocol: ``"standard"`` or ``"paper"`` (module docstring).
        dataset_name: ``"nyu"``, ``"make3d"``, ``"dfd"``, ``"synthetic"``, ``"folder"``: picks
            the depth caps and regions of :data:`DEPTH_PROTOCOLS`; default: inferred.
        batch_size, workers: DataLoader settings (items of a batch must share one size).
        device: default: the model's device.
        fast: the fast path of :mod:`twohded.fast` (BatchNorm folding, bf16 autocast,
            channels-last, CUDA graphs; None: on CUDA, off on the CPU; False: plain fp32).
            It runs on a prepared copy: the model itself is not changed.
        compile: ``torch.compile`` the network (with ``fast``).
        settings: a :class:`~twohded.fast.InferenceSettings` (overrides ``fast`` / ``compile``).
        figures: number of figure panels to write (needs ``out_dir``), evenly spread over
            the dataset.
        out_dir: write ``metrics.json``, ``metrics.md`` and ``figures/`` there.
        gt: where the depth ground truth comes from: ``"auto"`` (standard protocol: the
            native-resolution frames for NYU and Make3D when the items show the whole frame
            and the raw data is reachable, else the items), ``"input"`` (the items), or a
            dataset of the same frames (matched by ``name``) at the evaluation resolution.
        progress: show a progress bar.
        info: extra settings recorded in the result (e.g. ``checkpoint``, ``model_name``).
    """
    from .fast import InferenceSettings, prepare_inference

    check_model(model, "evaluate_model")
    _check_arguments(protocol, figures, out_dir, batch_size, len(dataset))
    plan = plan_evaluation(dataset, protocol, dataset_name, gt)
    dev = _place(model, device)
    if settings is None:
        settings = InferenceSettings.from_flags(fast, compile)
    scorer = _Scorer(plan, dev, _figure_indices(figures, len(dataset)))
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers, collate_fn=_collate,
                        pin_memory=dev.type == "cuda")
    was_training = model.training
    model.eval()
    runner = prepare_inference(model, dev, settings)
    try:
        _score_batches(model, runner, loader, scorer, dev, progress)
    finally:
        model.train(was_training)
    result = scorer.result(tuple(model.outputs), {
        **(info or {}),
        "device": str(dev),
        "fast": bool(runner.settings.fast),
        "inference": _inference_summary(runner),
        "batch_size": batch_size,
    })
    if out_dir is not None:
        out_dir = Path(out_dir)
        for i, fig in enumerate(scorer.panels):
            path = out_dir / "figures" / f"{i:03d}_{_safe(fig['name'])}.png"
            _write_figure(path, fig, result)
            result.figures.append(path)
        result.save(out_dir)
    return result


def _place(model: nn.Module, device: str | torch.device | None) -> torch.device:
    """Move ``model`` to ``device`` if given; else its own device (a parameter-free model, a
    classical baseline, is placed by its buffers, else on the CPU)."""
    from .devices import resolve_device

    if device is None:
        return next(itertools.chain(model.parameters(), model.buffers()), torch.zeros(())).device
    dev = resolve_device(device)
    model.to(dev)
    return dev


def _check_arguments(protocol: str, figures: int, out_dir, batch_size: int, n_items: int) -> None:
    if protocol not in PROTOCOLS:
        raise InputError(f"protocol {protocol!r}: choose one of {', '.join(PROTOCOLS)}")
    if figures and out_dir is None:
        raise InputError("figures need an output folder (out_dir)")
    if batch_size < 1:
        raise InputError(f"batch_size must be >= 1, got {batch_size}")
    if n_items == 0:
        raise InputError("the dataset is empty: nothing to evaluate")


def _figure_indices(figures: int, n_items: int) -> set[int]:
    """``figures`` item indices evenly spread over ``n_items`` (empty set: no figures)."""
    if not figures:
        return set()
    k = min(int(figures), n_items)
    return {round(i * (n_items - 1) / max(1, k - 1)) for i in range(k)} if k > 1 else {0}


# ---------------------------------------------------------------------------------------
# What is scored: regions, caps and the ground truth's source
# ---------------------------------------------------------------------------------------


@dataclass
class EvalPlan:
    """How one evaluation scores its items, decided from the dataset before the run.

    Attributes:
        protocol: ``"standard"`` or ``"paper"``.
        dataset: dataset name (``"nyu"``, ...) or None.
        proto: the dataset's :class:`DatasetProtocol` (min depth, note).
        regions: the evaluated regions with their caps resolved (metres); the first is the primary.
        border: NYU items' ``border`` (where the Eigen crop lies), else None.
        native: ground truth by item name at the native resolution (None: the items' own).
        gt_resolution: ``"input"``, ``"native"`` or ``"given"`` (recorded in the result).
        notes: what could not be done as the protocol asks (also logged).
    """

    protocol: str
    dataset: str | None
    proto: DatasetProtocol
    regions: tuple[Region, ...]
    border: str | None
    native: "_NativeGT | None"
    gt_resolution: str
    notes: list[str] = field(default_factory=list)

    @property
    def quantise(self) -> bool:
        """The paper protocol truncates predictions to whole millimetres."""
        return self.protocol == "paper"

    @property
    def ssim_window(self) -> str:
        return "uniform" if self.protocol == "paper" else "gaussian"

    def region_mask(self, region: Region, gt_depth: Tensor, gt_mask: Tensor) -> Tensor:
        """``(1, H, W)`` bool: the valid ground truth inside ``region``."""
        m = gt_mask.bool()
        extra = _region_mask(region, gt_depth, self.border)
        return m & extra if extra is not None else m

    def clamp(self, pred: Tensor, region: Region) -> Tensor:
        """The prediction clamped to the dataset's minimum depth and the region's cap (metres)."""
        return pred.clamp(min=self.proto.min_depth, max=region.max_depth)

    def settings(self) -> dict[str, Any]:
        """The plan's part of :attr:`EvalResult.settings`."""
        return {
            "dataset": self.dataset,
            "gt_resolution": self.gt_resolution,
            "depth_note": self.proto.note if self.protocol == "standard" else _paper_note(self.proto, self.regions),
            "regions": {r.name: {"max_depth": r.max_depth, "min_depth": self.proto.min_depth, "crop": r.crop}
                        for r in self.regions},
        }


def plan_evaluation(dataset: Dataset, protocol: str = "standard", dataset_name: str | None = None,
                    gt: str | Dataset = "auto") -> EvalPlan:
    """The :class:`EvalPlan` of ``dataset`` under ``protocol`` (arguments as :func:`evaluate_model`'s)."""
    name = dataset_name or infer_dataset_name(dataset)
    if name == "cache":
        name = infer_dataset_name(dataset)
    proto = DEPTH_PROTOCOLS.get(name or "", GENERIC)
    frame = frame_info(dataset)
    notes: list[str] = []
    regions = _resolve_regions(proto, protocol, frame, notes)
    native, gt_resolution = _ground_truth_source(gt, protocol, proto, frame, notes)
    for note in notes:
        log.warning("%s", note)
    return EvalPlan(protocol, name, proto, regions, frame.border, native, gt_resolution, notes)


def _resolve_regions(proto: DatasetProtocol, protocol: str, frame: FrameInfo, notes: list[str]) -> tuple[Region, ...]:
    """The protocol's regions with ``"dataset"`` caps resolved; the Eigen crop only where it can be placed."""
    regions = []
    for r in proto.regions:
        cap = _dataset_max_depth(frame) if r.max_depth == "dataset" else r.max_depth
        if r.crop == "eigen" and (protocol == "paper" or not frame.full_frame):
            if protocol == "standard":
                notes.append("items are crops of the NYU frame: the Eigen crop cannot be placed, all valid pixels used")
            r = Region("valid", cap)
        regions.append(Region(r.name, cap, r.crop))
    return tuple(regions)


def _ground_truth_source(gt: str | Dataset, protocol: str, proto: DatasetProtocol, frame: FrameInfo,
                         notes: list[str]) -> tuple["_NativeGT | None", str]:
    """(native ground truth or None, ``gt_resolution``) for the ``gt`` argument of :func:`evaluate_model`."""
    if isinstance(gt, Dataset):
        return _NativeGT(gt), "given"
    if gt == "input" or protocol == "paper":
        return None, "input"
    if gt != "auto":
        raise InputError(f"gt={gt!r}: use 'auto', 'input' or a dataset")
    if not proto.native_gt:
        return None, "input"
    if not frame.resized:
        return None, "native"  # the items are at the native resolution already
    ds = frame.native_dataset()
    if ds is not None:
        return _NativeGT(ds), "native"
    notes.append("native-resolution ground truth not reachable (raw data not found, or the items "
                 "are crops of the frame): evaluated at the items' resolution")
    return None, "input"


# ---------------------------------------------------------------------------------------
# Scoring: per item, accumulated into the result
# ---------------------------------------------------------------------------------------


def _score_batches(model: nn.Module, runner, loader: DataLoader, scorer: "_Scorer", dev: torch.device,
                   progress: bool) -> None:
    """Render, predict and score every batch of ``loader``."""
    from tqdm import tqdm

    from .data import render_batch, render_spec_of

    spec = render_spec_of(loader.dataset)
    for batch in tqdm(loader, desc="evaluate", unit="batch", disable=not progress, leave=False):
        batch = render_batch(batch, spec, dev)
        image = batch["image"].float()
        if model.needs_depth:  # e.g. an oracle baseline: it is given the true depth
            out = runner(image, depth=batch.get("render_depth", batch["depth"]).float())
        else:
            out = runner(image)
        pred_depth = out.depth.float() if out.depth is not None else None
        pred_aif = out.aif.float().clamp(0.0, 1.0) if out.aif is not None else None
        for b in range(image.shape[0]):
            scorer.add(batch, b, image[b], pred_depth[b] if pred_depth is not None else None,
                       pred_aif[b] if pred_aif is not None else None)


class _Scorer:
    """Scores items one at a time and keeps the averages, the per-image records and figure panels."""

    def __init__(self, plan: EvalPlan, device: torch.device, figure_indices: set[int]) -> None:
        self.plan = plan
        self.device = device
        self.figure_indices = figure_indices
        self.regions = {r.name: MetricAverager() for r in plan.regions}
        self.aif, self.input = MetricAverager(), MetricAverager()
        self.per_image: list[dict] = []
        self.panels: list[dict] = []

    def ground_truth(self, batch: dict, b: int, name: str) -> tuple[Tensor, Tensor]:
        """``(1, H, W)`` depth (metres) and mask of item ``b``: the native frame's or the item's."""
        if self.plan.native is not None:
            d, m = self.plan.native(name)
            return d.to(self.device), m.to(self.device)
        return batch["depth"][b], batch["mask"][b]

    def score_depth(self, pred: Tensor, gt_d: Tensor, gt_m: Tensor) -> dict[str, dict]:
        """Region name -> depth metrics of ``pred`` ``(1, h, w)`` metres (resized to the ground truth's size)."""
        plan = self.plan
        out = {}
        for r in plan.regions:
            pr = plan.clamp(pred, r)
            if plan.quantise:
                pr = (torch.floor(pr * 1000.0) / 1000.0).clamp(min=plan.proto.min_depth)
            metrics = depth_metrics(pr, gt_d, plan.region_mask(r, gt_d, gt_m), min_depth=plan.proto.min_depth,
                                    max_depth=r.max_depth)
            self.regions[r.name].add(metrics)
            out[r.name] = metrics
        return out

    def add(self, batch: dict, b: int, image: Tensor, pred_depth: Tensor | None, pred_aif: Tensor | None) -> None:
        """Score item ``b`` of ``batch``: ``image`` ``(3, H, W)``, predictions ``(1, H, W)`` metres / ``(3, H, W)``."""
        index = len(self.per_image)
        name = str(batch["name"][b])
        record: dict[str, Any] = {"name": name}
        fig: dict[str, Any] = {}
        if pred_depth is not None:
            gt_d, gt_m = self.ground_truth(batch, b, name)
            p = pred_depth
            if p.shape[-2:] != gt_d.shape[-2:]:
                p = F.interpolate(p[None], size=gt_d.shape[-2:], mode="bilinear", align_corners=False)[0]
            record["depth"] = self.score_depth(p, gt_d, gt_m)
            if index in self.figure_indices:
                primary = self.plan.regions[0]
                fig.update(gt=gt_d.cpu(), mask=self.plan.region_mask(primary, gt_d, gt_m).cpu(),
                           pred=self.plan.clamp(p, primary).cpu())
        target = batch["aif"][b].float()
        if _has_target(image, target):
            record["input"] = image_metrics(image, target, self.plan.ssim_window)
            self.input.add(record["input"])
            if pred_aif is not None:
                record["aif"] = image_metrics(pred_aif, target, self.plan.ssim_window)
                self.aif.add(record["aif"])
        if index in self.figure_indices:
            fig.update(name=name, image=image.cpu(), target=target.cpu(),
                       aif=pred_aif.cpu() if pred_aif is not None else None)
            self.panels.append(fig)
        self.per_image.append(record)

    def result(self, outputs: tuple[str, ...], run_settings: dict[str, Any]) -> EvalResult:
        """The :class:`EvalResult`; ``run_settings``: how the network ran (device, inference, ...)."""
        plan = self.plan
        depth_regions = {k: v.mean() for k, v in self.regions.items() if v.images} if "depth" in outputs else {}
        info = dict(run_settings)
        extra = {k: info.pop(k) for k in ("device", "fast", "inference", "batch_size") if k in info}
        settings = {
            **info,
            **plan.settings(),
            "skipped_no_valid_depth": {k: v.skipped for k, v in self.regions.items() if v.skipped},
            "depth_quantised_mm": plan.quantise,
            "ssim_window": plan.ssim_window,
            **extra,
            "notes": plan.notes,
        }
        return EvalResult(
            protocol=plan.protocol,
            dataset=plan.dataset,
            count=len(self.per_image),
            depth=next(iter(depth_regions.values()), {}),
            depth_regions=depth_regions,
            aif=self.aif.mean(),
            input=self.input.mean(),
            per_image=self.per_image,
            settings=settings,
        )


def _paper_note(proto: DatasetProtocol, regions: tuple[Region, ...]) -> str:
    caps = ", ".join(f"{r.name} < {r.max_depth} m" if r.max_depth else r.name for r in regions)
    return f"paper protocol: whole valid frame at the network's resolution, {caps}, prediction truncated to mm"


def _safe(name: str) -> str:
    keep = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
    return keep[:80] or "item"


def _write_figure(path: Path, fig: dict, result: EvalResult) -> None:
    """One row like the paper's Figs. 6-8: input, GT depth, predicted depth, error, target, deblurred."""
    from .figures import Panel, save_figure

    row = [Panel("defocused input", fig["image"])]
    if "gt" in fig:
        gt, mask, pred = fig["gt"][0], fig["mask"][0], fig["pred"][0]
        valid = gt[mask]
        lo = float(valid.min()) if valid.numel() else float(gt.min())
        hi = float(valid.max()) if valid.numel() else float(gt.max())
        shown_gt = torch.where(mask, gt, torch.full_like(gt, float("nan")))
        err = torch.where(mask, (pred - gt).abs(), torch.full_like(gt, float("nan")))
        rec = next((r for r in result.per_image if r["name"] == fig["name"]), {})
        primary = next(iter(rec.get("depth", {}).values()), None)
        title = f"predicted depth (RMSE {primary['rmse']:.3f} m)" if primary else "predicted depth"
        row += [
            Panel("ground-truth depth", shown_gt, kind="depth", vmin=lo, vmax=hi),
            Panel(title, pred, kind="depth", vmin=lo, vmax=hi),
            Panel("|error|", err, kind="map", vmin=0.0, unit="m"),
        ]
    if not torch.equal(fig["image"], fig["target"]):
        row.append(Panel("all-in-focus target", fig["target"]))
    if fig.get("aif") is not None:
        rec = next((r for r in result.per_image if r["name"] == fig["name"]), {})
        m = rec.get("aif")
        row.append(Panel(f"deblurred ({m['psnr']:.2f} dB)" if m else "deblurred", fig["aif"]))
    save_figure(path, [row], title=fig["name"])
