"""Run logs: ``log.csv`` (one row per log event) and TensorBoard event files (``tb/``).

``log.csv`` columns: ``split`` (``train`` or ``val``), ``step``, ``epoch`` (fractional for
train rows), ``lr``, ``time_s`` (training wall time so far), then the loss parts of train rows
(``loss`` = total, ``depth_l1``, ``depth_grad``, ``deblur_charbonnier``, ``deblur_ssim``, ...,
means over the rows' window, and ``images_per_s``) and the validation metrics of val rows
(``loss``, ``rmse``, ``abs_rel``, ..., ``delta3``, ``psnr``, ``ssim``). A new column extends
the header (the file is rewritten, atomically). On resume, rows after the checkpoint's step
are dropped, and TensorBoard purges its events after that step.
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Any

from ..extras import require
from ..io import atomic_write

__all__ = ["CSVLog", "TensorBoardLog"]


FIRST = ("split", "step", "epoch", "lr", "time_s", "loss")


def _fmt(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return str(value)
        return f"{value:.6g}"
    return str(value)


class CSVLog:
    """Append rows (dicts) to a CSV file whose header grows with new keys."""

    def __init__(self, path: str | Path, resume_step: int | None = None) -> None:
        self.path = Path(path)
        self.columns: list[str] = list(FIRST)
        self.rows: list[dict[str, str]] = []
        if self.path.exists():
            with open(self.path, newline="", encoding="utf-8") as fh:
                reader = csv.DictReader(fh)
                if reader.fieldnames:
                    self.columns = list(reader.fieldnames)
                for row in reader:
                    try:
                        step = int(row.get("step") or 0)
                    except ValueError:
                        continue
                    if resume_step is not None and step > resume_step:
                        continue  # written after the checkpoint we resume from
                    self.rows.append(row)
        self._rewrite()

    def _rewrite(self) -> None:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=self.columns, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        for row in self.rows:
            writer.writerow(row)
        with atomic_write(self.path) as tmp:
            tmp.write_text(buf.getvalue(), encoding="utf-8")

    def write(self, row: dict[str, Any]) -> None:
        text = {k: _fmt(v) for k, v in row.items()}
        self.rows.append(text)
        new = [k for k in row if k not in self.columns]
        if new:
            self.columns.extend(new)
            self._rewrite()
            return
        with open(self.path, "a", newline="", encoding="utf-8") as fh:
            csv.DictWriter(fh, fieldnames=self.columns, extrasaction="ignore", lineterminator="\n").writerow(text)


class TensorBoardLog:
    """Scalars under ``train/...`` and ``val/...`` (TensorBoard: the ``train`` extra)."""

    def __init__(self, log_dir: str | Path, purge_step: int | None = None) -> None:
        self.writer = self.summary_writer_class()(log_dir=str(log_dir), purge_step=purge_step)

    @staticmethod
    def summary_writer_class():
        """``torch.utils.tensorboard.SummaryWriter``; :class:`~twohded.extras.MissingExtraError`
        (``pip install 'twohded[train]'``) without TensorBoard."""
        return require("torch.utils.tensorboard", "train", "training (TensorBoard logs)").SummaryWriter

    def scalars(self, prefix: str, values: dict[str, Any], step: int) -> None:
        if self.writer is None:
            return
        for key, value in values.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                self.writer.add_scalar(f"{prefix}/{key}", float(value), step)

    def text(self, tag: str, text: str) -> None:
        if self.writer is not None:
            self.writer.add_text(tag, text)

    def flush(self) -> None:
        if self.writer is not None:
            self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
