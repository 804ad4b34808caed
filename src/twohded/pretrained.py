"""Where :func:`twohded.load_model` finds a checkpoint: a path, a URL, or a shipped model's name.

- a path (file, or run folder with best.pt / last.pt) that exists is used as it is;
- ``http://`` / ``https://`` URLs are downloaded once into the cache and hash-checked
  (:func:`twohded.download.download`: a ``#sha256=<hex>`` suffix, the ``sha256=`` argument,
  or a torchvision-style ``name-<hex>.pt`` file name; no hash, no download);
- a name of :data:`SHIPPED` (:func:`list_shipped`) resolves to a file inside the package or to
  a URL with its SHA-256.

No weights ship yet: ``"dfd-indoor"`` is registered (the model ``twohded app`` uses by
default) but has neither file nor URL, and says so.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from .errors import InputError

__all__ = ["SHIPPED", "ShippedModel", "list_shipped", "resolve_checkpoint"]


@dataclass(frozen=True)
class ShippedModel:
    """A named checkpoint: a file in ``twohded/resources/models/`` or a URL with its SHA-256."""

    name: str
    description: str
    resource: str | None = None
    url: str | None = None
    sha256: str | None = None


#: names :func:`twohded.load_model` accepts in place of a path
SHIPPED: dict[str, ShippedModel] = {
    "dfd-indoor": ShippedModel(
        "dfd-indoor", "2HDED:NET trained on DFD indoor, real f/2.8 defocus of its DSLR, configs/dfd_d3net.yaml"
    ),
}


def list_shipped() -> list[str]:
    """Names of the registered shipped models."""
    return sorted(SHIPPED)


def _shipped_path(entry: ShippedModel) -> Path:
    if entry.resource is not None:
        path = Path(str(resources.files("twohded") / "resources" / "models" / entry.resource))
        if path.is_file():
            return path
    if entry.url is not None:
        from .download import download

        return download(entry.url, sha256=entry.sha256, subdir="checkpoints")
    raise InputError(
        f"shipped model {entry.name!r}: no weights ship yet ({entry.description}); train one "
        "(docs/training.md) and pass its checkpoint path"
    )


def resolve_checkpoint(source: str | os.PathLike, sha256: str | None = None) -> Path:
    """The local checkpoint path of a path, URL or shipped-model name (see the module docstring).

    Raises:
        InputError: a name with no weights yet, or neither an existing path nor a known name;
            :class:`~twohded.download.DownloadError` for a URL that fails or does not verify.
    """
    text = os.fspath(source)
    if text.startswith(("http://", "https://")):
        from .download import download

        return download(text, sha256=sha256, subdir="checkpoints")
    path = Path(text).expanduser()
    if path.exists():
        return path
    if text in SHIPPED:
        return _shipped_path(SHIPPED[text])
    if os.sep not in text and "/" not in text and not path.suffix:
        raise InputError(
            f"{text}: neither a checkpoint file nor a shipped model (shipped: {', '.join(list_shipped())})"
        )
    return path  # load_checkpoint names the missing file
