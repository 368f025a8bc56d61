"""Embedding tables: reading and writing ``xvector.ark/.scp``, speaker and global means.

A table is a list of keys and a float32 matrix ``[num_keys, embed_dim]`` whose row ``i`` is the
embedding of ``keys[i]``. On disk it is a Kaldi archive of float vectors indexed by a scp
(read and written with kaldiio), so Kaldi's ``ivector-*`` tools and WeSpeaker read it too.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import kaldiio
import numpy as np

from speakernet.data.kaldi_dir import DataDirError, read_scp
from speakernet.utils.dropped import DROPPED_NAME, log_dropped, write_dropped
from speakernet.utils.fileio import PathLike, atomic_write

logger = logging.getLogger(__name__)


def load_embeddings(scp: PathLike) -> tuple[list[str], np.ndarray]:
    """Loads every embedding indexed by a scp file.

    Args:
        scp: ``<key> <ark>:<offset>`` file of float vectors (a ``[1, dim]`` matrix is taken
            as a vector).

    Returns:
        ``(keys, matrix)``: keys in file order and a float32 matrix ``[num_keys, dim]``.

    Raises:
        DataDirError: on a missing or empty scp, a duplicate key, an unreadable entry, an entry
            that is not a vector, a dimension that differs from the first entry's, or a
            non-finite value; the message names the scp file and the key.
    """
    scp = Path(scp)
    entries = read_scp(scp)  # checks existence, format and duplicate keys with line numbers
    if not entries:
        raise DataDirError(scp, "no embeddings in scp file")
    start = time.perf_counter()
    fast = _load_float_vectors(scp, entries)
    if fast is not None:
        keys, matrix = list(entries), fast
        bad = np.flatnonzero(~np.isfinite(matrix).all(axis=1))
        if bad.size:
            raise DataDirError(scp, "embedding has non-finite values", key=keys[bad[0]])
        elapsed = max(time.perf_counter() - start, 1e-9)
        logger.info("Loaded %d embeddings of dimension %d from %s (%.0f embeddings/s)",
                    len(keys), matrix.shape[1], scp, len(keys) / elapsed)
        return keys, matrix
    entry_keys = list(entries)
    keys: list[str] = []
    rows: list[np.ndarray] = []
    iterator = kaldiio.load_scp_sequential(str(scp))
    for expected in entry_keys:
        try:
            key, value = next(iterator)
        except Exception as error:  # kaldiio raises assorted errors on missing or truncated arks
            raise DataDirError(scp, f"cannot read embedding: {error}", key=expected) from error
        vector = np.asarray(value)
        if vector.ndim == 2 and vector.shape[0] == 1:
            vector = vector[0]
        if vector.ndim != 1:
            raise DataDirError(scp, f"embedding must be a vector, got shape {vector.shape}", key=key)
        if rows and vector.shape[0] != rows[0].shape[0]:
            raise DataDirError(
                scp,
                f"embedding dimension {vector.shape[0]} differs from {rows[0].shape[0]} of '{keys[0]}'",
                key=key,
            )
        if not np.all(np.isfinite(vector)):
            raise DataDirError(scp, "embedding has non-finite values", key=key)
        keys.append(key)
        rows.append(vector.astype(np.float32, copy=False))
    matrix = np.stack(rows)
    elapsed = max(time.perf_counter() - start, 1e-9)
    logger.info(
        "Loaded %d embeddings of dimension %d from %s (%.0f embeddings/s)",
        len(keys), matrix.shape[1], scp, len(keys) / elapsed,
    )
    return keys, matrix


# Kaldi's binary float vector: "\0B", the token "FV ", a 4-byte size marker, the int32 dimension.
_FLOAT_VECTOR_HEADER = b"\x00BFV \x04"


def _load_float_vectors(scp: Path, entries: Mapping[str, str]) -> np.ndarray | None:
    """Reads an archive of equal-length float32 vectors in one go, or None if it is not one.

    The common case (our own ``xvector.ark``, WeSpeaker's, Kaldi's ``ivector-*`` output): every
    scp entry is ``<ark>:<offset>`` into one uncompressed file of ``FV`` vectors. Reading that
    file whole and viewing each vector with ``np.frombuffer`` is about 10x faster than kaldiio's
    per-entry reader, which matters at VoxCeleb scale (150 k embeddings per scoring stage).
    Anything else (several archives, matrices, doubles, pipes, a bad offset) returns None and
    takes the general path, which also gives the precise error.
    """
    arks, offsets = set(), []
    for value in entries.values():
        ark, sep, offset = value.rpartition(":")
        if not sep or not offset.isdigit() or ark.endswith("|"):
            return None
        arks.add(ark)
        offsets.append(int(offset))
        if len(arks) > 1:
            return None
    ark_path = Path(next(iter(arks)))
    if not ark_path.is_absolute() and not ark_path.is_file():
        return None
    try:
        data = ark_path.read_bytes()
    except OSError:
        return None
    header = len(_FLOAT_VECTOR_HEADER)
    first = offsets[0]
    if data[first:first + header] != _FLOAT_VECTOR_HEADER or len(data) < first + header + 4:
        return None
    dim = int(np.frombuffer(data, dtype="<i4", count=1, offset=first + header)[0])
    if dim <= 0:
        return None
    # Every header checked at once, then the vectors joined in one copy (4x faster than a
    # per-row loop at 140 k entries); a bytearray, so the matrix is writable.
    starts = np.asarray(offsets, dtype=np.int64)
    if starts.min() < 0 or starts.max() + header + 4 + 4 * dim > len(data):
        return None
    expected = np.frombuffer(_FLOAT_VECTOR_HEADER + int(dim).to_bytes(4, "little", signed=True), dtype=np.uint8)
    heads = np.frombuffer(data, dtype=np.uint8)[starts[:, None] + np.arange(expected.size)]
    if not (heads == expected).all():
        return None
    view = memoryview(data)
    size = 4 * dim
    joined = bytearray().join([view[start:start + size] for start in (starts + header + 4).tolist()])
    return np.frombuffer(joined, dtype="<f4").reshape(len(offsets), dim).astype(np.float32, copy=False)


def write_embeddings(ark_path: PathLike, scp_path: PathLike, keys: Sequence[str], matrix: np.ndarray,
                     scp_ark_path: PathLike | None = None) -> None:
    """Writes an embedding table as a Kaldi archive and its scp, atomically.

    Both files are written under temporary names and moved into place (the old scp removed
    first, then the archive, then the new scp);
    the scp points at ``ark_path`` made absolute, as ``feats.scp`` does, so a scorer run from
    another directory than the recipe's still finds the archive.

    Args:
        ark_path: Destination archive (``xvector.ark``).
        scp_path: Destination index (``xvector.scp``).
        keys: One key per row; no duplicates, no whitespace.
        matrix: Float matrix ``[num_keys, dim]``; written as float32 vectors.
        scp_ark_path: The archive path the scp records, when the files are written where they will
            not stay (a directory built under a temporary name and renamed); default ``ark_path``.

    Raises:
        ValueError: on a key count that differs from the row count, a duplicate or empty key,
            a key containing whitespace, or a matrix that is not 2-D.
    """
    matrix = np.asarray(matrix)
    if matrix.ndim != 2:
        raise ValueError(f"embedding matrix must be 2-D [num_keys, dim], got shape {matrix.shape}")
    if len(keys) != matrix.shape[0]:
        raise ValueError(f"got {len(keys)} keys for {matrix.shape[0]} embeddings")
    seen: set[str] = set()
    for key in keys:
        if not key or len(key.split()) != 1 or key != key.strip():
            raise ValueError(f"embedding key must be non-empty without whitespace, got '{key}'")
        if key in seen:
            raise ValueError(f"duplicate embedding key '{key}'")
        seen.add(key)
    matrix = matrix.astype(np.float32, copy=False)
    # kaldiio.save_ark would write the temporary archive name into the scp, so each entry is
    # written here (key, space, kaldiio's binary vector) and its offset recorded by hand.
    offsets = []
    with atomic_write(scp_path) as scp_handle:
        with atomic_write(ark_path, "wb") as ark_handle:
            for key, row in zip(keys, matrix):
                ark_handle.write(f"{key} ".encode())
                offsets.append(ark_handle.tell())
                kaldiio.save_mat(ark_handle, row)
            # The old index goes before the new archive takes the old one's place: killed between
            # the two renames, the dir holds no scp (an error downstream), never an old scp whose
            # offsets point into the new archive (other embeddings under the old keys).
            with contextlib.suppress(FileNotFoundError):
                os.unlink(scp_path)
        ark_reference = os.path.abspath(ark_path if scp_ark_path is None else scp_ark_path)
        for key, offset in zip(keys, offsets):
            scp_handle.write(f"{key} {ark_reference}:{offset}\n")
    logger.info("Wrote %d embeddings to %s and %s", len(keys), ark_path, scp_path)


def write_vector(path: PathLike, vector: np.ndarray) -> None:
    """Writes one float32 vector as a Kaldi binary vector file (``mean.vec``), atomically.

    Args:
        path: Destination file.
        vector: 1-D array.

    Raises:
        ValueError: if ``vector`` is not 1-D.
    """
    vector = np.asarray(vector)
    if vector.ndim != 1:
        raise ValueError(f"expected a 1-D vector, got shape {vector.shape}")
    with atomic_write(path, "wb") as handle:
        kaldiio.save_mat(handle, vector.astype(np.float32, copy=False))


def read_vector(path: PathLike) -> np.ndarray:
    """Reads a Kaldi vector file such as ``mean.vec``.

    Args:
        path: File written by :func:`write_vector`, Kaldi's ``ivector-mean`` or kaldiio.

    Returns:
        Float32 vector.

    Raises:
        DataDirError: if the file is missing, unreadable or not a vector.
    """
    path = Path(path)
    if not path.is_file():
        raise DataDirError(path, "file does not exist")
    try:
        value = np.asarray(kaldiio.load_mat(str(path)))
    except Exception as error:  # kaldiio raises assorted errors on malformed files
        raise DataDirError(path, f"cannot read Kaldi vector: {error}") from error
    if value.ndim == 2 and value.shape[0] == 1:
        value = value[0]
    if value.ndim != 1:
        raise DataDirError(path, f"expected a vector, got shape {value.shape}")
    return value.astype(np.float32, copy=False)


def global_mean(matrix: np.ndarray) -> np.ndarray:
    """The mean embedding of a table (accumulated in float64).

    Args:
        matrix: Embeddings ``[num_keys, dim]``.

    Returns:
        Float32 vector ``[dim]``.

    Raises:
        ValueError: on an empty or non-2-D matrix.
    """
    matrix = np.asarray(matrix)
    if matrix.ndim != 2 or matrix.shape[0] == 0:
        raise ValueError(f"expected a non-empty [num_keys, dim] matrix, got shape {matrix.shape}")
    return matrix.mean(axis=0, dtype=np.float64).astype(np.float32)


def speaker_means(
    utt_keys: Sequence[str],
    matrix: np.ndarray,
    utt2spk: Mapping[str, str],
    utt2spk_path: PathLike = "utt2spk",
    dtype: type = np.float32,
) -> tuple[list[str], np.ndarray]:
    """Averages utterance embeddings per speaker (plain mean, not length-normalised).

    This is Kaldi's ``ivector-mean`` over spk2utt and WeSpeaker's ``tools/vector_mean.py``.

    Args:
        utt_keys: Utterance key of each row of ``matrix``.
        matrix: Utterance embeddings ``[num_utts, dim]``.
        utt2spk: Utterance -> speaker map; every key of ``utt_keys`` must be in it.
        utt2spk_path: Name of the utt2spk file, for error messages.
        dtype: Type of the returned means (accumulated in float64 whatever it is).

    Returns:
        ``(spk_keys, means)``: speakers in C-locale order and a ``dtype`` matrix
        ``[num_speakers, dim]`` of their mean embeddings.

    Raises:
        DataDirError: for an utterance with no speaker in ``utt2spk`` (names the key).
        ValueError: if the key count differs from the row count or there are no rows.
    """
    matrix = np.asarray(matrix)
    if matrix.ndim != 2 or matrix.shape[0] == 0:
        raise ValueError(f"expected a non-empty [num_utts, dim] matrix, got shape {matrix.shape}")
    if len(utt_keys) != matrix.shape[0]:
        raise ValueError(f"got {len(utt_keys)} keys for {matrix.shape[0]} embeddings")
    speakers = []
    for utt in utt_keys:
        speaker = utt2spk.get(utt)
        if speaker is None:
            raise DataDirError(utt2spk_path, "utterance has an embedding but no speaker", key=utt)
        speakers.append(speaker)
    # np.unique sorts str by code point, which is UTF-8 byte order, i.e. LC_ALL=C order.
    spk_keys, speaker_index = np.unique(np.asarray(speakers), return_inverse=True)
    order = np.argsort(speaker_index, kind="stable")
    starts = np.flatnonzero(np.r_[True, speaker_index[order][1:] != speaker_index[order][:-1]])
    sums = np.add.reduceat(matrix[order].astype(np.float64), starts, axis=0)
    counts = np.diff(np.r_[starts, len(order)])
    means = (sums / counts[:, None]).astype(dtype)
    return [str(key) for key in spk_keys], means


def without_embedding(utt2spk: Mapping[str, str], keys: Sequence[str]) -> dict[str, str]:
    """The utterances of ``utt2spk`` that ``keys`` (an embedding table's) lacks, each with reason ``no_embedding``."""
    embedded = set(keys)
    return {utt: "no_embedding" for utt in utt2spk if utt not in embedded}


def compute_mean_files(
    scp: PathLike,
    mean_out: PathLike | None = None,
    utt2spk_path: PathLike | None = None,
    spk_out_dir: PathLike | None = None,
) -> None:
    """The ``compute_mean`` stage: global mean vector and/or per-speaker mean embeddings.

    Args:
        scp: Utterance embeddings (``xvector.scp``).
        mean_out: Where to write the global mean as a Kaldi vector (``mean.vec``), or None.
        utt2spk_path: utt2spk of the utterances, required with ``spk_out_dir``.
        spk_out_dir: Directory for ``spk_xvector.ark/.scp``, or None. Utterances of utt2spk with
            no embedding are skipped with a warning, as Kaldi's ``ivector-mean`` does, and listed
            in ``spk_out_dir/dropped.tsv`` (:mod:`speakernet.utils.dropped`; written even when empty).

    Raises:
        ValueError: if neither output is requested, or ``spk_out_dir`` comes without utt2spk.
        DataDirError: on unreadable inputs or an embedded utterance missing from utt2spk.
    """
    if mean_out is None and spk_out_dir is None:
        raise ValueError("nothing to do: give a global mean output and/or a speaker output directory")
    if spk_out_dir is not None and utt2spk_path is None:
        raise ValueError("per-speaker means need an utt2spk file")
    keys, matrix = load_embeddings(scp)
    if mean_out is not None:
        write_vector(mean_out, global_mean(matrix))
        logger.info("Wrote the mean of %d embeddings to %s", len(keys), mean_out)
    if spk_out_dir is not None:
        utt2spk = read_scp(utt2spk_path)
        spk_keys, means = speaker_means(keys, matrix, utt2spk, utt2spk_path)
        spk_out_dir = Path(spk_out_dir)
        spk_out_dir.mkdir(parents=True, exist_ok=True)
        write_embeddings(spk_out_dir / "spk_xvector.ark", spk_out_dir / "spk_xvector.scp", spk_keys, means)
        dropped = without_embedding(utt2spk, keys)
        log_dropped(logger, f"{utt2spk_path}: speaker means", dropped, len(utt2spk),
                    write_dropped(spk_out_dir / DROPPED_NAME, dropped),
                    f"extract their embeddings into {scp} to keep them")
        logger.info("Wrote mean embeddings of %d speakers to %s", len(spk_keys), spk_out_dir)
