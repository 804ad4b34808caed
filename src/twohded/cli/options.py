"""Command-line options and checks shared by several subcommands (``evaluate``, ``predict``)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from ..errors import InputError

__all__ = ["add_fast_arguments", "check_out_dir"]


def add_fast_arguments(p) -> None:
    """``--fast/--no-fast``, ``--compile``, ``--compile-mode``."""
    from ..fast import COMPILE_MODES

    p.add_argument("--fast", action=argparse.BooleanOptionalAction, default=None,
                   help="the fast path: BatchNorm folding, bf16 autocast, channels-last, CUDA graphs "
                   "(default: on for CUDA GPUs, off on the CPU; --no-fast: plain fp32; docs/speed.md)")
    p.add_argument("--compile", action="store_true", help="torch.compile the network (minutes of compilation per input size)")
    p.add_argument("--compile-mode", choices=COMPILE_MODES, default=None,
                   help="torch.compile mode (implies --compile; default: torch's default)")


def check_out_dir(out: Path) -> None:
    """Create ``out`` (or fail with one line) and check it can be written."""
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: output path exists and is not a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"{out}: cannot create output folder: {exc.strerror or exc}") from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise InputError(f"{out}: output folder is not writable")
