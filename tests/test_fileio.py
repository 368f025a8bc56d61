"""Atomic outputs: the usual permissions, nothing half-written, errors that name the final path."""

from __future__ import annotations

import errno
import os
import stat
import time
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


_WRITER = """
import sys, time
from speakernet.utils.fileio import atomic_dir, atomic_write
kind, target = sys.argv[1], sys.argv[2]
if kind == "file":
    with atomic_write(target, "wb") as handle:
        handle.write(b"x" * 100_000)
        handle.flush()
        print("writing", flush=True)
        time.sleep(60)
else:
    with atomic_dir(target) as tmp:
        (tmp / "a.wav").write_bytes(b"y" * 1000)
        print("writing", flush=True)
        time.sleep(60)
"""


@pytest.mark.parametrize("kind", ["file", "dir"])
def test_a_killed_writers_temporary_is_removed_by_the_next_write(tmp_path: Path, kind: str) -> None:
    import signal
    import subprocess
    import sys

    from speakernet.utils import fileio

    target = tmp_path / ("step_000100.pt" if kind == "file" else "corpus")
    writer = subprocess.Popen([sys.executable, "-c", _WRITER, kind, str(target)], stdout=subprocess.PIPE, text=True)
    assert writer.stdout.readline() == "writing\n"
    # a live writer's temporary is left alone
    fileio._swept_dirs.clear()
    assert fileio.remove_stale_temps(tmp_path) == []
    writer.send_signal(signal.SIGKILL)
    # killed but not reaped yet (a zombie, as when its parent died with it): its temporary is stale already
    deadline = time.monotonic() + 10
    while not Path(f"/proc/{writer.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
        assert time.monotonic() < deadline, "the killed writer never became a zombie"
        time.sleep(0.01)
    fileio._swept_dirs.clear()
    zombie_swept = fileio.remove_stale_temps(tmp_path)
    writer.wait()
    assert len(zombie_swept) == 1 and f"-{writer.pid}." in zombie_swept[0].name and not zombie_swept[0].exists()
    if kind == "file":  # put it back: the sweep by the next write is tested below
        zombie_swept[0].write_bytes(b"half")
    else:
        zombie_swept[0].mkdir()
    stale = [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    assert len(stale) == 1 and stale[0].name.startswith(f".{target.name}.") and f"-{writer.pid}." in stale[0].name
    other_host = tmp_path / f".scores.otherhost-{writer.pid}.abc123.tmp"
    other_host.write_text("a writer on another machine of a shared file system\n")
    fileio._swept_dirs.clear()
    # the next output of any name into that dir sweeps it (a checkpoint save has a new name each time)
    with fileio.atomic_write(tmp_path / "step_000200.pt") as handle:
        handle.write("new\n")
    assert not stale[0].exists() and other_host.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([other_host.name, "step_000200.pt"])
