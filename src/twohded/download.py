"""Downloads on request: fetch a URL into the cache, check its SHA-256, write it atomically.

Nothing in twohded downloads implicitly: only :func:`download` does, called when a user asks
for ``encoder_weights="imagenet"`` or passes a URL to :func:`twohded.load_model`.

Cache: ``$TWOHDED_CACHE`` if set, else ``~/.cache/twohded`` (:func:`cache_dir`); a file
``<url basename>`` lands in ``<cache>/<subdir>/``. A file already there is used only if its
hash checks (else it is removed and fetched again).

Hash check, in this order:

1. a full SHA-256 (64 hex digits) given by the caller (``sha256=``, or a ``#sha256=<hex>``
   suffix of the URL, :func:`split_url_hash`): the file's digest must equal it;
2. otherwise torchvision's / ``torch.hub``'s file-name convention: ``name-<hex>.ext`` (at
   least 8 hex digits, e.g. ``densenet121-a639ec97.pth``) means the SHA-256 starts with
   ``<hex>`` (:func:`hash_prefix`);
3. otherwise the download is refused before it starts (no hash, no download).

The file is streamed to a temporary file beside its final place, hashed while it is written,
and renamed into place only when complete and correct; a wrong hash removes it. Every
failure (unreachable host, HTTP error, truncated transfer, wrong hash, full disk) is one
:class:`DownloadError` line naming the URL.
"""

from __future__ import annotations

import hashlib
import os
import re
import socket
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from .errors import InputError

CACHE_ENV = "TWOHDED_CACHE"
CHUNK = 1 << 20
_PREFIX = re.compile(r"-([0-9a-f]{8,64})\.[^.]+$")
_FULL = re.compile(r"^[0-9a-f]{64}$")

__all__ = ["CACHE_ENV", "DownloadError", "cache_dir", "download", "file_sha256", "hash_prefix", "split_url_hash"]


class DownloadError(InputError):
    """A download that failed or did not verify (one line naming the URL)."""


def cache_dir() -> Path:
    """``$TWOHDED_CACHE``, else ``~/.cache/twohded`` (not created here)."""
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "twohded"


def file_sha256(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def hash_prefix(filename: str) -> str | None:
    """The hash prefix of a torchvision-style name (``densenet121-a639ec97.pth`` -> ``a639ec97``), or None."""
    m = _PREFIX.search(filename)
    return m.group(1) if m else None


def split_url_hash(url: str) -> tuple[str, str | None]:
    """``"https://x/m.pt#sha256=<hex>"`` -> ``("https://x/m.pt", "<hex>")``; no suffix: ``(url, None)``."""
    base, sep, fragment = url.partition("#")
    if not sep:
        return url, None
    if not fragment.startswith("sha256="):
        raise DownloadError(f"{url}: URL fragment must be #sha256=<64 hex digits>, got #{fragment}")
    return base, fragment[len("sha256="):]


def _expected(url: str, filename: str, sha256: str | None) -> tuple[str, bool]:
    """(expected hex, whether it is the full digest) or DownloadError if there is nothing to check."""
    if sha256 is not None:
        sha256 = sha256.strip().lower()
        if not _FULL.match(sha256):
            raise DownloadError(f"{url}: sha256 must be 64 hex digits, got {sha256!r}")
        return sha256, True
    prefix = hash_prefix(filename)
    if prefix is None:
        raise DownloadError(
            f"{url}: no hash to check the download against; pass sha256=<hex> or add #sha256=<hex> to the URL"
        )
    return prefix, False


def _matches(digest: str, expected: str, full: bool) -> bool:
    return digest == expected if full else digest.startswith(expected)


def _filename(url: str) -> str:
    name = Path(urllib.parse.urlparse(url).path).name
    return name or hashlib.sha256(url.encode()).hexdigest()[:16]


def _fetch(url: str, tmp: Path, timeout_s: float) -> str:
    """Stream ``url`` into ``tmp``; return its hex SHA-256. DownloadError on any failure."""
    h = hashlib.sha256()
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as resp, open(tmp, "wb") as fh:
            length = resp.headers.get("Content-Length")
            received = 0
            for chunk in iter(lambda: resp.read(CHUNK), b""):
                fh.write(chunk)
                h.update(chunk)
                received += len(chunk)
            if length is not None and length.isdigit() and received != int(length):
                raise DownloadError(f"{url}: transfer cut short ({received} of {length} bytes)")
    except urllib.error.HTTPError as exc:
        raise DownloadError(f"{url}: HTTP error {exc.code} {exc.reason}") from None
    except urllib.error.URLError as exc:
        raise DownloadError(f"{url}: cannot reach the server ({exc.reason})") from None
    except (socket.timeout, TimeoutError):
        raise DownloadError(f"{url}: no answer within {timeout_s:g} s") from None
    except OSError as exc:  # disk full, connection reset, ...
        raise DownloadError(f"{url}: download failed ({exc.strerror or exc})") from None
    return h.hexdigest()


def download(
    url: str,
    *,
    sha256: str | None = None,
    subdir: str = "downloads",
    cache: str | os.PathLike | None = None,
    filename: str | None = None,
    timeout_s: float = 60.0,
) -> Path:
    """Fetch ``url`` into the cache (once) and return the local path, hash-checked.

    Args:
        url: ``http://`` or ``https://`` URL; may end in ``#sha256=<hex>``.
        sha256: full expected SHA-256 (64 hex digits); else the file name's hash prefix.
        subdir: folder inside the cache.
        cache: cache folder (default :func:`cache_dir`).
        filename: local file name (default: the URL's base name).
        timeout_s: socket timeout, seconds.

    Raises:
        DownloadError: no hash to check, unreachable host, HTTP error, truncated transfer,
            wrong hash (the file is removed), or a write failure.
    """
    url, fragment_hash = split_url_hash(url)
    if sha256 is None:
        sha256 = fragment_hash
    elif fragment_hash is not None and fragment_hash.lower() != sha256.lower():
        raise DownloadError(f"{url}: the #sha256= suffix and the sha256 argument differ")
    if urllib.parse.urlparse(url).scheme not in ("http", "https"):
        raise DownloadError(f"{url}: only http:// and https:// URLs are downloaded")
    name = filename or _filename(url)
    expected, full = _expected(url, name, sha256)
    folder = Path(cache).expanduser() if cache is not None else cache_dir()
    folder = folder / subdir
    target = folder / name
    if target.is_file():
        if _matches(file_sha256(target), expected, full):
            return target
        target.unlink()  # corrupt or replaced: fetch again
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DownloadError(f"{folder}: cannot create the download cache ({exc.strerror or exc})") from None
    tmp = folder / f".{name}.tmp-{os.getpid()}"
    try:
        digest = _fetch(url, tmp, timeout_s)
        if not _matches(digest, expected, full):
            what = "SHA-256" if full else "SHA-256 prefix"
            raise DownloadError(
                f"{url}: downloaded file has SHA-256 {digest}, expected {what} {expected}; the file was removed"
            )
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target
