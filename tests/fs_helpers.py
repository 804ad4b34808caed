"""Real small or read-only filesystems for the failure tests, and a crafted malicious checkpoint.

``small_fs(path, size)`` mounts a real tmpfs of ``size`` bytes at ``path`` (root only, where the
kernel allows mounts), so a write past its size fails with the kernel's own ``ENOSPC``;
``readonly_fs(path)`` mounts one read-only (``EROFS``, which root cannot bypass, unlike
``chmod``). Both skip the test where mounting is not allowed (not root, a container without
CAP_SYS_ADMIN): nothing is patched or simulated.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import shlex
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def _mount(path: Path, options: str) -> None:
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True, text=True)
    if res.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {res.stderr.strip()}")


@contextlib.contextmanager
def small_fs(path: Path, size: int = 64 * 1024):
    """A real tmpfs of ``size`` bytes at ``path`` (unmounted afterwards)."""
    _mount(path, f"size={size},mode=0777")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


@contextlib.contextmanager
def readonly_fs(path: Path):
    """A real read-only tmpfs at ``path`` (``EROFS`` for every write)."""
    _mount(path, "size=64k,ro")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def listing(folder: Path) -> list[str]:
    """Every file under ``folder`` (hidden ones too), relative, sorted."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


class _Payload:
    """Unpickling this object would run ``touch MARKER`` (a real ``__reduce__`` attack)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {shlex.quote(str(self.marker))}",))


def malicious_checkpoint(path: Path, marker: Path) -> Path:
    """A ``torch.save`` file shaped like a twohded checkpoint whose unpickling runs ``touch MARKER``."""
    import torch

    from twohded.checkpoint import FORMAT

    torch.save({"format": FORMAT, "model_name": "2hded", "model_options": {}, "model_state": {},
                "x": _Payload(marker)}, path)
    return path


def pickle_is_live(path: Path, marker: Path) -> bool:
    """Whether unpickling ``path``'s ``data.pkl`` as plain pickle (what an unsafe load does) really
    runs the payload: proves the test's file is armed. Removes the marker again."""
    with zipfile.ZipFile(path) as archive:
        name = next(n for n in archive.namelist() if n.endswith("data.pkl"))
        pickle.loads(archive.read(name))
    armed = marker.exists()
    marker.unlink(missing_ok=True)
    return armed


def cli(*argv, env: dict | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    """``python -m twohded ARGV`` in a subprocess, with this checkout's ``src`` first on the path."""
    environ = {**os.environ, "PYTHONPATH": str(REPO_ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", ""),
               **(env or {})}
    return subprocess.run([sys.executable, "-m", "twohded", *map(str, argv)], capture_output=True, text=True,
                          env=environ, timeout=timeout)


def one_line(res: subprocess.CompletedProcess) -> str:
    """The single ``twohded: error:`` line of a failed command (asserts exit 2 and no traceback)."""
    lines = [line for line in res.stderr.strip().splitlines() if line.strip()]
    assert res.returncode == 2, (res.returncode, res.stderr[-2000:])
    assert len(lines) == 1 and lines[0].startswith("twohded: error: "), res.stderr[-2000:]
    return lines[0]
