"""Model registry: ``register_model`` / ``create_model`` / ``list_models``.

A model factory is a function ``factory(**options) -> nn.Module`` whose module

* takes ``(B, 3, H, W)`` images in ``[0, 1]`` of any size, and
* returns a :class:`~twohded.models.twohded.ModelOutput` with ``depth`` and/or ``aif``,
* is a :class:`~twohded.models.base.DefocusModel`: it declares ``outputs`` (the fields it
  fills, e.g. ``("depth", "aif")``), ``needs_depth`` and ``stride``.

Registering one is all it takes for the shared model tester (``tests/test_models.py``) to
check it::

    @register_model("dncnn", outputs=("aif",), num_params=N)  # N: exact count, asserted
    def dncnn(**options): ...
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from twohded.errors import InputError
from twohded.options import check_options, keyword_names

__all__ = ["ModelInfo", "register_model", "create_model", "list_models", "model_info", "DEFAULT_MODEL"]

DEFAULT_MODEL = "2hded"


@dataclass(frozen=True)
class ModelInfo:
    """What the registry knows about one model name."""

    name: str
    factory: Callable[..., nn.Module]
    outputs: tuple[str, ...]
    description: str = ""
    num_params: int | None = None  # exact count with default options, checked by the tester
    tester: dict[str, Any] = field(default_factory=dict)  # hints for the model tester (e.g. export=False)
    options_of: type | None = None  # the class the factory's ``**options`` go to

    def option_names(self) -> tuple[str, ...]:
        """The options :func:`create_model` accepts: the factory's keywords and, where it
        forwards ``**options``, those of ``options_of``'s constructor."""
        forwarded = keyword_names(self.options_of.__init__, keyword_only=True) if self.options_of else ()
        return tuple(sorted(set(keyword_names(self.factory)) | set(forwarded)))


_REGISTRY: dict[str, ModelInfo] = {}


def register_model(
    name: str,
    *,
    outputs: tuple[str, ...],
    description: str = "",
    num_params: int | None = None,
    tester: dict[str, Any] | None = None,
    options_of: type | None = None,
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator adding ``factory`` to the registry under ``name`` (``options_of``: the class
    its ``**options`` are passed to, so that :func:`create_model` can check them)."""

    def wrap(factory: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is already registered")
        _REGISTRY[name] = ModelInfo(name, factory, tuple(outputs), description or (factory.__doc__ or "").strip().split("\n")[0], num_params, dict(tester or {}),
                                    options_of)
        return factory

    return wrap


def list_models() -> list[str]:
    """Registered model names, sorted."""
    return sorted(_REGISTRY)


def model_info(name: str) -> ModelInfo:
    """Registry entry of ``name``; :class:`InputError` if unknown."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise InputError(f"unknown model {name!r}; known models: {', '.join(list_models())}") from None


def create_model(name: str = DEFAULT_MODEL, **options: Any) -> nn.Module:
    """Build model ``name`` (see :func:`list_models`) with ``options``.

    For ``2hded`` / ``2hded-depth`` / ``2hded-aif`` the options are those of
    :class:`~twohded.models.twohded.TwoHDEDNet` (``encoder_weights=path`` loads torchvision's
    ImageNet DenseNet-121 from a local file; ``encoder_weights="imagenet"`` downloads it on
    request, cached and hash-checked; nothing else downloads).

    Raises:
        InputError: unknown name, unknown option, or a missing/corrupt ``encoder_weights`` file.
    """
    info = model_info(name)
    check_options(options, info.option_names(), f"model {name!r}", "the model")
    return info.factory(**options)
