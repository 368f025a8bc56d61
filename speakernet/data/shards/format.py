"""One shard on disk: a tar of each utterance's audio and speaker, its index, and a data dir's ``shards.list``.

Shard ``S/shard-000012.tar`` holds, per utterance in index order, ``<utt>.flac`` (or ``.wav``) and
``<utt>.spk`` (the speaker, UTF-8). Members carry no time, owner or mode of their own, so the same
audio always gives the same bytes. Audio that 16-bit PCM holds exactly (what 16-bit sources decode
to) is FLAC (or 16-bit WAV with ``audio_format="wav"``); other audio (float files, resampled audio)
is 32-bit float WAV: either way the decoded samples are those :func:`speakernet.data.audio.load_audio`
gives, bit for bit.

``S/shard-000012.json`` is its index: the utterances in tar order with speaker and length in samples,
the sample rate, the tar's size in bytes (a truncated copy is caught before training opens it) and a
fingerprint of the inputs (so an unchanged shard is not rewritten). ``D/shards.list`` lists the
shards of data dir ``D``, one path a line, like ``feats.scp`` lists its archives.
"""

from __future__ import annotations

import io
import json
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterator

import numpy as np
import soundfile

from speakernet.utils.fileio import PathLike, atomic_write

SHARD_LIST_NAME = "shards.list"
FORMAT_VERSION = 1
AUDIO_FORMATS = ("flac", "wav")
_INT16_SCALE = 32768.0


class ShardError(ValueError):
    """A missing, corrupt or stale shard, index or ``shards.list`` (the message names the file)."""


def shard_path(shard_dir: PathLike, number: int) -> Path:
    """``S/shard-000012.tar``: shard ``number`` (0-based) of a shard dir."""
    return Path(shard_dir) / f"shard-{number:06d}.tar"


def index_path(tar_path: PathLike) -> Path:
    """The index beside a shard: ``shard-000012.json``."""
    return Path(tar_path).with_suffix(".json")


def encode_audio(waveform: np.ndarray, sample_rate: int, audio_format: str = "flac") -> tuple[bytes, str]:
    """The bytes of a mono float32 waveform as a file that decodes to exactly the same samples.

    Args:
        waveform: float32 samples in [-1, 1].
        sample_rate: Their rate in Hz.
        audio_format: ``flac`` or ``wav``, for audio that 16-bit PCM holds exactly.

    Returns:
        ``(bytes, extension)``: ``flac`` / ``wav`` (16-bit) when the samples are 16-bit values,
        else a 32-bit float ``wav``.
    """
    scaled = waveform.astype(np.float64) * _INT16_SCALE
    quantised = np.round(scaled)
    buffer = io.BytesIO()
    if np.array_equal(quantised, scaled) and quantised.min(initial=0) >= -32768 and quantised.max(initial=0) <= 32767:
        kind = "FLAC" if audio_format == "flac" else "WAV"
        soundfile.write(buffer, quantised.astype(np.int16), sample_rate, format=kind, subtype="PCM_16")
        return buffer.getvalue(), audio_format
    soundfile.write(buffer, waveform.astype(np.float32), sample_rate, format="WAV", subtype="FLOAT")
    return buffer.getvalue(), "wav"


def decode_audio(data: bytes) -> tuple[np.ndarray, int]:
    """float32 samples and rate of an :func:`encode_audio` file's bytes.

    Raises:
        ValueError: when libsndfile cannot decode them.
    """
    try:
        samples, rate = soundfile.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except (RuntimeError, soundfile.LibsndfileError, TypeError) as error:
        raise ValueError(f"cannot decode audio: {error}") from None
    return np.ascontiguousarray(samples[:, 0]), int(rate)


class AudioBytes:
    """Reads sample ranges of an :func:`encode_audio` file's bytes without decoding the rest (seeks, as
    ``load_audio_range`` does in a file). Use as a context manager.

    Raises:
        ValueError: when libsndfile cannot open or decode them.
    """

    def __init__(self, data: bytes):
        try:
            self._sound = soundfile.SoundFile(io.BytesIO(data))
        except (RuntimeError, soundfile.LibsndfileError, TypeError) as error:
            raise ValueError(f"cannot decode audio: {error}") from None

    def __enter__(self) -> "AudioBytes":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._sound.close()

    def read(self, start: int, count: int) -> np.ndarray:
        """float32 samples ``[start, start + count)`` (fewer at the end)."""
        try:
            self._sound.seek(start)
            return np.ascontiguousarray(self._sound.read(count, dtype="float32", always_2d=True)[:, 0])
        except (RuntimeError, soundfile.LibsndfileError, TypeError) as error:
            raise ValueError(f"cannot decode audio: {error}") from None


def _member(name: str, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode, info.uid, info.gid, info.uname, info.gname = size, 0, 0o644, 0, 0, "", ""
    return info


class ShardWriter:
    """Writes one shard: the tar (atomically), then its index.

    Use as a context manager; an exception inside it leaves no tar and no index behind.

    Args:
        path: The shard's tar path.
        sample_rate: Rate of every waveform added.
        audio_format: ``flac`` or ``wav`` (see :func:`encode_audio`).
        fingerprint: What the shard was made from, kept in its index (see :func:`read_index`).
    """

    def __init__(self, path: PathLike, sample_rate: int, audio_format: str, fingerprint: str):
        if audio_format not in AUDIO_FORMATS:
            raise ValueError(f"unknown shard audio format '{audio_format}'; choose one of {', '.join(AUDIO_FORMATS)}")
        self.path = Path(path)
        self.sample_rate, self.audio_format, self.fingerprint = sample_rate, audio_format, fingerprint
        self.entries: list[list] = []
        self.float_utts = 0  # stored as 32-bit float (not 16-bit exact)

    def __enter__(self) -> "ShardWriter":
        index_path(self.path).unlink(missing_ok=True)  # the tar is replaced: the old index no longer describes it
        self._output = atomic_write(self.path, "wb")
        handle: BinaryIO = self._output.__enter__()
        self._tar = tarfile.open(fileobj=handle, mode="w", format=tarfile.GNU_FORMAT)
        return self

    def add(self, utt: str, speaker: str, waveform: np.ndarray) -> None:
        """Appends an utterance's audio and speaker."""
        data, ext = encode_audio(waveform, self.sample_rate, self.audio_format)
        self.float_utts += ext == "wav" and self.audio_format == "flac"
        self._tar.addfile(_member(f"{utt}.{ext}", len(data)), io.BytesIO(data))
        label = speaker.encode("utf-8")
        self._tar.addfile(_member(f"{utt}.spk", len(label)), io.BytesIO(label))
        self.entries.append([utt, speaker, int(waveform.shape[0]), ext])

    def __exit__(self, kind, value, traceback) -> None:
        self._tar.close()
        self._output.__exit__(kind, value, traceback)
        if kind is None:
            with atomic_write(index_path(self.path)) as handle:
                json.dump({"version": FORMAT_VERSION, "sample_rate": self.sample_rate,
                           "tar_bytes": self.path.stat().st_size, "fingerprint": self.fingerprint,
                           "utts": self.entries}, handle)


@dataclass
class ShardIndex:
    """What a shard holds, from its index.

    Attributes:
        path: The tar.
        sample_rate: Rate of its audio in Hz.
        tar_bytes: The tar's size when it was written.
        fingerprint: The inputs it was made from.
        utts, speakers, num_samples, exts: Per utterance, in tar order.
    """

    path: Path
    sample_rate: int
    tar_bytes: int
    fingerprint: str
    utts: list[str]
    speakers: list[str]
    num_samples: list[int]
    exts: list[str]


def read_index(tar_path: PathLike) -> ShardIndex:
    """Reads a shard's index and checks that the tar exists and has the size the index records.

    Args:
        tar_path: The shard.

    Raises:
        ShardError: naming the file, on a missing or malformed index or a missing or changed tar.
    """
    tar_path = Path(tar_path)
    path = index_path(tar_path)
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        if record["version"] != FORMAT_VERSION:
            raise ShardError(f"{path}: shard format version {record['version']}, this speakernet reads "
                             f"{FORMAT_VERSION}; make the shards again (python -m speakernet.bin.make_shards)")
        utts, speakers, num_samples, exts = (list(column) for column in zip(*record["utts"])) if record["utts"] \
            else ([], [], [], [])
        index = ShardIndex(tar_path, int(record["sample_rate"]), int(record["tar_bytes"]), str(record["fingerprint"]),
                           [str(u) for u in utts], [str(s) for s in speakers], [int(n) for n in num_samples],
                           [str(e) for e in exts])
    except FileNotFoundError:
        raise ShardError(f"{path}: the index of shard {tar_path} does not exist; make the shards again "
                         "(python -m speakernet.bin.make_shards)") from None
    except (OSError, ValueError, KeyError, TypeError) as error:
        if isinstance(error, ShardError):
            raise
        raise ShardError(f"{path}: not a shard index ({type(error).__name__}: {error}); make the shards "
                         "again (python -m speakernet.bin.make_shards)") from None
    try:
        size = tar_path.stat().st_size
    except FileNotFoundError:
        raise ShardError(f"shard {tar_path} does not exist (its index {path} does)") from None
    if size != index.tar_bytes:
        raise ShardError(f"shard {tar_path} is corrupt or was changed: {size} bytes, its index says "
                         f"{index.tar_bytes}; make the shards again (python -m speakernet.bin.make_shards)")
    return index


def iter_shard(index: ShardIndex, wanted: set[int] | None = None) -> Iterator[tuple[int, bytes, str]]:
    """Reads a shard front to back: ``(entry number, audio bytes, speaker)`` of the wanted entries.

    The other entries' audio is skipped over (seeked past), not read.

    Args:
        index: The shard's index.
        wanted: Entry numbers (positions in the index) to read; None: all.

    Raises:
        ShardError: naming the shard and the member, when the tar does not match its index or is cut short.
    """
    last = max(wanted) if wanted else (len(index.utts) - 1 if wanted is None else -1)
    if last < 0:
        return
    try:
        with tarfile.open(index.path, mode="r:") as tar:
            members = iter(tar)
            for entry in range(last + 1):
                utt, ext = index.utts[entry], index.exts[entry]
                audio, speaker = next(members, None), next(members, None)
                if audio is None or speaker is None or audio.name != f"{utt}.{ext}" or speaker.name != f"{utt}.spk":
                    found = "the end of the tar" if audio is None else f"member '{audio.name}'"
                    raise ShardError(f"shard {index.path}: entry {entry} should be utterance '{utt}' ({utt}.{ext}), "
                                     f"found {found}; make the shards again (python -m speakernet.bin.make_shards)")
                if wanted is not None and entry not in wanted:
                    continue
                data = tar.extractfile(audio).read()
                label = tar.extractfile(speaker).read().decode("utf-8")
                if len(data) != audio.size:
                    raise tarfile.ReadError(f"member {audio.name} cut short")
                yield entry, data, label
    except (tarfile.TarError, OSError, EOFError) as error:
        raise ShardError(f"shard {index.path}: unreadable tar ({error}); make the shards again "
                         "(python -m speakernet.bin.make_shards)") from None


def write_shard_list(data_dir: PathLike, paths: list[Path]) -> Path:
    """Writes ``D/shards.list`` atomically, one shard path a line."""
    path = Path(data_dir) / SHARD_LIST_NAME
    with atomic_write(path) as handle:
        handle.writelines(f"{shard}\n" for shard in paths)
    return path


def read_shard_list(data_dir: PathLike) -> list[tuple[int, Path]]:
    """The shard paths of ``D/shards.list`` with their line numbers (relative paths are taken from the data dir).

    Raises:
        ShardError: on a missing or empty list, naming it and how to make it.
    """
    path = Path(data_dir) / SHARD_LIST_NAME
    if not path.is_file():
        raise ShardError(f"{path} does not exist: data.source shards reads it; make it with python -m "
                         f"speakernet.bin.make_shards --data-dir {data_dir} --shard-dir DIR")
    shards = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        shard = Path(line.strip())
        shards.append((number, shard if shard.is_absolute() else Path(data_dir) / shard))
    if not shards:
        raise ShardError(f"{path}: no shards listed")
    return shards
