"""The ``twohded`` command line: one module per subcommand.

Each subcommand module defines ``add_parser(subparsers)`` (which registers its parser and
sets ``func``) and a ``run(args) -> int``. Errors derived from :class:`~twohded.errors.TwohdedError`
are printed as one line ``twohded: error: ...`` with exit status 2, never a traceback; so are
an error re-raised from a DataLoader worker (its last line is kept) and a write that failed
because of the disk (full, read-only, no permission).
"""

from __future__ import annotations

import argparse
import importlib
import sys

from ..errors import TwohdedError

#: Subcommand modules, in the order ``twohded --help`` lists them.
COMMANDS = ("demo", "train", "evaluate", "predict", "app", "export", "render", "scenes", "prepare", "camera")


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    parser = argparse.ArgumentParser(
        prog="twohded",
        description="2HDED:NET: depth and all-in-focus image from one defocused photograph.",
    )
    parser.add_argument("--version", action="version", version=f"twohded {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        try:
            module = importlib.import_module(f".{name}", __name__)
        except ModuleNotFoundError as exc:
            if exc.name == f"{__name__}.{name}":
                continue  # subcommand not built yet
            raise
        module.add_parser(sub)
    return parser


def one_line(exc: BaseException) -> str:
    """The message of ``exc`` as one line: for an error a DataLoader worker re-raised (its message
    is the worker's whole traceback), the original error's message."""
    text = str(exc)
    if "Original Traceback" in text:
        last = [line for line in text.strip().splitlines() if line.strip()][-1]
        name, sep, message = last.partition(": ")
        return message if sep and name.replace(".", "").replace("_", "").isalnum() else last
    return text


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 1
    try:
        return int(args.func(args) or 0)
    except TwohdedError as exc:
        print(f"twohded: error: {one_line(exc)}", file=sys.stderr)
        return 2
    except OSError as exc:
        from ..io import write_error

        error = write_error(exc.filename or "output", exc)
        if error is None:
            raise
        print(f"twohded: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("twohded: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
