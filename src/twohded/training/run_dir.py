"""The run folder: ``RUN_DIR`` created (or checked on ``--resume``, its debris of killed
checkpoint writes removed) with its ``config.yaml``."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from ..config import ExperimentConfig, dump_config
from ..errors import InputError
from ..io import atomic_write, remove_temporaries
from . import ddp

__all__ = ["open_run_dir"]


def open_run_dir(cfg: ExperimentConfig, info: ddp.DistInfo, resume_dir: Path | None,
                 run_dir: str | os.PathLike | None) -> Path:
    """The run folder, on every rank: rank 0 creates it (or, resuming, checks ``resume_dir``)
    and writes ``config.yaml``; the other ranks learn its path or the error (:class:`InputError`).

    A new run goes to ``run_dir`` (must be empty or absent) or ``train.out_dir/<name>``,
    suffixed ``-2``, ``-3``, ... if that exists.
    """
    outcome: tuple[str | None, str | None] = (None, None)
    if info.is_main:
        try:
            if resume_dir is not None:
                path = Path(resume_dir)
                _check_writable(path, create=False)
                # a killed run may have left a half-written checkpoint (up to hundreds of MB)
                remove_temporaries([path / "last.pt", path / "best.pt", path / "config.yaml"])
            else:
                path = _new_run_dir(cfg, run_dir)
                try:
                    with atomic_write(path / "config.yaml") as tmp:
                        tmp.write_text(dump_config(cfg), encoding="utf-8")
                except BaseException:
                    with contextlib.suppress(OSError):
                        path.rmdir()
                    raise
            outcome = (str(path), None)
        except InputError as exc:
            outcome = (None, str(exc))
    outcome = ddp.broadcast_object(outcome, info)
    if outcome[1] is not None:
        raise InputError(outcome[1])
    path = Path(outcome[0])
    if resume_dir is not None and info.is_main:
        # keep the resolved config current (overrides on resume, e.g. more epochs)
        with atomic_write(path / "config.yaml") as tmp:
            tmp.write_text(dump_config(cfg), encoding="utf-8")
    return path


def _new_run_dir(cfg: ExperimentConfig, run_dir: str | os.PathLike | None) -> Path:
    if run_dir is not None:
        path = Path(run_dir).expanduser()
        if path.exists() and (not path.is_dir() or any(path.iterdir())):
            raise InputError(
                f"{path}: run folder already exists and is not empty; continue that run with --resume {path} "
                "or choose another --out"
            )
    else:
        base = Path(cfg.train.out_dir).expanduser() / cfg.name
        path, i = base, 2
        while path.exists() and (not path.is_dir() or any(path.iterdir())):
            path = base.with_name(f"{cfg.name}-{i}")
            i += 1
    _check_writable(path, create=True)
    return path


def _check_writable(path: Path, create: bool) -> None:
    try:
        if create:
            path.mkdir(parents=True, exist_ok=True)
        probe = path / ".twohded-write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise InputError(f"{path}: cannot write the run folder: {exc.strerror or exc}") from None
