"""The training loop: ``train(config) -> RunResult``; ``train(resume=RUN_DIR)`` continues a run.

One call builds the datasets, the model, the loss, the optimizer and the schedule from an
:class:`~twohded.config.ExperimentConfig`, then trains with:

* defocus rendered on the training device inside the loop for RGB-D data
  (``data.defocus: deferred`` + :func:`twohded.data.render_batch`), so the loader only reads
  and crops;
* bf16 autocast on GPUs that support it (``train.amp``), channels_last, optional
  ``torch.compile``, optional EMA of the weights, gradient clipping;
* a seeded, sharded epoch order (:mod:`~twohded.training.sampler`) and saved RNG states, so
  that ``--resume`` continues a killed run *exactly* (also from the middle of an epoch);
* ``RUN_DIR/last.pt`` (atomic, every ``train.checkpoint_every`` epochs and/or
  ``train.checkpoint_every_steps`` steps, and at the end), ``best.pt`` (best validation
  ``train.best_metric``), ``config.yaml``, ``log.csv`` and TensorBoard files in ``tb/``;
* a non-finite loss stops the run with :class:`NonFiniteLossError` before the update;
* DDP when started by ``torchrun`` (see :mod:`~twohded.training.ddp`).

This module is the loop; what it trains with is built by
:func:`~twohded.training.components.build_components`, where it stands is a
:class:`~twohded.training.progress.Progress`, one step is a
:class:`~twohded.training.step.TrainStep` and the run folder comes from
:func:`~twohded.training.run_dir.open_run_dir`. See docs/training.md.
"""

from __future__ import annotations

import logging
import math
import os
import signal
import threading
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

from ..checkpoint import load_checkpoint, save_checkpoint
from ..config import ExperimentConfig, apply_overrides, config_from_dict, dump_config, load_config
from ..devices import device_type
from ..errors import InputError
from . import ddp
from .components import Components, strip_load_only, build_components, init_from_checkpoint, seed_all
from .logs import CSVLog, TensorBoardLog
from .progress import Progress
from .run_dir import open_run_dir
from .step import NonFiniteLossError
from .validation import validate

__all__ = ["train", "RunResult", "NonFiniteLossError", "KILL_ENV", "init_from_checkpoint"]

log = logging.getLogger("twohded.training")

#: testing hook: ``TWOHDED_KILL_AT_STEP=N`` ends the process abruptly (``os._exit(137)``, no
#: clean-up) right after optimizer step N, as a kill would; used to test ``--resume``.
KILL_ENV = "TWOHDED_KILL_AT_STEP"


@dataclass
class RunResult:
    """What :func:`train` returns (on every rank)."""

    run_dir: Path
    last_checkpoint: Path
    best_checkpoint: Optional[Path]
    step: int
    epoch: int  # epochs completed
    metrics: dict[str, float] = field(default_factory=dict)  # last validation
    best_metric: Optional[str] = None
    best_value: Optional[float] = None
    history: list[dict[str, Any]] = field(default_factory=list)  # one entry per completed epoch
    stopped: bool = False  # stopped early by SIGTERM (last.pt saved at that step; continue with --resume)


# ------------------------------------------------------------------------------------------
# set-up helpers
# ------------------------------------------------------------------------------------------


def _rng_state(device: torch.device) -> dict[str, Any]:
    """Every random state as tensors and plain types (loadable with ``weights_only=True``)."""
    version, internal, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "python": {"version": int(version), "state": [int(v) for v in internal], "gauss": gauss},
        "numpy": {"name": str(name), "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
    }


def _set_rng_state(state: dict[str, Any], device: torch.device) -> None:
    py, nps = state["python"], state["numpy"]
    random.setstate((py["version"], tuple(py["state"]), py["gauss"]))
    np.random.set_state((nps["name"], nps["keys"].numpy().astype(np.uint32), nps["pos"], nps["has_gauss"],
                         nps["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and state.get("cuda") is not None:
        torch.cuda.set_rng_state(state["cuda"], device)


def _resolve_resume(resume: str | os.PathLike) -> tuple[Path, dict[str, Any]]:
    path = Path(resume).expanduser()
    if path.is_dir():
        ckpt_path = path / "last.pt"
        if not ckpt_path.exists():
            raise InputError(f"{path}: no last.pt to resume from (is this a twohded run folder?)")
    else:
        ckpt_path = path
    state = load_checkpoint(ckpt_path)
    for key in ("config", "optimizer_state", "trainer_state"):
        if not state.get(key):
            raise InputError(f"{ckpt_path}: checkpoint has no {key}; only a training run's last.pt can be resumed")
    return ckpt_path.parent, state


def _fmt_metrics(metrics: dict[str, float], keys: tuple[str, ...] = ("loss", "rmse", "abs_rel", "delta1", "psnr", "ssim")) -> str:
    return "  ".join(f"{k} {metrics[k]:.4g}" for k in keys if k in metrics)


# ------------------------------------------------------------------------------------------
# the loop
# ------------------------------------------------------------------------------------------


def train(
    config: ExperimentConfig | str | os.PathLike | None = None,
    *,
    resume: str | os.PathLike | None = None,
    run_dir: str | os.PathLike | None = None,
    overrides: list[str] | dict[str, Any] | None = None,
    progress: bool | None = None,
    verbose: bool = True,
) -> RunResult:
    """Train (or, with ``resume=RUN_DIR``, continue) an experiment.

    Args:
        config: an :class:`ExperimentConfig` or a YAML path; with ``resume`` it defaults to
            the config saved in the checkpoint.
        resume: a run folder (its ``last.pt``) or a checkpoint file to continue exactly.
        run_dir: where to write a new run (default ``train.out_dir/<name>``, suffixed ``-2``,
            ``-3``, ... if it exists). Must be empty or absent.
        overrides: ``["train.epochs=3", ...]`` applied on top of ``config``.
        progress: show the progress bar (default ``train.progress``; only on a terminal).
        verbose: print one line per epoch (rank 0).

    Raises:
        InputError: bad config, data path, output folder (before anything is written).
        NonFiniteLossError: the loss became NaN / inf (``last.pt`` holds the last good state).
    """
    ckpt: dict[str, Any] | None = None
    if resume is not None:
        resume_dir, ckpt = _resolve_resume(resume)
        if config is None:
            cfg = config_from_dict(ckpt["config"], where=f"{resume_dir}/last.pt config")
        else:
            cfg = config if isinstance(config, ExperimentConfig) else load_config(config)
        cfg = apply_overrides(cfg, overrides, where=f"{resume_dir}/last.pt config")
    else:
        if config is None:
            raise InputError("train: give a config (or resume=RUN_DIR)")
        cfg = config if isinstance(config, ExperimentConfig) else load_config(config)
        cfg = apply_overrides(cfg, overrides)

    info = ddp.init_distributed(device_type(cfg.train.device))
    try:
        return _Trainer(cfg, info, ckpt, resume_dir if ckpt is not None else None, run_dir, progress, verbose).run()
    finally:
        ddp.shutdown_distributed(info)


class _Trainer:
    """One run: the loop over epochs and steps, validation, logs and checkpoints.

    Holds the config, the processes (``info``), the run folder, the :class:`Components` and
    the :class:`Progress`; everything else is in those.
    """

    def __init__(self, cfg, info, ckpt, resume_dir, run_dir, progress, verbose) -> None:
        self.cfg: ExperimentConfig = cfg
        self.info: ddp.DistInfo = info
        self.ckpt = ckpt
        self.resume_dir = resume_dir
        self.run_dir_arg = run_dir
        self.run_dir: Path | None = None
        self.show_progress = cfg.train.progress if progress is None else bool(progress)
        self.verbose = verbose and info.is_main
        self.progress = Progress()
        self.rng_to_restore: dict[str, Any] | None = None
        self.stop_requested = False  # set by SIGTERM (single process): save last.pt and stop after the step

    def say(self, text: str) -> None:
        if self.verbose:
            from tqdm import tqdm

            tqdm.write(text, file=sys.stdout)
            sys.stdout.flush()

    # -- set-up --------------------------------------------------------------------------
    def setup(self) -> None:
        cfg, ckpt = self.cfg, self.ckpt
        if ckpt is not None and ckpt["model_name"] != cfg.model.name:
            raise InputError(f"{self.resume_dir}: checkpoint holds model {ckpt['model_name']!r}, config asks for {cfg.model.name!r}")
        self.c: Components = build_components(cfg, self.info, ckpt["model_state"] if ckpt is not None else None,
                                              saved_note=self._saved_note)
        if ckpt is not None:
            self._restore(ckpt)

    def _restore(self, ckpt: dict[str, Any]) -> None:
        """Continue from ``last.pt``: progress, optimizer, schedule, scaler, EMA and random states."""
        cfg, info, c = self.cfg, self.info, self.c
        ts = ckpt["trainer_state"]
        p = self.progress = Progress.from_checkpoint(ckpt)
        same_layout = ts.get("world_size") == info.world_size and ts.get("batch_size") == cfg.train.batch_size
        if p.step_in_epoch and not same_layout:
            raise InputError(
                f"{self.resume_dir}: this run stopped in the middle of an epoch with {ts.get('world_size')} process(es) x "
                f"batch {ts.get('batch_size')}; resume it with the same (now {info.world_size} x {cfg.train.batch_size})"
            )
        if p.step_in_epoch >= c.data.steps_per_epoch:  # dataset changed size: start the next epoch
            p.epoch, p.step_in_epoch = p.epoch + 1, 0
        c.optimizer.load_state_dict(ckpt["optimizer_state"])
        if ckpt.get("scheduler_state"):
            c.scheduler.load_state_dict(ckpt["scheduler_state"])
        if c.scaler is not None and ckpt.get("scaler_state"):
            c.scaler.load_state_dict(ckpt["scaler_state"])
        if c.ema is not None:
            if ckpt.get("ema_state"):
                c.ema.load_state_dict(ckpt["ema_state"], ts.get("ema_updates", 0))
            else:
                log.warning("resuming without EMA state: the EMA starts from the current weights")
        if ts.get("best_metric") != c.best_metric:
            p.best_value = None
        rng = ckpt.get("rng_state") or {}
        ranks = rng.get("ranks") or []
        self.rng_to_restore = ranks[info.rank] if len(ranks) == info.world_size else None
        if self.rng_to_restore is None:
            log.warning("resuming with a different number of processes: random states are re-seeded (not bit-exact)")

    # -- checkpoints -----------------------------------------------------------------------
    def _model_fields(self) -> dict[str, Any]:
        c = self.c
        top, _ = self.progress.split()
        return {
            "model_name": self.cfg.model.name,
            "model_options": strip_load_only(dict(self.cfg.model.options)),
            "model_state": c.model.state_dict(),
            "ema_state": c.ema.state_dict() if c.ema is not None else None,
            "config": self.cfg.to_dict(),
            **top,
        }

    def save_last(self) -> None:
        rng = ddp.all_gather_object(_rng_state(self.c.device), self.info)  # collective: every rank
        if not self.info.is_main:
            return
        c, t = self.c, self.cfg.train
        _, progress = self.progress.split()
        state = self._model_fields()
        state.update(
            optimizer_state=c.optimizer.state_dict(),
            scheduler_state=c.scheduler.state_dict(),
            scaler_state=c.scaler.state_dict() if c.scaler is not None else None,
            rng_state={"world_size": self.info.world_size, "ranks": rng},
            trainer_state={
                **progress,
                "steps_per_epoch": c.data.steps_per_epoch,
                "world_size": self.info.world_size,
                "batch_size": t.batch_size,
                "global_batch": t.batch_size * self.info.world_size,
                "best_metric": c.best_metric,
                "ema_updates": c.ema.updates if c.ema is not None else 0,
            },
        )
        save_checkpoint(self.run_dir / "last.pt", state)

    def save_best(self) -> None:
        if self.info.is_main:
            save_checkpoint(self.run_dir / "best.pt", {**self._model_fields(), "best_metric": self.c.best_metric})

    def _saved_note(self) -> str:
        last = self.run_dir / "last.pt"
        return f"the last good checkpoint is {last}" if last.exists() else "no checkpoint was written yet"

    # -- validation ------------------------------------------------------------------------
    def run_validation(self) -> dict[str, float]:
        c = self.c
        metrics: dict[str, float] | None = None
        if self.info.is_main and c.data.val_loader is not None:
            model = c.ema.module if c.ema is not None else c.model
            metrics = validate(model, c.data.val_loader, c.loss_fn, c.device, c.autocast, c.channels_last)
        metrics = ddp.broadcast_object(metrics, self.info)
        self.progress.metrics = metrics or {}
        self.progress.last_val_step = self.progress.step
        return self.progress.metrics

    def improved(self, metrics: dict[str, float]) -> bool:
        value, best = metrics.get(self.c.best_metric), self.progress.best_value
        if value is None or not math.isfinite(value):
            return False
        if best is None:
            return True
        return value < best if self.c.best_mode == "min" else value > best

    # -- one step --------------------------------------------------------------------------
    def train_step(self, batch: dict[str, Any]) -> dict[str, float]:
        from ..data import render_batch, render_spec_of

        p = self.progress
        batch = render_batch(batch, render_spec_of(self.c.data.train), self.c.device)
        return self.c.train_step(batch, step=p.step + 1, epoch=p.epoch + 1)

    # -- main ------------------------------------------------------------------------------
    def run(self) -> RunResult:
        from tqdm import tqdm

        self.setup()
        if self.info.is_main:
            TensorBoardLog.summary_writer_class()  # fail before the run folder exists without it
        self.run_dir = open_run_dir(self.cfg, self.info, self.resume_dir, self.run_dir_arg)
        cfg, info, t, p = self.cfg, self.info, self.cfg.train, self.progress
        resumed = self.ckpt is not None
        csv_log = tb = None
        if info.is_main:
            csv_log = CSVLog(self.run_dir / "log.csv", resume_step=p.step if resumed else None)
            tb = TensorBoardLog(self.run_dir / "tb", purge_step=p.step + 1 if resumed else None)
            if not resumed:
                tb.text("config", "```\n" + dump_config(cfg) + "\n```")
        self.say(self._banner(resumed))
        if resumed and self.rng_to_restore is not None:
            _set_rng_state(self.rng_to_restore, self.c.device)
        else:
            # dropout etc.: a stream per rank, after the (shared) weight init
            seed_all((cfg.seed * 1_000_003 + 7919 * p.step + 1 + info.rank) % 2**63)
        kill_at = int(os.environ.get(KILL_ENV, "0") or 0)

        previous = self._catch_sigterm()
        try:
            while p.step < self.c.stop_step and p.epoch < t.epochs and not self.stop_requested:
                self._run_epoch(tqdm, csv_log, tb, kill_at)
        finally:
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)
            if tb is not None:
                tb.close()
        return self._result()

    def _catch_sigterm(self):
        """On SIGTERM, finish the step, save ``last.pt`` and stop (one process, main thread only;
        under torchrun the default behaviour stays). Returns the handler to restore, or None."""
        if self.info.world_size != 1 or threading.current_thread() is not threading.main_thread():
            return None

        def request_stop(signum, frame) -> None:
            self.stop_requested = True

        return signal.signal(signal.SIGTERM, request_stop)

    def _banner(self, resumed: bool) -> str:
        """The run's first lines: what trains on what, where, how long."""
        cfg, info, t, c, p = self.cfg, self.info, self.cfg.train, self.c, self.progress
        gb = t.batch_size * info.world_size
        return (
            f"{'resuming' if resumed else 'training'} {cfg.name}: {self.run_dir}\n"
            f"  model {cfg.model.name} ({c.n_params:,} parameters), data {cfg.data.name} "
            f"({len(c.data.train)} train, {len(c.data.val) if c.data.val is not None else 0} val), "
            f"device {c.device}, amp {c.amp_mode}\n"
            f"  {info.world_size} process(es) x batch {t.batch_size} = global batch {gb}, {c.data.steps_per_epoch} steps/epoch, "
            f"{t.epochs} epochs" + (f", stop at step {c.stop_step}" if t.max_steps else "")
            + (f"; from step {p.step} (epoch {p.epoch + 1}, batch {p.step_in_epoch})" if resumed else "")
            + (f"\n  {c.init_note}" if c.init_note and not resumed else "")
            + "".join(f"\n  {note}" for note in c.notes)
        )

    def _result(self) -> RunResult:
        p, c = self.progress, self.c
        last = self.run_dir / "last.pt"
        best = self.run_dir / "best.pt"
        if p.best_value is not None:
            self.say(f"done: step {p.step}, best {c.best_metric} {p.best_value:.4g}; checkpoints in {self.run_dir}")
        else:
            self.say(f"done: step {p.step}; checkpoint {last}")
        return RunResult(
            run_dir=self.run_dir,
            last_checkpoint=last,
            best_checkpoint=best if best.exists() else None,
            step=p.step,
            epoch=p.epoch,
            metrics=dict(p.metrics),
            best_metric=c.best_metric,
            best_value=p.best_value,
            history=list(p.history),
            stopped=self.stop_requested and p.step < c.stop_step,
        )

    def _run_epoch(self, tqdm, csv_log, tb, kill_at: int) -> None:
        cfg, info, t, c, p = self.cfg, self.info, self.cfg.train, self.c, self.progress
        epoch = p.epoch
        start = p.step_in_epoch
        steps = c.data.steps_per_epoch
        c.data.train.set_epoch(epoch)
        c.data.sampler.set_epoch(epoch, start)
        c.data.loader_gen.manual_seed((cfg.seed * 1_000_003 + epoch) % 2**63)
        bar = tqdm(
            total=steps, initial=start, desc=f"epoch {epoch + 1}/{t.epochs}", leave=False,
            disable=True if not (info.is_main and self.show_progress) else None, dynamic_ncols=True,
        )
        window = _Window()
        # running sums of this epoch (restored on a mid-epoch resume)
        if not start:
            p.epoch_sum = {}
        epoch_n = start
        try:
            it = c.data.batches(epoch, start)
            for k in range(start, steps):
                t0 = time.perf_counter()
                parts = self.train_step(next(it))
                p.step += 1
                p.step_in_epoch = k + 1
                took = time.perf_counter() - t0
                p.time_s += took
                window.add(parts, took)
                for key, v in parts.items():
                    p.epoch_sum[key] = p.epoch_sum.get(key, 0.0) + v
                epoch_n += 1
                bar.update(1)
                bar.set_postfix({key: f"{v / epoch_n:.4g}" for key, v in p.epoch_sum.items() if key in ("loss", "depth", "deblur")}, refresh=False)
                if self._after_step(window, epoch, epoch_n, csv_log, tb, kill_at):
                    break
        finally:
            bar.close()

    def _after_step(self, window: "_Window", epoch: int, epoch_n: int, csv_log, tb, kill_at: int) -> bool:
        """Logs, end of epoch, validation and checkpoints after a step; True when the run is done."""
        info, t, c, p = self.info, self.cfg.train, self.c, self.progress
        epoch_end = p.step_in_epoch == c.data.steps_per_epoch
        final = p.step >= c.stop_step
        lr = c.scheduler.get_last_lr()[0]
        if info.is_main and (p.step % t.log_every == 0 or epoch_end or final):
            row = window.row(t.batch_size * info.world_size)
            csv_log.write({"split": "train", "step": p.step, "epoch": p.step / c.data.steps_per_epoch,
                           "lr": lr, "time_s": p.time_s, **row})
            tb.scalars("train", {**row, "lr": lr}, p.step)
            window.clear()
        if epoch_end:
            p.epoch = epoch + 1
            p.step_in_epoch = 0
            self._end_of_epoch(p.epoch_sum, epoch_n, final, csv_log, tb, lr)
        elif final and c.data.val is not None:
            self._validate_and_log(csv_log, tb, lr)  # a max_steps run ends mid-epoch
        due_steps = t.checkpoint_every_steps and p.step % t.checkpoint_every_steps == 0
        due_epoch = epoch_end and (p.epoch % t.checkpoint_every == 0 or p.epoch >= t.epochs)
        if due_steps or due_epoch or final or self.stop_requested:
            self.save_last()
        if kill_at and p.step == kill_at:
            os._exit(137)  # testing hook: die like a killed process, no clean-up
        if self.stop_requested and not final:
            self.say(f"stopped by SIGTERM at step {p.step}; last.pt saved, continue with --resume {self.run_dir}")
        return final or self.stop_requested

    def _validate_and_log(self, csv_log, tb, lr) -> tuple[dict[str, float], bool]:
        p = self.progress
        metrics = self.run_validation()
        if self.info.is_main and metrics:
            csv_log.write({"split": "val", "step": p.step, "epoch": p.step / self.c.data.steps_per_epoch, "lr": lr,
                           "time_s": p.time_s, **metrics})
            tb.scalars("val", metrics, p.step)
            tb.flush()
        is_best = bool(metrics) and self.improved(metrics)
        if is_best:
            p.best_value = metrics[self.c.best_metric]
            self.save_best()
        return metrics, is_best

    def _end_of_epoch(self, epoch_sum, epoch_n, final, csv_log, tb, lr) -> None:
        t, p = self.cfg.train, self.progress
        train_loss = epoch_sum.get("loss", float("nan")) / max(1, epoch_n)
        entry: dict[str, Any] = {"epoch": p.epoch, "step": p.step, "loss": train_loss}
        text = f"epoch {p.epoch}/{t.epochs}  step {p.step}  loss {train_loss:.4g}  lr {lr:.3g}"
        if self.c.data.val is not None and (p.epoch % t.val_every == 0 or p.epoch >= t.epochs or final):
            val, best = self._validate_and_log(csv_log, tb, lr)
            if val:
                entry["val"] = dict(val)
                text += f"  | val {_fmt_metrics(val)}" + ("  (best)" if best else "")
        p.history.append(entry)
        self.say(text)


class _Window:
    """Loss parts and time of the steps since the last ``log.csv`` row (data wait + step time,
    no validation / checkpoint time)."""

    def __init__(self) -> None:
        self.clear()

    def clear(self) -> None:
        self.sums: dict[str, float] = {}
        self.n = 0
        self.time_s = 0.0

    def add(self, parts: dict[str, float], seconds: float) -> None:
        for key, v in parts.items():
            self.sums[key] = self.sums.get(key, 0.0) + v
        self.n += 1
        self.time_s += seconds

    def row(self, global_batch: int) -> dict[str, float]:
        """Mean loss parts and ``images_per_s`` (over every process) of the window."""
        row = {key: v / self.n for key, v in self.sums.items()}
        row["images_per_s"] = self.n * global_batch / max(self.time_s, 1e-9)
        return row
