"""Atomic outputs: the usual permissions, nothing half-written, errors that name the final path."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import pytest

from speakernet.utils.fileio import OutputError, atomic_dir, atomic_write


@pytest.fixture(params=[0o022, 0o027])
def umask(request: pytest.FixtureRequest):
    old = os.umask(request.param)
    yield request.param
    os.umask(old)


def test_outputs_keep_the_umask(tmp_path: Path, umask: int) -> None:
    with atomic_write(tmp_path / "a.txt") as handle:
        handle.write("x\n")
    with atomic_dir(tmp_path / "corpus") as directory:
        (directory / "f").write_text("y\n")
    assert stat.S_IMODE((tmp_path / "a.txt").stat().st_mode) == 0o666 & ~umask
    assert stat.S_IMODE((tmp_path / "corpus").stat().st_mode) == 0o777 & ~umask  # mkdtemp's 0700 is not kept


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "scores"
    target.write_text("old\n")
    with pytest.raises(RuntimeError):
        with atomic_write(target) as handle:
            handle.write("half")
            raise RuntimeError("killed")
    with pytest.raises(OutputError, match=rf"{target}: cannot write it \(.*No space left"):
        with atomic_write(target) as handle:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))  # a full disk, as write() reports it
    assert target.read_text() == "old\n" and sorted(p.name for p in tmp_path.iterdir()) == ["scores"]


def test_a_failed_directory_leaves_the_old_one(tmp_path: Path) -> None:
    (tmp_path / "corpus").mkdir()
    (tmp_path / "corpus" / "keep").write_text("old\n")
    with pytest.raises(RuntimeError):
        with atomic_dir(tmp_path / "corpus") as directory:
            (directory / "new").write_text("half\n")
            raise RuntimeError("killed")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corpus"]
    assert sorted(p.name for p in (tmp_path / "corpus").iterdir()) == ["keep"]
