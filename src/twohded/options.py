"""Keyword options checked against what a constructor declares (its signature), with one clear line.

A builder that forwards user options (``data.options``, ``-O key=value``, ``model.options``)
to a class checks them first with :func:`check_options`, instead of catching the
``TypeError`` Python raises for an unknown keyword.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Mapping

from .errors import InputError

__all__ = ["check_options", "keyword_names"]


def keyword_names(*callables: Callable, skip: Iterable[str] = (), keyword_only: bool = False) -> tuple[str, ...]:
    """The keyword parameter names of ``callables`` (``self``, ``*args``, ``**kwargs`` and ``skip``
    left out; with ``keyword_only``, only the parameters after ``*``), sorted."""
    kinds = (inspect.Parameter.KEYWORD_ONLY,) if keyword_only else (inspect.Parameter.KEYWORD_ONLY,
                                                                    inspect.Parameter.POSITIONAL_OR_KEYWORD)
    names = set()
    for fn in callables:
        for p in inspect.signature(fn).parameters.values():
            if p.kind in kinds and p.name != "self":
                names.add(p.name)
    return tuple(sorted(names - set(skip)))


def check_options(options: Mapping, accepted: Iterable[str], where: str, what: str) -> None:
    """:class:`InputError` ``"<where>: <what> does not accept option(s) ... (it accepts: ...)"``
    if ``options`` holds a name not in ``accepted``."""
    accepted = tuple(accepted)
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise InputError(f"{where}: {what} does not accept option(s) {', '.join(unknown)} (it accepts: {', '.join(accepted)})")
