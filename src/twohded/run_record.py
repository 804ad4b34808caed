"""What a command that writes many items into a folder has finished, and with which settings.

``predict`` and ``scenes`` keep a small hidden JSON file in their output folder::

    {"format": "twohded-run-record/1", "command": "predict", "settings": {...}, "done": ["a", "b"]}

An item is added to ``done`` (the file rewritten atomically) only after all of its files were
written, so after an interruption a rerun with the same settings skips exactly the finished
items; a rerun with other settings is told so instead of being mixed with the old outputs.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from .errors import InputError
from .io import atomic_write

FORMAT = "twohded-run-record/1"

__all__ = ["RunRecord", "plain"]


def plain(value: Any) -> Any:
    """``value`` with paths, tuples and other objects as JSON types (paths absolute)."""
    if isinstance(value, os.PathLike):
        return str(Path(value).resolve())
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


class RunRecord:
    """The record ``folder/.twohded-<command>.json`` of one command's settings and finished items."""

    def __init__(self, folder: str | os.PathLike, command: str, settings: dict[str, Any]) -> None:
        self.path = Path(folder) / f".twohded-{command}.json"
        self.command = command
        self.settings = plain(settings)
        self.done: list[str] = []
        self.previous: dict[str, Any] | None = self._read()

    def _read(self) -> dict[str, Any] | None:
        if not self.path.is_file():
            return None
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            return None  # a damaged record counts as none: nothing is skipped
        ok = isinstance(data, dict) and data.get("format") == FORMAT and isinstance(data.get("done"), list)
        return data if ok else None

    @property
    def same_settings(self) -> bool:
        """Whether the folder's previous run had exactly these settings."""
        return self.previous is not None and self.previous.get("settings") == self.settings

    def finished(self) -> set[str]:
        """Items the previous run with the same settings finished (empty if the settings differ)."""
        return {str(x) for x in self.previous["done"]} if self.same_settings else set()

    def changed(self) -> list[str]:
        """Names of the settings that differ from the previous run's (empty if none recorded)."""
        if self.previous is None:
            return []
        old = self.previous.get("settings") or {}
        keys = sorted(set(old) | set(self.settings))
        return [k for k in keys if old.get(k) != self.settings.get(k)]

    def start(self, keep: set[str]) -> None:
        """Begin this run, keeping ``keep`` (finished items still valid) as done."""
        self.done = sorted(keep)
        if self.same_settings and sorted(map(str, self.previous["done"])) == self.done:
            return  # nothing changed: leave the file as it is
        self._write()

    def mark_done(self, item: str) -> None:
        """Record that every file of ``item`` was written."""
        self.done.append(str(item))
        self._write()

    def _write(self) -> None:
        data = {"format": FORMAT, "command": self.command, "settings": self.settings, "done": self.done}
        try:
            with atomic_write(self.path) as tmp:
                tmp.write_text(json.dumps(data, indent=1), encoding="utf-8")
        except OSError as exc:  # write_error kinds become InputError inside atomic_write
            raise InputError(f"{self.path}: cannot write the run record: {exc.strerror or exc}") from None
