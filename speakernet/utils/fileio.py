"""Atomic file output: stages write to a temporary path and move it into place."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import re
import shutil
import socket
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


# Temporaries carry this host and the writing process's pid: a later run on the same host tells
# a killed run's leftovers (pid gone) from a live writer's, and never touches another host's
# (a shared file system seen by cluster jobs).
_HOST = re.sub(r"[^A-Za-z0-9_-]", "_", socket.gethostname().split(".")[0]) or "host"
_STALE_TEMP = re.compile(rf"^\..+\.{re.escape(_HOST)}-(\d+)\.[A-Za-z0-9_]+\.tmp$")
_swept_dirs: set[str] = set()


def _temp_prefix(path: Path) -> str:
    return f".{path.name}.{_HOST}-{os.getpid()}."


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    # A killed process that nobody has reaped yet (a zombie: its parent was killed too, and a container's
    # init may be slow to reap) still answers kill(0), but holds no file: its temporaries are stale.
    with contextlib.suppress(OSError, ValueError, IndexError):
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
        if stat[stat.rindex(")") + 2] == "Z":
            return False
    return True


def remove_stale_temps(directory: PathLike) -> list[Path]:
    """Removes the temporary files and dirs that killed runs on this host left in ``directory``.

    A SIGKILL (or a power cut) skips the cleanup of :func:`atomic_write` and :func:`atomic_dir`,
    leaving ``.<name>.<host>-<pid>.<random>.tmp`` behind: half a checkpoint, half a corpus.
    The next atomic output into the same dir removes those whose process is gone, so a re-run
    after a kill or a full disk never needs room for two copies. Each dir is swept once per
    process.

    Args:
        directory: Directory to sweep.

    Returns:
        The paths removed.
    """
    directory = Path(directory)
    key = str(directory.resolve()) if directory.exists() else str(directory)
    if key in _swept_dirs:
        return []
    _swept_dirs.add(key)
    removed = []
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return []
    for entry in entries:
        match = _STALE_TEMP.match(entry.name)
        if match is None or _pid_alive(int(match.group(1))):
            continue
        path = Path(entry.path)
        with contextlib.suppress(OSError):
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(path)
            else:
                path.unlink()
            removed.append(path)
    return removed


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
        remove_stale_temps(path.parent)
        fd, tmp = tempfile.mkstemp(prefix=_temp_prefix(path), suffix=".tmp", dir=path.parent)
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

    Raises:
        OutputError: naming ``path``, when the temporary directory cannot be made.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temps(path.parent)
        tmp = Path(tempfile.mkdtemp(prefix=_temp_prefix(path), suffix=".tmp", dir=path.parent))
    except OSError as error:
        raise OutputError(error.errno, error.strerror, str(path)) from None
    try:
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp creates 0700; give the dir the usual permissions
        yield tmp
        if path.exists():
            old = path.with_name(f"{_temp_prefix(path)}old.tmp")  # swept like the others if a kill strands it
            shutil.rmtree(old, ignore_errors=True)
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def ensure_writable_dir(path: PathLike) -> Path:
    """Creates ``path`` (with its parents) if needed and checks that files can be created in it.

    Stages call it before their work, so a read-only or full output dir fails at once, naming
    the dir, rather than after an hour of computing (and with a traceback).

    Args:
        path: The output directory.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        OutputError: naming ``path``, if it cannot be created or written.
    """
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        # Creating a file is the only reliable test: os.access misses ACLs and some read-only mounts.
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as error:
        raise OutputError(error.errno, error.strerror, str(path)) from None
    return path


# A full device or quota: only a write raises these, so they cannot be mistaken for a failed read.
_SPACE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


def as_output_error(error: OSError, path: PathLike, permissions: bool = True) -> OSError:
    """``error`` as an :class:`OutputError` naming ``path`` when it is a failed write (full disk, read-only).

    Libraries that write for us (kaldiio, soundfile) raise ``Errno 28`` without a file name, or
    with the name of a temporary file; the user needs the output's own path.

    Args:
        error: What the write raised.
        path: The output being written.
        permissions: Also take permission errors (``EACCES``, ``EPERM``, ``EROFS``) as the
            output's; False where the same code also reads inputs, which can raise them too.

    Returns:
        An :class:`OutputError` for write errors, else ``error`` itself (for the caller to re-raise).
    """
    if isinstance(error, OutputError):
        return error
    if error.errno in _SPACE_ERRNOS + ((errno.EIO, errno.EACCES, errno.EPERM, errno.EROFS) if permissions else ()):
        return OutputError(error.errno, error.strerror, str(path))
    return error


class DirInUseError(ValueError):
    """Another process holds the lock of a stage's output dir (the message names it and the pid)."""


@contextlib.contextmanager
def exclusive_lock(path: PathLike, what: str) -> Iterator[None]:
    """Holds an exclusive lock on ``path`` (created if needed) for the duration of a stage.

    Two trainings into one exp dir, or two feature runs into one feature dir, would overwrite
    each other's files (and collide on their temporary names); the second one stops at once
    instead. The lock is ``flock``'s, so the kernel releases it when its process dies: a killed
    run leaves no stale lock. The file keeps the holder's pid, for the message.

    Args:
        path: Lock file, usually ``<output dir>/.lock``.
        what: What holds it, for the message (e.g. ``a training``).

    Raises:
        DirInUseError: if another process holds the lock.
        OutputError: if the lock file cannot be created (a read-only dir).
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(path, "a+", encoding="utf-8")
    except OSError as error:  # a read-only or missing output dir: named like any other output
        raise OutputError(error.errno, error.strerror, str(path)) from None
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "?"
        handle.close()
        raise DirInUseError(f"{path.parent}: {what} is already running there (pid {holder}, lock {path}); wait "
                            "for it to finish or use another directory") from None
    try:
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        yield
    finally:
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()


def file_sha256(path: PathLike) -> str:
    """SHA-256 of a file's bytes, read in blocks (a checkpoint can be large)."""
    hasher = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            hasher.update(block)
    return hasher.hexdigest()
