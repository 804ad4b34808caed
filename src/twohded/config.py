"""Experiment configuration: typed dataclasses read from YAML.

One YAML file per experiment (``configs/``)::

    name: nyu_paper
    base: _paper_common.yaml      # optional: start from another file (relative path)
    seed: 0
    model: {name: 2hded, options: {}}
    data:  {name: nyu, root: null, size: 256, preset: paper, defocus: deferred}
    loss:  {gradient: true, ssim: true}          # twohded.losses.LossConfig
    optim: {name: sgd, lr: 2.0e-4, momentum: 0.9}
    schedule: {name: step, milestones: [300], gamma: 0.1}
    train: {epochs: 500, batch_size: 4}

:func:`load_config` reads the file (following ``base:`` chains; mappings are merged key by
key, other values replaced), applies ``key=value`` overrides (values parsed as YAML:
``train.epochs=3``, ``optim.betas=[0.5,0.999]``, ``train.ema_decay=null``) and checks every
key and type against the dataclasses below. An unknown key or a wrong type raises
:class:`~twohded.errors.InputError` naming the key and the file (or the override). Only
``model.options``, ``data.options`` and ``data.val_options`` are free mappings, passed
through to :func:`twohded.models.create_model` and :func:`twohded.data.build_dataset`.

:meth:`ExperimentConfig.to_dict` gives the resolved configuration as plain data (saved as
``RUN_DIR/config.yaml`` and inside every checkpoint); :func:`config_from_dict` reads it back.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import os
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional, Union

from .errors import InputError
from .losses import LossConfig

__all__ = [
    "ModelConfig",
    "DataConfig",
    "OptimConfig",
    "ScheduleConfig",
    "TrainConfig",
    "ExperimentConfig",
    "LossConfig",
    "load_config",
    "config_from_dict",
    "parse_overrides",
    "apply_overrides",
    "dump_config",
    "FREE_MAPPINGS",
]


@dataclass(frozen=True)
class ModelConfig:
    """Which network: a name of :func:`twohded.models.list_models` and its options."""

    name: str = "2hded"
    #: passed to ``create_model(name, **options)`` (e.g. ``encoder_weights``, ``decoder_dropout``)
    options: dict[str, Any] = field(default_factory=dict)
    #: encoder initialisation: ``"imagenet"`` downloads torchvision's ImageNet DenseNet-121 on
    #: request (cached, hash-checked; :mod:`twohded.download`), a path reads a local copy,
    #: None (default) keeps the random init. Same as ``options.encoder_weights``.
    encoder_weights: Optional[str] = None
    #: fine-tuning: start from this checkpoint's weights (a file or run folder; its EMA weights
    #: when it has them). Heads the model lacks are dropped; heads the checkpoint lacks keep
    #: their fresh init. Ignored when resuming (the run's own checkpoint wins).
    init_checkpoint: Optional[str] = None


@dataclass(frozen=True)
class DataConfig:
    """Which dataset and how its items are made (see docs/datasets.md).

    ``None`` for ``resize`` / ``defocus`` / ``preset`` keeps the dataset's own default.
    """

    name: str = "synthetic"  # nyu | make3d | dfd | folder | synthetic | cache
    root: Optional[str] = None  # dataset path (not for synthetic)
    train_split: str = "train"
    val_split: Optional[str] = "val"  # None: no validation
    size: Union[int, str, None] = 256  # N, "WIDTHxHEIGHT" or None (native)
    resize: Optional[Literal["resize", "crop", "fit", "none"]] = None
    defocus: Optional[Literal["real", "render", "deferred", "none"]] = None
    preset: Optional[str] = None  # renderer preset: paper | d3net_nyu | dfd_indoor | syndof | mycam.yaml
    flip: bool = True  # random horizontal flips (training split only)
    rotate_deg: float = 0.0  # random rotations in [-A, A] degrees of the crop windows (needs train.preload, resize: crop)
    blur_at: Literal["source", "output"] = "source"
    val_limit: Optional[int] = None  # validate on the first N items only
    #: extra keyword arguments of the dataset class, for both splits (e.g. nyu ``border``, synthetic ``n``)
    options: dict[str, Any] = field(default_factory=dict)
    #: merged over ``options`` (and ``size``) for the validation split only
    val_options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class OptimConfig:
    """Optimizer. Paper: SGD, lr 2e-4; the authors' code: Adam, betas (0.5, 0.999)."""

    name: Literal["sgd", "adam", "adamw"] = "sgd"
    lr: float = 2e-4
    momentum: float = 0.9  # sgd
    nesterov: bool = False  # sgd
    betas: tuple[float, float] = (0.9, 0.999)  # adam / adamw
    eps: float = 1e-8  # adam / adamw
    weight_decay: float = 0.0
    grad_clip: Optional[float] = None  # max global gradient norm; None: no clipping


@dataclass(frozen=True)
class ScheduleConfig:
    """Learning-rate schedule, evaluated every step (epochs may be fractional).

    ``step``: lr x gamma at each milestone epoch; ``cosine``: cosine decay from the end of
    the warm-up to ``min_lr_ratio * lr`` at the last step; ``constant``. All: linear warm-up
    over ``warmup_epochs``.
    """

    name: Literal["step", "cosine", "constant"] = "step"
    milestones: tuple[int, ...] = (300,)  # epochs (step)
    gamma: float = 0.1  # step
    warmup_epochs: float = 0.0
    min_lr_ratio: float = 0.0  # cosine


@dataclass(frozen=True)
class TrainConfig:
    """The training loop."""

    epochs: int = 500
    max_steps: Optional[int] = None  # stop after this many optimizer steps (quick runs)
    batch_size: int = 4  # per process; global batch = batch_size x number of processes
    num_workers: int = 4
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    amp: Literal["auto", "bf16", "fp16", "none"] = "auto"  # auto: bf16 on GPUs that support it
    channels_last: bool = True  # CUDA only
    compile: bool = False  # torch.compile the model
    cuda_graphs: bool = False  # capture forward + loss + backward in a CUDA graph (CUDA, no DDP, no fp16)
    preload: bool = False  # hold the training split on the device, rendered once; batches drawn there
    sync_bn: bool = False  # SyncBatchNorm under DDP on CUDA
    ema_decay: Optional[float] = None  # exponential moving average of the weights, e.g. 0.999
    val_every: int = 1  # epochs
    best_metric: str = "auto"  # a validation metric; auto: rmse (depth models) or psnr (AiF only)
    checkpoint_every: int = 1  # epochs (last.pt)
    checkpoint_every_steps: Optional[int] = None  # also write last.pt every N steps
    log_every: int = 10  # steps between log.csv / TensorBoard rows
    out_dir: str = "runs"  # the run folder is out_dir/<name> (suffixed if it exists)
    progress: bool = True  # progress bar (only on a terminal)
    deterministic: bool = False  # torch.use_deterministic_algorithms (slower on GPU)


@dataclass(frozen=True)
class ExperimentConfig:
    """A whole experiment: what ``twohded train --config FILE`` runs."""

    name: str = "experiment"
    description: str = ""
    seed: int = 0
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        """Plain data (lists for tuples), ready for YAML or a checkpoint."""
        return _plain(dataclasses.asdict(self))

    def replace(self, **sections: Any) -> "ExperimentConfig":
        """Dotted-key replacement, e.g. ``cfg.replace(**{"train.epochs": 3})``."""
        return apply_overrides(self, sections, where="replace()")


#: mapping-valued fields whose keys are not checked (passed through)
FREE_MAPPINGS = {"model.options", "data.options", "data.val_options"}


# ------------------------------------------------------------------------------------------
# type checking
# ------------------------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if tp is type(None):
        return "null"
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is tuple:
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return f"list of {_type_name(args[0])}"
        return f"list of {len(args)} {_type_name(args[0])}"
    if origin is dict or tp is dict:
        return "mapping"
    if dataclasses.is_dataclass(tp):
        return "mapping"
    return getattr(tp, "__name__", str(tp))


def _describe(value: Any) -> str:
    kind = {type(None): "null", dict: "mapping", list: "list", bool: "bool", str: "str"}.get(type(value), type(value).__name__)
    text = repr(value)
    return f"{kind} {text if len(text) < 60 else text[:57] + '...'}"


class _Mismatch(Exception):
    pass


_FLOAT_RE = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


def _coerce(value: Any, tp: Any, key: str, where: str) -> Any:
    """``value`` checked against annotation ``tp``; raises :class:`_Mismatch` (no message)."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if tp is type(None):
        if value is None:
            return None
        raise _Mismatch
    if origin is Literal:
        if isinstance(value, str) and value in typing.get_args(tp):
            return value
        raise _Mismatch
    if origin in (Union, types.UnionType):
        for arg in typing.get_args(tp):
            try:
                return _coerce(value, arg, key, where)
            except _Mismatch:
                continue
        raise _Mismatch
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise _Mismatch
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise _Mismatch
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str) and _FLOAT_RE.match(value.strip()):
            return float(value)  # PyYAML (YAML 1.1) reads 2e-4 (no dot) as a string
        raise _Mismatch
    if tp is str:
        if isinstance(value, str):
            return value
        raise _Mismatch
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise _Mismatch
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0], key, where) for v in value)
        if len(value) != len(args):
            raise _Mismatch
        return tuple(_coerce(v, a, key, where) for v, a in zip(value, args))
    if origin is dict or tp is dict:
        if isinstance(value, dict):
            return dict(value)
        raise _Mismatch
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise _Mismatch
        return _build(tp, value, key + ".", where)
    raise TypeError(f"config: unsupported annotation {tp!r} for {key}")  # programming error


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _build(cls: type, data: dict, prefix: str, where: str) -> Any:
    """Instance of dataclass ``cls`` from ``data`` (missing keys keep their defaults)."""
    hints = _hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = [k for k in data if k not in names]
    if unknown:
        key = f"{prefix}{unknown[0]}"
        section = f"of {prefix[:-1]}" if prefix else "at the top level"
        raise InputError(f"{where}: unknown key {key!r}; known keys {section}: {', '.join(names)}")
    values = {}
    for name, value in data.items():
        key = f"{prefix}{name}"
        try:
            values[name] = _coerce(value, hints[name], key, where)
        except _Mismatch:
            raise InputError(
                f"{where}: {key}: expected {_type_name(hints[name])}, got {_describe(value)}"
            ) from None
    return cls(**values)


# ------------------------------------------------------------------------------------------
# semantic checks (values that have the right type but make no sense)
# ------------------------------------------------------------------------------------------


def _validate(cfg: ExperimentConfig, where: str) -> None:
    """Check every section of ``cfg``; the first problem is one :class:`InputError` naming its key."""
    def bad(key: str, msg: str) -> InputError:
        return InputError(f"{where}: {key}: {msg}")

    _validate_model_and_data(cfg, where, bad)
    _validate_optim(cfg.optim, bad)
    _validate_train(cfg, bad)


def _validate_model_and_data(cfg: ExperimentConfig, where: str, bad) -> None:
    from .data import DATASETS
    from .models import list_models

    if cfg.model.name not in list_models():
        raise bad("model.name", f"unknown model {cfg.model.name!r}; choose one of {', '.join(list_models())}")
    if cfg.model.encoder_weights is not None and "encoder_weights" in cfg.model.options:
        raise bad("model.encoder_weights", "also set in model.options; set it in one place")
    d = cfg.data
    if d.name.lower() not in DATASETS:
        raise bad("data.name", f"unknown dataset {d.name!r}; choose one of {', '.join(DATASETS)}")
    if d.name.lower() != "synthetic" and not d.root:
        example = {
            "nyu": "/path/to/nyu_depth_v2_labeled.mat",
            "make3d": "/path/to/make3d",
            "dfd": "/path/to/dfd_indoor",
            "idfd": "/path/to/iDFD",
            "cache": "/path/to/cache",
        }.get(d.name.lower(), "/path/to/data")
        raise InputError(
            f"{where}: data.root is not set: dataset {d.name!r} needs its location; add the override "
            f"data.root={example} to the command line"
        )
    if d.preset is not None:
        from .optics import get_preset

        try:
            get_preset(d.preset)  # a built-in name or a camera file (mycam.yaml)
        except InputError as exc:
            raise bad("data.preset", str(exc)) from None
    if d.size is not None:
        from .data import parse_size

        try:
            parse_size(d.size)
        except InputError:
            raise bad("data.size", f"expected N or 'WIDTHxHEIGHT' (e.g. 256 or 640x480), got {d.size!r}") from None
    if d.val_limit is not None and d.val_limit < 1:
        raise bad("data.val_limit", f"must be >= 1 (or null), got {d.val_limit}")


def _validate_optim(o: "OptimConfig", bad) -> None:
    if not (math.isfinite(o.lr) and o.lr > 0):
        raise bad("optim.lr", f"must be > 0, got {o.lr}")
    if o.momentum < 0 or o.weight_decay < 0 or o.eps <= 0:
        raise bad("optim", "momentum and weight_decay must be >= 0, eps > 0")
    if not all(0 <= b < 1 for b in o.betas):
        raise bad("optim.betas", f"each must be in [0, 1), got {list(o.betas)}")
    if o.grad_clip is not None and not o.grad_clip > 0:
        raise bad("optim.grad_clip", f"must be > 0 (or null), got {o.grad_clip}")


def _validate_train(cfg: ExperimentConfig, bad) -> None:
    """``schedule``, ``train`` and ``name``."""
    s = cfg.schedule
    t = cfg.train
    if t.epochs < 1:
        raise bad("train.epochs", f"must be >= 1, got {t.epochs}")
    if s.gamma <= 0:
        raise bad("schedule.gamma", f"must be > 0, got {s.gamma}")
    if list(s.milestones) != sorted(s.milestones) or any(m < 1 for m in s.milestones):
        raise bad("schedule.milestones", f"must be increasing epochs >= 1, got {list(s.milestones)}")
    if s.warmup_epochs < 0:
        raise bad("schedule.warmup_epochs", f"must be >= 0, got {s.warmup_epochs}")
    if not 0 <= s.min_lr_ratio <= 1:
        raise bad("schedule.min_lr_ratio", f"must be in [0, 1], got {s.min_lr_ratio}")

    for key in ("batch_size", "val_every", "checkpoint_every", "log_every"):
        if getattr(t, key) < 1:
            raise bad(f"train.{key}", f"must be >= 1, got {getattr(t, key)}")
    if t.num_workers < 0:
        raise bad("train.num_workers", f"must be >= 0, got {t.num_workers}")
    for key in ("max_steps", "checkpoint_every_steps"):
        if getattr(t, key) is not None and getattr(t, key) < 1:
            raise bad(f"train.{key}", f"must be >= 1 (or null), got {getattr(t, key)}")
    if t.ema_decay is not None and not 0 < t.ema_decay < 1:
        raise bad("train.ema_decay", f"must be in (0, 1) (or null), got {t.ema_decay}")
    dev = t.device
    if dev not in ("auto", "cpu", "cuda") and not (dev.startswith("cuda:") and dev[5:].isdigit()):
        raise bad("train.device", f"expected auto, cpu, cuda or cuda:N, got {dev!r}")
    if not t.out_dir:
        raise bad("train.out_dir", "must not be empty")
    if not cfg.name or any(c in cfg.name for c in "/\\") or cfg.name in (".", ".."):
        raise bad("name", f"must be a plain folder name (no slashes), got {cfg.name!r}")


# ------------------------------------------------------------------------------------------
# reading
# ------------------------------------------------------------------------------------------


def _read_yaml(path: Path) -> dict:
    import yaml

    if not path.exists():
        raise InputError(f"{path}: config file does not exist")
    if not path.is_file():
        raise InputError(f"{path}: config path is not a file")
    try:
        with open(path, encoding="utf-8") as fh:
            data = yaml.safe_load(fh)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise InputError(f"{path}: not valid YAML{at}: {problem}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read config: {exc}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise InputError(f"{path}: a config must be a mapping of sections, got {_describe(data)}")
    return data


def _merge(base: dict, top: dict) -> dict:
    """``top`` over ``base``: mappings merged key by key, anything else replaced."""
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _check_partial(data: dict, where: str) -> None:
    """Check the keys and types of one file's (partial) content; raise naming ``where``."""
    _build(ExperimentConfig, data, "", where)


def _load_chain(path: Path, seen: tuple[Path, ...] = ()) -> dict:
    path = Path(path)
    resolved = path.resolve()
    if resolved in seen:
        chain = " -> ".join(str(p) for p in (*seen, resolved))
        raise InputError(f"{path}: circular base: {chain}")
    data = _read_yaml(path)
    base = data.pop("base", None)
    _check_partial(data, str(path))
    if base is None:
        return data
    if not isinstance(base, str):
        raise InputError(f"{path}: base: expected a file name (str), got {_describe(base)}")
    base_path = Path(base) if os.path.isabs(base) else path.parent / base
    if not base_path.exists():
        raise InputError(f"{path}: base: {base_path} does not exist")
    return _merge(_load_chain(base_path, (*seen, resolved)), data)


def _set_dotted(data: dict, assignments: dict[str, Any]) -> dict:
    data = copy.deepcopy(data)
    for dotted, value in assignments.items():
        parts = dotted.split(".")
        node = data
        for part in parts[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = {}
                node[part] = child
            node = child
        node[parts[-1]] = value
    return data


def parse_overrides(overrides: list[str] | tuple[str, ...] | None) -> dict[str, Any]:
    """``["train.epochs=3", "data.root=/x"]`` -> ``{"train.epochs": 3, "data.root": "/x"}``.

    Values are parsed as YAML (``3`` int, ``1e-3`` float, ``null``, ``[0.5, 0.999]``,
    ``true``); text that is not valid YAML stays a string. Where a field expects a string,
    :func:`load_config` uses the text verbatim (so ``data.root=2024-01-01`` stays a path).
    """
    return {key: value for key, (value, _) in _parse_overrides(overrides).items()}


def _parse_overrides(overrides) -> dict[str, tuple[Any, str]]:
    import yaml

    out: dict[str, tuple[Any, str]] = {}
    for item in overrides or ():
        if not isinstance(item, str) or "=" not in item:
            raise InputError(f"override {item!r}: expected KEY=VALUE, e.g. train.epochs=3")
        key, text = item.split("=", 1)
        key = key.strip()
        if not key or any(not p for p in key.split(".")):
            raise InputError(f"override {item!r}: bad key {key!r}")
        try:
            value = yaml.safe_load(text) if text.strip() else ""
        except yaml.YAMLError:
            value = text
        out[key] = (value, text)
    return out


def _check_override_keys(assignments: dict[str, Any]) -> None:
    """Every override key must name a field (or a key under a free mapping)."""
    for dotted, value in assignments.items():
        where = f"override {dotted}={value!r}"
        parts = dotted.split(".")
        cls: Any = ExperimentConfig
        for i, part in enumerate(parts):
            if ".".join(parts[:i]) in FREE_MAPPINGS:
                break
            if not dataclasses.is_dataclass(cls):
                raise InputError(f"{where}: {'.'.join(parts[:i])} is not a section, it has no key {part!r}")
            names = [f.name for f in dataclasses.fields(cls)]
            if part not in names:
                prefix = ".".join(parts[:i])
                section = f"of {prefix}" if prefix else "at the top level"
                raise InputError(f"{where}: unknown key {'.'.join(parts[: i + 1])!r}; known keys {section}: {', '.join(names)}")
            cls = _hints(cls)[part]


def _apply_overrides(data: dict, overrides) -> tuple[dict, bool]:
    """``data`` (plain dict) with the overrides set, each checked on its own."""
    if isinstance(overrides, dict):
        parsed = {k: (v, None) for k, v in overrides.items()}
    else:
        parsed = _parse_overrides(overrides)
    assignments: dict[str, Any] = {}
    for dotted, (value, text) in parsed.items():
        _check_override_keys({dotted: value})
        where = f"override {dotted}={text}" if text is not None else f"override {dotted}={value!r}"
        try:  # type-check each override on its own, so that the message names it
            _check_partial(_set_dotted({}, {dotted: value}), where)
        except InputError:
            if text is None or value == text:
                raise
            try:  # a string field given e.g. "2024-01-01" or "yes": keep the text verbatim
                _check_partial(_set_dotted({}, {dotted: text}), where)
            except InputError:
                _check_partial(_set_dotted({}, {dotted: value}), where)  # the first message
            value = text
        assignments[dotted] = value
    return _set_dotted(data, assignments), bool(assignments)


def load_config(path: str | os.PathLike, overrides: list[str] | tuple[str, ...] | dict[str, Any] | None = None) -> ExperimentConfig:
    """Read, merge (``base:``), override and validate an experiment config.

    Args:
        path: a YAML file.
        overrides: ``["train.epochs=3", ...]`` (values parsed as YAML) or a dict of dotted keys.

    Raises:
        InputError: the file is missing or not YAML, a key is unknown, a value has the wrong
            type or makes no sense; the message names the key and the file (or override).
    """
    path = Path(path)
    data, overridden = _apply_overrides(_load_chain(path), overrides)
    where = str(path) + (" (with overrides)" if overridden else "")
    cfg = _build(ExperimentConfig, data, "", where)
    _validate(cfg, where)
    return cfg


def apply_overrides(cfg: ExperimentConfig, overrides, where: str = "config") -> ExperimentConfig:
    """``cfg`` with ``["key=value", ...]`` (or a dict of dotted keys) applied and re-validated."""
    data, overridden = _apply_overrides(cfg.to_dict(), overrides)
    if not overridden:
        return cfg
    return config_from_dict(data, where=f"{where} (with overrides)")


def config_from_dict(data: dict[str, Any], where: str = "config") -> ExperimentConfig:
    """Inverse of :meth:`ExperimentConfig.to_dict` (checked like a file)."""
    data = dict(data)
    data.pop("base", None)
    cfg = _build(ExperimentConfig, data, "", where)
    _validate(cfg, where)
    return cfg


def dump_config(cfg: ExperimentConfig) -> str:
    """The resolved config as YAML text (sections in declaration order)."""
    import yaml

    return yaml.safe_dump(cfg.to_dict(), sort_keys=False, default_flow_style=None, width=100)
