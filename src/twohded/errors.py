"""Errors that the command line reports as one clear line (no traceback)."""

from __future__ import annotations


class TwohdedError(Exception):
    """Base class of every error twohded reports to a user as one line."""


class InputError(TwohdedError, ValueError):
    """Bad user input: a missing or unreadable file, a wrong shape, invalid values.

    The message names the input (file path or argument) and the problem.
    """
