"""Audio loading for Kaldi data directories.

A ``wav.scp`` value is either a path to an audio file in any format libsndfile reads
(wav, flac, ogg, ...) or a Kaldi pipe ``<command> |`` whose standard output is an audio
file (usually wav). Waveforms come back as float32 in [-1, 1] (integer formats are divided
by their full scale; float files are returned as stored), mono, at the requested rate.

Multi-channel audio: like Kaldi's ``compute-fbank-feats --channel=-1`` (which warns and
defaults to channel 0), the **first channel** is used, not the mean of the channels.
"""

from __future__ import annotations

import io
import logging
import math
import os
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
import soundfile

from speakernet.data.kaldi_dir import DataDirError, read_scp, read_segments
from speakernet.utils.fileio import PathLike

logger = logging.getLogger(__name__)

# Kaldi's extract-segments --max-overshoot default: a segment may end this far (seconds) past
# the end of its recording and is then truncated; further than that is an error.
MAX_SEGMENT_OVERSHOOT_S = 0.5

_STDERR_TAIL_CHARS = 2000
_WAV_HEAD_BYTES = 65536  # where the chunks before a WAV file's audio (fmt, LIST, ...) must end


class AudioError(RuntimeError):
    """Audio that cannot be read or is unusable (empty, NaN/Inf, failing command).

    Attributes:
        spec: The ``wav.scp`` value (path or ``cmd |``) that was being read.
        utt: The utterance id, when known.
    """

    def __init__(self, spec: str, message: str, utt: str | None = None):
        self.spec = spec
        self.utt = utt
        self.reason = message
        where = f"utterance '{utt}' (wav.scp value '{spec}')" if utt is not None else f"audio '{spec}'"
        super().__init__(f"{where}: {message}")

    def for_utt(self, utt: str) -> "AudioError":
        """Returns a copy of this error attributed to utterance ``utt``."""
        return AudioError(self.spec, self.reason, utt=utt)


def resample(waveform: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """Resamples a 1-D waveform with a polyphase filter (``scipy.signal.resample_poly``).

    Args:
        waveform: 1-D samples.
        orig_sr: Rate of ``waveform`` in Hz.
        target_sr: Wanted rate in Hz.

    Returns:
        float32 samples at ``target_sr`` (the input itself when the rates are equal).

    Raises:
        ValueError: on a non-positive rate.
    """
    if orig_sr <= 0 or target_sr <= 0:
        raise ValueError(f"sample rates must be positive, got {orig_sr} -> {target_sr}")
    if orig_sr == target_sr:
        return waveform.astype(np.float32, copy=False)
    from scipy.signal import resample_poly

    divisor = math.gcd(int(orig_sr), int(target_sr))
    up, down = int(target_sr) // divisor, int(orig_sr) // divisor
    return resample_poly(waveform.astype(np.float64), up, down).astype(np.float32)


def _run_pipe(spec: str) -> bytes:
    command = spec.rstrip()[:-1].strip()
    if not command:
        raise AudioError(spec, "empty command before '|'")
    try:
        result = subprocess.run(command, shell=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False)
    except OSError as error:
        raise AudioError(spec, f"could not start command '{command}': {error}") from error
    if result.returncode != 0:
        tail = result.stderr.decode("utf-8", errors="replace")[-_STDERR_TAIL_CHARS:].strip()
        raise AudioError(spec, f"command '{command}' exited with code {result.returncode}; stderr: {tail or '(empty)'}")
    return result.stdout


# A WAV header that was written before the length was known (ffmpeg and sox writing to a pipe)
# holds 0 or about 2^32 as the data size: no length to check against.
_UNKNOWN_WAV_SIZES = (0, 0xFFFFFFFF)
_WAV_SIZE_UNKNOWN_FROM = 0x7FFFF000


def _check_wav_length(head: bytes, total: int, spec: str) -> None:
    """Raises if a RIFF/WAVE file holds less audio than its header declares.

    libsndfile reads a truncated WAV (a copy cut short, a pipe that stopped early) without a
    word, returning the samples that are there: a 3.7 s recording would become 0.6 s of
    training data. The ``data`` chunk's declared size against the bytes present says it.

    Args:
        head: The file's first bytes (enough to hold the chunks before ``data``).
        total: The file's length in bytes.
        spec: The ``wav.scp`` value, for the message.

    Raises:
        AudioError: on a truncated file.
    """
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return
    offset, block_align = 12, 0
    while offset + 8 <= len(head):
        chunk, size = head[offset:offset + 4], int.from_bytes(head[offset + 4:offset + 8], "little")
        if chunk == b"fmt " and offset + 22 <= len(head):
            block_align = int.from_bytes(head[offset + 20:offset + 22], "little")
        if chunk == b"data":
            if size in _UNKNOWN_WAV_SIZES or size >= _WAV_SIZE_UNKNOWN_FROM:
                return
            present = total - (offset + 8)
            if present < size:
                frames = (f" ({size // block_align} frames declared, {max(present, 0) // block_align} present)"
                          if block_align else "")
                raise AudioError(spec, f"truncated WAV: the header declares {size} bytes of audio, the file holds "
                                 f"{max(present, 0)}{frames}")
            return
        offset += 8 + size + (size & 1)  # chunks are padded to an even size


def ffmpeg_pipe(path: PathLike, sample_rate: int | None = 16000) -> str:
    """Returns a ``wav.scp`` pipe decoding any ffmpeg-readable file to mono wav at ``sample_rate``.

    Args:
        path: Audio file (e.g. VoxCeleb2's ``.m4a``).
        sample_rate: Output rate in Hz (None: the file's own).

    Returns:
        ``ffmpeg -nostdin -v error -i <quoted abs path> -ac 1 -ar <rate> -f wav - |``.
    """
    quoted = shlex.quote(os.path.abspath(os.fspath(path)))
    rate = f" -ar {sample_rate}" if sample_rate is not None else ""
    return f"ffmpeg -nostdin -v error -i {quoted} -ac 1{rate} -f wav - |"


def ffmpeg_concat_pipe(paths: Sequence[PathLike], sample_rate: int | None = 16000) -> str:
    """Returns a ``wav.scp`` pipe that plays audio files one after the other as one mono wav.

    The samples are exactly the parts' in order (ffmpeg's ``concat`` filter; 16-bit files stay
    bit-exact), so a merged utterance needs no copy of its audio on disk.

    Args:
        paths: The parts, in playing order (at least one).
        sample_rate: Output rate in Hz (None: the parts' own).

    Returns:
        ``ffmpeg -nostdin -v error -i <a> -i <b> ... -filter_complex concat=n=<N>:v=0:a=1 ... -f wav - |``.
    """
    if not paths:
        raise ValueError("ffmpeg_concat_pipe needs at least one file")
    inputs = " ".join(f"-i {shlex.quote(os.path.abspath(os.fspath(path)))}" for path in paths)
    rate = f" -ar {sample_rate}" if sample_rate is not None else ""
    return f"ffmpeg -nostdin -v error {inputs} -filter_complex concat=n={len(paths)}:v=0:a=1 -ac 1{rate} -f wav - |"


#: File types libsndfile reads itself: a failure to decode one is the file's fault, not a missing codec.
_SOUNDFILE_SUFFIXES = frozenset({".wav", ".flac", ".ogg", ".oga", ".mp3", ".aiff", ".aif", ".au", ".caf", ".w64"})


def load_audio(spec: str, sample_rate: int | None = 16000) -> tuple[np.ndarray, int]:
    """Reads one ``wav.scp`` value into a mono float32 waveform.

    Args:
        spec: A path to an audio file, or a Kaldi pipe ``<command> |`` (run with the shell;
            its standard output must be an audio file).
        sample_rate: Rate to return, in Hz; the audio is resampled with
            ``scipy.signal.resample_poly`` when its rate differs. ``None`` keeps the file's rate.

    Returns:
        ``(waveform, rate)``: float32 1-D samples (first channel of multi-channel audio) and
        their rate in Hz.

    Raises:
        AudioError: the file is missing or unreadable, the command fails (the message holds
            the command and the tail of its stderr), a WAV holds less audio than its header
            declares (a truncated copy, a pipe that stopped early), or the audio is empty or
            has NaN/Inf.
    """
    spec = spec.strip()
    if spec.endswith("|"):
        output = _run_pipe(spec)
        _check_wav_length(output[:_WAV_HEAD_BYTES], len(output), spec)
        source: object = io.BytesIO(output)
    else:
        if not Path(spec).is_file():
            problem = "is a directory, not an audio file" if Path(spec).is_dir() else "file does not exist"
            raise AudioError(spec, problem)
        with open(spec, "rb") as handle:
            _check_wav_length(handle.read(_WAV_HEAD_BYTES), Path(spec).stat().st_size, spec)
        source = spec
    try:
        data, file_rate = soundfile.read(source, dtype="float32", always_2d=True)
    except (RuntimeError, soundfile.LibsndfileError, ValueError, TypeError) as error:
        if source is not spec or Path(spec).suffix.lower() in _SOUNDFILE_SUFFIXES or shutil.which("ffmpeg") is None:
            raise AudioError(spec, f"cannot decode audio: {error}"
                             + ("" if source is not spec or shutil.which("ffmpeg") else
                                " (for m4a and other formats libsndfile lacks, install ffmpeg)")) from error
        # A format libsndfile does not read (m4a, aac, ...): decoded by ffmpeg, as the recipes' pipes do.
        return load_audio(ffmpeg_pipe(spec, sample_rate), sample_rate)
    if data.shape[0] == 0:
        raise AudioError(spec, "audio is empty (0 samples)")
    waveform = np.ascontiguousarray(data[:, 0])
    if not np.isfinite(waveform).all():
        bad = int(np.count_nonzero(~np.isfinite(waveform)))
        raise AudioError(spec, f"audio has {bad} NaN/Inf samples")
    if sample_rate is not None and file_rate != sample_rate:
        waveform = resample(waveform, int(file_rate), int(sample_rate))
        file_rate = sample_rate
    return waveform, int(file_rate)


def cut_segment(waveform: np.ndarray, rate: int, start: float, end: float, spec: str) -> np.ndarray:
    duration = waveform.shape[0] / rate
    first = int(round(start * rate))
    if end == -1:
        last = waveform.shape[0]
    else:
        if end > duration + MAX_SEGMENT_OVERSHOOT_S:
            raise AudioError(spec, f"segment ends at {end:.3f} s, past the end of the recording ({duration:.3f} s)")
        last = min(int(round(end * rate)), waveform.shape[0])
    if last <= first:
        raise AudioError(spec, f"segment {start:.3f}-{end:.3f} s is empty (recording is {duration:.3f} s)")
    return waveform[first:last]


def iter_data_dir_audio(
    data_dir: PathLike,
    utts: Sequence[str] | None = None,
    sample_rate: int | None = 16000,
    on_error: Callable[[AudioError], None] | None = None,
) -> Iterator[tuple[str, np.ndarray, int]]:
    """Yields the audio of every utterance of a data directory.

    With a ``segments`` file, ``wav.scp`` is keyed by recording; each recording is read once
    for all of its segments, then cut by the segment times (at the returned rate).

    Args:
        data_dir: Kaldi data directory with ``wav.scp`` (and optional ``segments``).
        utts: Utterances to read, in this order (segments are grouped by recording, in the
            order of each recording's first utterance). ``None`` reads them all.
        sample_rate: Rate to resample to, or ``None`` to keep each file's rate.
        on_error: Called with the :class:`AudioError` (which names the utterance and the
            ``wav.scp`` value) of each unreadable, empty or non-finite utterance, and the
            iteration goes on. ``None`` raises the first such error instead.

    Yields:
        ``(utt, waveform, rate)`` with float32 1-D waveforms.

    Raises:
        DataDirError: on a missing ``wav.scp``, a malformed ``segments`` file, a segment whose
            recording is not in ``wav.scp`` or a requested utterance that does not exist.
        AudioError: on bad audio when ``on_error`` is ``None``.
    """
    data_dir = Path(data_dir)
    wav_scp_path = data_dir / "wav.scp"
    wav_scp = read_scp(wav_scp_path)
    segments_path = data_dir / "segments"

    def fail(error: AudioError) -> None:
        if on_error is None:
            raise error
        on_error(error)

    if not segments_path.exists():
        for utt in wav_scp if utts is None else utts:
            if utt not in wav_scp:
                raise DataDirError(wav_scp_path, "utterance not found", key=utt)
            try:
                waveform, rate = load_audio(wav_scp[utt], sample_rate)
            except AudioError as error:
                fail(error.for_utt(utt))
                continue
            yield utt, waveform, rate
        return

    segments = read_segments(segments_path)
    wanted = list(segments) if utts is None else list(utts)
    by_recording: dict[str, list[str]] = {}
    for utt in wanted:
        if utt not in segments:
            raise DataDirError(segments_path, "utterance not found", key=utt)
        recording = segments[utt][0]
        if recording not in wav_scp:
            raise DataDirError(segments_path, f"recording '{recording}' is not in {wav_scp_path}", key=utt)
        by_recording.setdefault(recording, []).append(utt)
    for recording, rec_utts in by_recording.items():
        spec = wav_scp[recording]
        try:
            waveform, rate = load_audio(spec, sample_rate)
        except AudioError as error:
            for utt in rec_utts:
                fail(error.for_utt(utt))
            continue
        for utt in rec_utts:
            _, start, end = segments[utt]
            try:
                piece = cut_segment(waveform, rate, start, end, spec)
            except AudioError as error:
                fail(error.for_utt(utt))
                continue
            yield utt, piece, rate


def audio_header(path: str) -> tuple[int, int] | None:
    """``(frames, sample rate)`` from an audio file's header (nothing decoded), or None when there is no
    readable header or it declares no audio."""
    try:
        info = soundfile.info(path)
    except (RuntimeError, soundfile.LibsndfileError, ValueError, TypeError):
        return None
    if info.frames <= 0 or info.samplerate <= 0:
        return None
    return int(info.frames), int(info.samplerate)


def audio_num_samples(spec: str, sample_rate: int) -> int:
    """Length of one ``wav.scp`` file in samples at ``sample_rate``, from its header (nothing decoded).

    Raises:
        AudioError: for a pipe (no header to read without running it) or an unreadable file.
    """
    spec = spec.strip()
    if spec.endswith("|"):
        raise AudioError(spec, "a pipe has no header to take the length from; add utt2dur to the data dir")
    header = audio_header(spec)
    if header is None:
        raise AudioError(spec, "cannot read the audio header, or it declares no audio")
    frames, rate = header
    return int(math.ceil(frames * sample_rate / rate)) if rate != sample_rate else frames


def load_audio_range(spec: str, start: int, num_samples: int, sample_rate: int = 16000) -> np.ndarray:
    """Samples ``[start, start + num_samples)`` (at ``sample_rate``) of one ``wav.scp`` value.

    A file at ``sample_rate`` is read from ``start`` to ``start + num_samples`` only
    (``soundfile.read(start=, stop=)``); a pipe or a file at another rate is read whole (and
    resampled) first. Fewer samples come back when the audio ends before the range does.

    Raises:
        AudioError: as :func:`load_audio`, and for a range that starts past the end.
    """
    spec = spec.strip()
    if not spec.endswith("|"):
        try:
            file_rate = soundfile.info(spec).samplerate
        except (RuntimeError, soundfile.LibsndfileError, ValueError, TypeError) as error:
            raise AudioError(spec, f"cannot read the audio header: {error}") from error
        if file_rate == sample_rate:
            try:
                data, _ = soundfile.read(spec, start=start, stop=start + num_samples, dtype="float32",
                                         always_2d=True)
            except (RuntimeError, soundfile.LibsndfileError, ValueError, TypeError) as error:
                raise AudioError(spec, f"cannot decode audio: {error}") from error
            waveform = np.ascontiguousarray(data[:, 0])
            if waveform.shape[0] == 0:
                raise AudioError(spec, f"no samples from {start} on (sample {start} is past the end)")
            if not np.isfinite(waveform).all():
                raise AudioError(spec, f"audio has {int(np.count_nonzero(~np.isfinite(waveform)))} NaN/Inf samples")
            return waveform
    waveform, _ = load_audio(spec, sample_rate)
    if start >= waveform.shape[0]:
        raise AudioError(spec, f"no samples from {start} on (the audio has {waveform.shape[0]})")
    return waveform[start:start + num_samples]
