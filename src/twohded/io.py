"""Reading and writing images and depth maps, with clear errors and atomic writes.

Conventions used across twohded:

- an image tensor is ``(3, H, W)`` float32 in [0, 1] (sRGB values, not linearised);
- a depth tensor is ``(H, W)`` or ``(1, H, W)`` float32 in **metres**;
- depth files are 16-bit PNGs in **millimetres** (0 = no measurement) or ``.npy`` in metres.

Every writer goes through :func:`atomic_write`: the file appears complete or not at all; a
full disk or a read-only folder is one :class:`InputError` line and no temporary file stays.

Images larger than :func:`max_pixels` (default :data:`DEFAULT_MAX_PIXELS`, 200 megapixels;
environment variable ``TWOHDED_MAX_PIXELS``) are refused before they are decoded, so a
"decompression bomb" (a small file claiming a huge size) is one clear error.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
import warnings
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import InputError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm")
DEPTH_SUFFIXES = (".png", ".npy")
#: default largest image, in pixels (width x height), that twohded decodes
DEFAULT_MAX_PIXELS = 200_000_000
#: environment variable that changes :data:`DEFAULT_MAX_PIXELS`
MAX_PIXELS_ENV = "TWOHDED_MAX_PIXELS"
#: errno values of a failed write that are the user's disk, not a bug: full, quota, read-only, ...
WRITE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG, errno.EIO})


def max_pixels() -> int:
    """The largest image (width x height pixels) twohded decodes: ``$TWOHDED_MAX_PIXELS`` or the default."""
    raw = os.environ.get(MAX_PIXELS_ENV, "").strip()
    if not raw:
        return DEFAULT_MAX_PIXELS
    try:
        value = int(float(raw))
    except ValueError:
        value = 0
    if value < 1:
        raise InputError(f"{MAX_PIXELS_ENV}={raw!r}: give a positive number of pixels")
    return value


def write_error(path: str | os.PathLike, exc: OSError) -> InputError | None:
    """One-line :class:`InputError` for a write that failed because of the disk (full, read-only,
    no permission), or None if ``exc`` is another kind of error."""
    if exc.errno not in WRITE_ERRNOS:
        return None
    return InputError(f"{path}: cannot write: {exc.strerror or exc} (nothing written)")


def free_space(folder: str | os.PathLike) -> str:
    """``"N MB free on that disk"`` for ``folder``'s filesystem, for error messages."""
    try:
        st = os.statvfs(folder)
    except (OSError, AttributeError):
        return "free space unknown"
    return f"{st.f_bavail * st.f_frsize / 1e6:.1f} MB free on that disk"


def _check_file(path: Path, what: str) -> Path:
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: {what} file does not exist")
    if not path.is_file():
        raise InputError(f"{path}: {what} path is not a file")
    return path


@contextlib.contextmanager
def _pixel_limit(path: Path, what: str) -> Iterator[int]:
    """PIL's own decompression-bomb limit set to :func:`max_pixels` (restored afterwards)."""
    limit = max_pixels()
    old = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = limit
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            yield limit
    except Image.DecompressionBombError:
        raise InputError(f"{path}: {what} claims more than {limit} pixels, the limit "
                         f"(set {MAX_PIXELS_ENV} to allow larger images)") from None
    finally:
        Image.MAX_IMAGE_PIXELS = old


def _check_pixels(img: Image.Image, path: Path, what: str, limit: int) -> None:
    w, h = img.size
    if w * h > limit:
        raise InputError(f"{path}: {what} is {w}x{h} = {w * h} pixels, more than the limit of {limit} "
                         f"(set {MAX_PIXELS_ENV} to allow larger images)")


def image_size(path: str | os.PathLike, what: str = "image") -> tuple[int, int]:
    """``(width, height)`` from a file's header (cheap); :class:`InputError` for a missing,
    unreadable or too large (:func:`max_pixels`) image."""
    path = _check_file(Path(path), what)
    try:
        with _pixel_limit(path, what) as limit, Image.open(path) as img:
            _check_pixels(img, path, what, limit)
            return img.size
    except UnidentifiedImageError:
        raise InputError(f"{path}: cannot read {what}: not an image format PIL recognises") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise InputError(f"{path}: cannot read {what}: {exc}") from None


def _open_pil(path: Path, what: str) -> Image.Image:
    try:
        with _pixel_limit(path, what) as limit:
            img = Image.open(path)
            _check_pixels(img, path, what, limit)
            img.load()  # decode now, so a truncated file fails here
    except UnidentifiedImageError:
        raise InputError(f"{path}: cannot read {what}: not an image format PIL recognises") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise InputError(f"{path}: cannot read {what}: {exc}") from None
    return img


def pil_to_float_rgb(img: Image.Image) -> np.ndarray:
    """Any PIL image -> ``(H, W, 3)`` float32 in [0, 1].

    Handles EXIF orientation, grayscale (replicated to 3 channels), palette, RGBA / LA
    (alpha dropped, composited on nothing) and 16-bit ("I;16", "I") images.
    """
    img = ImageOps.exif_transpose(img)
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img, dtype=np.float32)
        scale = 65535.0 if arr.max(initial=0) > 255 or img.mode.startswith("I;16") else 255.0
        arr = np.clip(arr / scale, 0.0, 1.0)
        return np.repeat(arr[..., None], 3, axis=2)
    if img.mode == "F":
        arr = np.clip(np.asarray(img, dtype=np.float32), 0.0, 1.0)
        return np.repeat(arr[..., None], 3, axis=2)
    if img.mode != "RGB":
        img = img.convert("RGB")
    return np.asarray(img, dtype=np.float32) / 255.0


def read_image(path: str | os.PathLike) -> torch.Tensor:
    """Read an image file as a ``(3, H, W)`` float32 tensor in [0, 1].

    Raises :class:`InputError` naming the file if it is missing, truncated or not an image.
    """
    path = _check_file(Path(path), "image")
    arr = pil_to_float_rgb(_open_pil(path, "image"))
    return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))


def read_depth(path: str | os.PathLike, png_scale_m: float = 1e-3) -> torch.Tensor:
    """Read a depth map as an ``(H, W)`` float32 tensor in metres.

    Args:
        path: a 16-bit PNG (values times ``png_scale_m`` are metres; default millimetres)
            or a ``.npy`` array of shape (H, W) or (1, H, W) in metres.
        png_scale_m: metres per PNG unit.

    Invalid pixels (0 in a PNG, NaN/inf/<= 0 in a .npy) are returned as they are;
    :func:`check_depth` or :func:`fill_invalid_depth` decide what to do with them.
    """
    path = _check_file(Path(path), "depth")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        try:
            arr = np.load(path, allow_pickle=False)
        except (OSError, ValueError, EOFError) as exc:
            raise InputError(f"{path}: cannot read depth .npy: {exc}") from None
        if arr.ndim == 3 and arr.shape[0] == 1:
            arr = arr[0]
        if arr.ndim != 2:
            raise InputError(f"{path}: depth must be a 2-D (H, W) array in metres, got shape {arr.shape}")
        if not np.issubdtype(arr.dtype, np.number):
            raise InputError(f"{path}: depth array has non-numeric dtype {arr.dtype}")
        return torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32))
    img = _open_pil(path, "depth")
    if img.mode in ("L", "P", "1"):
        raise InputError(
            f"{path}: depth PNG is 8-bit (PIL mode {img.mode!r}): 256 levels cannot hold millimetres (it would read "
            "as at most 0.255 m); save depth as a 16-bit PNG in millimetres, or as .npy in metres "
            "(e.g. numpy.save('depth.npy', levels * METRES_PER_LEVEL))"
        )
    if img.mode not in ("I;16", "I;16B", "I;16L", "I", "F"):
        raise InputError(
            f"{path}: depth PNG must be single-channel 16-bit (millimetres), got PIL mode {img.mode!r}"
        )
    arr = np.asarray(img).astype(np.float32) * float(png_scale_m)
    return torch.from_numpy(np.ascontiguousarray(arr))


def describe_invalid_depth(depth_m: torch.Tensor) -> str | None:
    """Return a short description of invalid depth values, or None if all are valid (> 0, finite)."""
    bad_nan = int(torch.isnan(depth_m).sum())
    bad_inf = int(torch.isinf(depth_m).sum())
    bad_nonpos = int((depth_m <= 0).sum())
    parts = []
    if bad_nan:
        parts.append(f"{bad_nan} NaN")
    if bad_inf:
        parts.append(f"{bad_inf} infinite")
    if bad_nonpos:
        parts.append(f"{bad_nonpos} zero or negative")
    if not parts:
        return None
    return f"depth has {', '.join(parts)} pixels out of {depth_m.numel()}"


def valid_depth_mask(depth_m: torch.Tensor) -> torch.Tensor:
    """Boolean mask of valid depth: finite and > 0. Same shape as ``depth_m``."""
    return torch.isfinite(depth_m) & (depth_m > 0)


def check_depth(depth_m: torch.Tensor, name: str = "depth") -> None:
    """Raise :class:`InputError` naming ``name`` if any depth value is NaN, inf or <= 0."""
    problem = describe_invalid_depth(depth_m)
    if problem is not None:
        raise InputError(f"{name}: {problem} (depth must be finite and > 0 metres)")


def fill_invalid_depth(depth_m: torch.Tensor, name: str = "depth") -> torch.Tensor:
    """Replace invalid depth pixels (NaN, inf, <= 0) by the nearest valid pixel's depth.

    ``depth_m`` is ``(H, W)`` metres. Raises :class:`InputError` if no pixel is valid.
    """
    valid = valid_depth_mask(depth_m)
    if bool(valid.all()):
        return depth_m
    if not bool(valid.any()):
        raise InputError(f"{name}: no valid depth pixel (all are NaN, inf or <= 0)")
    from scipy import ndimage

    valid_np = valid.cpu().numpy()
    _, (iy, ix) = ndimage.distance_transform_edt(~valid_np, return_indices=True)
    filled = depth_m.cpu().numpy()[iy, ix]
    return torch.from_numpy(np.ascontiguousarray(filled, dtype=np.float32)).to(depth_m.device)


def _is_temporary(path: Path) -> bool:
    """Whether ``path`` is named like a temporary file of :func:`atomic_write` (``.<stem>.<random>.tmp<suffix>``)."""
    return path.name.startswith(".") and f".tmp{path.suffix}" in path.name and path.name.endswith(f".tmp{path.suffix}")


def _umask() -> int:
    """The process umask (read by setting and restoring it)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is renamed onto ``path``.

    On any exception the temporary file is removed and ``path`` is left untouched, so a
    reader never sees a half-written file. The parent folder is created if needed.
    """
    path = Path(path)
    if _is_temporary(path):  # already a temporary of an enclosing atomic_write (a group): write in place
        yield path
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"{path.parent}: cannot create output folder: {exc.strerror or exc}") from None
    if not os.access(path.parent, os.W_OK):
        raise InputError(f"{path.parent}: output folder is not writable")
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}", dir=path.parent)
        os.close(fd)
    except OSError as exc:
        raise (write_error(path, exc) or exc) from None
    tmp = Path(tmp_name)
    try:
        yield tmp
        # mkstemp creates 0600; give the file the permissions a plain open() would (0666 - umask)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        # errno-less OSErrors here come from writers such as numpy's tofile on a full disk
        error = write_error(path, exc) or (InputError(
            f"{path}: cannot write: {exc} ({free_space(path.parent)}; nothing written)") if exc.errno is None else None)
        if error is None:
            raise
        raise error from None
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


@contextlib.contextmanager
def folder_lock(folder: str | os.PathLike, command: str) -> Iterator[Path]:
    """Hold an exclusive lock on ``folder/.twohded.lock`` while a command writes into ``folder``.

    A second command on the same folder gets :class:`InputError` at once (it does not wait).
    The operating system releases the lock when the process ends, even if it is killed, so a
    lock file left behind never blocks a later run. Without ``fcntl`` (Windows) nothing is locked.
    """
    folder = Path(folder)
    path = folder / ".twohded.lock"
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield path
        return
    try:
        fh = open(path, "a+")
    except OSError as exc:
        raise (write_error(path, exc) or InputError(f"{path}: cannot create the lock file: {exc.strerror or exc}")) from None
    with fh:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            fh.seek(0)
            holder = fh.read().strip() or "another process"
            raise InputError(f"{folder}: another twohded command ({holder}) is writing into this folder; "
                             "wait until it ends or use another output folder") from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"{command}, process {os.getpid()}")
        fh.flush()
        yield path


def remove_temporaries(paths: list[Path] | tuple[Path, ...]) -> int:
    """Remove the debris of killed writes of ``paths`` (``.<stem>.<random>.tmp<suffix>`` files of :func:`atomic_write`); returns how many.

    Lists each folder once (not once per path), so it stays fast for thousands of outputs.
    """
    wanted: dict[Path, set[str]] = {}
    for path in map(Path, paths):
        wanted.setdefault(path.parent, set()).add(path.name)
    n = 0
    for folder, names in wanted.items():
        if not folder.is_dir():
            continue
        for entry in os.scandir(folder):
            original = _original_name(entry.name)
            if original in names and entry.is_file(follow_symlinks=False):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.path)
                    n += 1
    return n


def _original_name(name: str) -> str | None:
    """``"photo_depth.npy"`` for an :func:`atomic_write` temporary ``".photo_depth.k3j2.tmp.npy"``, else None."""
    if not name.startswith(".") or ".tmp" not in name:
        return None
    head, _, suffix = name[1:].rpartition(".tmp")
    stem, dot, _random = head.rpartition(".")
    if not dot or (suffix and not suffix.startswith(".")):
        return None
    return stem + suffix


def to_uint8_hwc(image: torch.Tensor) -> np.ndarray:
    """``(3, H, W)`` float in [0, 1] -> ``(H, W, 3)`` uint8 (rounded, clipped)."""
    arr = image.detach().float().cpu().clamp(0, 1).numpy().transpose(1, 2, 0)
    return np.round(arr * 255.0).astype(np.uint8)


def write_image(path: str | os.PathLike, image: torch.Tensor) -> None:
    """Write a ``(3, H, W)`` float image in [0, 1] as an 8-bit file (format from the suffix)."""
    path = Path(path)
    with atomic_write(path) as tmp:
        Image.fromarray(to_uint8_hwc(image)).save(tmp, format=_pil_format(path))


def write_depth_png_mm(path: str | os.PathLike, depth_m: torch.Tensor) -> None:
    """Write ``(H, W)`` or ``(1, H, W)`` depth in metres as a 16-bit PNG in millimetres.

    Values are rounded to the millimetre and clipped to [0, 65.535] m; invalid pixels become 0.
    """
    d = depth_m.detach().float().cpu().reshape(depth_m.shape[-2:]).numpy()
    d = np.where(np.isfinite(d) & (d > 0), d, 0.0)
    mm = np.clip(np.round(d * 1000.0), 0, 65535).astype(np.uint16)
    with atomic_write(path) as tmp:
        Image.fromarray(mm).save(tmp, format="PNG")


def write_npy(path: str | os.PathLike, array: torch.Tensor | np.ndarray) -> None:
    """Write an array as ``.npy`` (float tensors as float32), atomically."""
    arr = array.detach().cpu().numpy() if isinstance(array, torch.Tensor) else np.asarray(array)
    with atomic_write(path) as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, arr)


def _pil_format(path: Path) -> str:
    fmt = Image.registered_extensions().get(path.suffix.lower())
    if fmt is None:
        raise InputError(f"{path}: unknown image suffix {path.suffix!r} (use .png or .jpg)")
    return fmt


def check_output_file(out: Path, suffix: str, overwrite: bool) -> Path:
    """The output file ``out``: named ``*suffix``, not a folder, absent unless ``overwrite``
    (:class:`InputError` otherwise)."""
    out = Path(out)
    if out.suffix.lower() != suffix:
        raise InputError(f"{out}: the output file name must end in {suffix}")
    if out.is_dir():
        raise InputError(f"{out}: is a folder; give a file name ending in {suffix}")
    if out.exists() and not overwrite:
        raise InputError(f"{out}: already exists (use --overwrite to replace it)")
    return out
