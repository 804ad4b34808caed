"""twohded: 2HDED:NET, depth and all-in-focus image from a single defocused photograph.

Top-level API (imported lazily, so ``import twohded`` stays light):

- :func:`render_defocus` -- thin-lens, layered, occlusion-aware defocus renderer;
- :class:`Camera`, :func:`get_preset`, :func:`list_presets` -- thin-lens camera and presets;
- :class:`RenderSpec` -- camera, renderer mode and blur placement of a dataset, resolved once;
- :func:`create_model`, :func:`list_models` -- 2HDED:NET and its variants;
- :func:`load_model` -- a trained checkpoint as a :class:`Predictor` (``.predict(image)``);
- :func:`evaluate_model` -- depth and deblurring metrics on a dataset.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "render_defocus": "twohded.render",
    "Camera": "twohded.optics",
    "get_preset": "twohded.optics",
    "list_presets": "twohded.optics",
    "RenderSpec": "twohded.render_spec",
    "create_model": "twohded.models",
    "list_models": "twohded.models",
    "load_model": "twohded.predict",
    "Predictor": "twohded.predict",
    "evaluate_model": "twohded.evaluate",
    "InputError": "twohded.errors",
    "TwohdedError": "twohded.errors",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'twohded' has no attribute {name!r}")
