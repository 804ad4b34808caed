"""Atomic output writing: all or nothing, with ordinary file permissions."""

import os
import stat

import pytest

from twohded.io import atomic_write


def test_atomic_write_gives_umask_permissions_and_replaces(tmp_path):
    target = tmp_path / "out" / "a.txt"
    with atomic_write(target) as tmp:
        tmp.write_text("one")
    mask = os.umask(0o022)
    os.umask(mask)
    assert target.read_text() == "one"
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~mask
    with atomic_write(target) as tmp:
        tmp.write_text("two")
    assert target.read_text() == "two"


def test_atomic_write_leaves_nothing_on_error(tmp_path):
    target = tmp_path / "b.txt"
    with pytest.raises(RuntimeError):
        with atomic_write(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("boom")
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []
