"""Atomic file output: stages write to a temporary path and move it into place."""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
from pathlib import Path
from typing import IO, Iterator, Union

PathLike = Union[str, os.PathLike]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# Errors of a write itself (no file name attached): full disk, quota, file too large, I/O error.
_WRITE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO)


class OutputError(OSError):
    """An output file could not be written (read-only dir, full disk, a directory in the way).

    Names the final path, not the hidden temporary file the failure happened on.
    """

    def __str__(self) -> str:
        return f"{self.filename}: cannot write it ({self.strerror})"


@contextlib.contextmanager
def atomic_write(path: PathLike, mode: str = "w", encoding: str | None = "utf-8") -> Iterator[IO]:
    """Opens a temporary file next to ``path`` and renames it onto ``path`` on success.

    On any exception the temporary file is removed and ``path`` is left untouched, so a
    crashed or interrupted stage never leaves a half-written output behind.

    Args:
        path: Final destination.
        mode: ``"w"`` for text or ``"wb"`` for binary.
        encoding: Text encoding (ignored for binary mode).

    Yields:
        The open temporary file object.

    Raises:
        OutputError: when the file cannot be created, written or moved into place (naming ``path``).
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as error:
        raise OutputError(error.errno, error.strerror, str(path)) from None
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; give the file the usual permissions
        with os.fdopen(fd, mode, encoding=None if "b" in mode else encoding) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as error:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(error, OSError) and not isinstance(error, OutputError) and (
            error.filename in (tmp, str(path)) or (error.filename is None and error.errno in _WRITE_ERRNOS)
        ):
            raise OutputError(error.errno, error.strerror, str(path)) from None
        raise


@contextlib.contextmanager
def atomic_dir(path: PathLike) -> Iterator[Path]:
    """Builds a directory under a temporary name and renames it onto ``path`` on success.

    An existing ``path`` is replaced only after the new one is complete.

    Args:
        path: Final directory.

    Yields:
        The temporary directory to fill.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        if path.exists():
            old = path.with_name(f".{path.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
