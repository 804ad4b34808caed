"""The ``twohded`` command line: one module per subcommand.

Each subcommand module defines ``add_parser(subparsers)`` (which registers its parser and
sets ``func``) and a ``run(args) -> int``. Errors derived from :class:`~twohded.errors.TwohdedError`
are printed as one line ``twohded: error: ...`` with exit status 2, never a traceback.
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


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 1
    try:
        return int(args.func(args) or 0)
    except TwohdedError as exc:
        print(f"twohded: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("twohded: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
