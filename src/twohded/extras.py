"""Optional dependencies, imported only where they are needed.

A user who only predicts installs ``pip install twohded``; the extras add what other parts need:

- ``train``: TensorBoard (``twohded train`` writes its event files);
- ``data``: h5py (NYU Depth v2's MATLAB v7.3 ``.mat`` is HDF5);
- ``export``: onnx, onnxruntime (``twohded export``); ``app``: gradio (``twohded app``);
- ``test``: everything the test suite and the README's demo need.

:func:`require` imports a module or raises one :class:`MissingExtraError` line naming the
extra to install.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from .errors import TwohdedError

__all__ = ["MissingExtraError", "require"]


class MissingExtraError(TwohdedError, ImportError):
    """An optional dependency is not installed (the message names the extra)."""


def require(module: str, extra: str, purpose: str) -> ModuleType:
    """``importlib.import_module(module)``, or :class:`MissingExtraError`:
    ``"<purpose> needs <module>: pip install 'twohded[<extra>]'"``."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingExtraError(
            f"{purpose} needs {module.split('.')[0]}, which is not installed: pip install 'twohded[{extra}]'"
        ) from None
