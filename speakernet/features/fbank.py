"""Kaldi-compatible log-mel filterbank features, computed with kaldi-native-fbank.

The waveform (float in [-1, 1]) is multiplied by 32768 before extraction, so the features,
the log-energy and ``dither`` are on Kaldi's int16 scale (Kaldi reads wav files as int16
values). Defaults follow the project's front-end contract: 80 bins, 25/10 ms, povey window,
pre-emphasis 0.97, DC removal, 20 Hz to Nyquist, ``snip_edges``, and no dither at extraction.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

# Kaldi reads wav samples as int16 values; a [-1, 1] waveform is scaled back to that range.
INT16_SCALE = 32768.0

WINDOW_TYPES = ("povey", "hamming", "hanning", "rectangular", "sine", "blackman")


def check_frame_options(config: object) -> None:
    """Checks the options every filterbank front-end has: mel bins, frame length and shift, sample rate.

    Raises:
        ValueError: naming the option and its value.
    """
    if config.num_mel_bins < 3:
        raise ValueError(f"num_mel_bins must be >= 3, got {config.num_mel_bins}")
    if config.frame_length_ms <= 0 or config.frame_shift_ms <= 0:
        raise ValueError(f"frame length/shift must be positive, got {config.frame_length_ms}/{config.frame_shift_ms}")
    if config.sample_rate <= 0:
        raise ValueError(f"sample_rate must be positive, got {config.sample_rate}")


@dataclass(frozen=True)
class FbankConfig:
    """Options of the filterbank front-end (Kaldi ``compute-fbank-feats`` names in brackets).

    Attributes:
        num_mel_bins: Number of triangular mel bins (``--num-mel-bins``).
        frame_length_ms: Frame length in milliseconds (``--frame-length``).
        frame_shift_ms: Frame shift in milliseconds (``--frame-shift``).
        sample_rate: Waveform rate in Hz (``--sample-frequency``).
        dither: Dither amount on the int16 scale; 0 disables it (``--dither``).
        window_type: One of ``WINDOW_TYPES`` (``--window-type``).
        low_freq: Low cut-off of the mel bins in Hz (``--low-freq``).
        high_freq: High cut-off in Hz; ``<= 0`` means Nyquist plus this value (``--high-freq``).
        snip_edges: Only frames that fit entirely in the signal (``--snip-edges``); then
            ``frames = 1 + (samples - frame_length) // frame_shift``.
        preemphasis: Pre-emphasis coefficient (``--preemphasis-coefficient``).
        remove_dc_offset: Subtract each frame's mean before windowing (``--remove-dc-offset``).
    """

    kind: ClassVar[str] = "kaldi"

    num_mel_bins: int = 80
    frame_length_ms: float = 25.0
    frame_shift_ms: float = 10.0
    sample_rate: int = 16000
    dither: float = 0.0
    window_type: str = "povey"
    low_freq: float = 20.0
    high_freq: float = 0.0
    snip_edges: bool = True
    preemphasis: float = 0.97
    remove_dc_offset: bool = True

    def __post_init__(self) -> None:
        check_frame_options(self)
        if self.dither < 0:
            raise ValueError(f"dither must be >= 0, got {self.dither}")
        if self.window_type not in WINDOW_TYPES:
            raise ValueError(f"window_type must be one of {WINDOW_TYPES}, got '{self.window_type}'")
        nyquist = self.sample_rate / 2
        high = self.high_freq if self.high_freq > 0 else nyquist + self.high_freq
        if not 0 <= self.low_freq < high <= nyquist:
            raise ValueError(f"need 0 <= low_freq < high_freq <= Nyquist ({nyquist} Hz), "
                             f"got low_freq={self.low_freq}, high_freq={self.high_freq}")

    @property
    def frame_length(self) -> int:
        """Frame length in samples."""
        return int(self.sample_rate * self.frame_length_ms / 1000)

    @property
    def frame_shift(self) -> int:
        """Frame shift in samples."""
        return int(self.sample_rate * self.frame_shift_ms / 1000)

    def num_frames(self, num_samples: int) -> int:
        """Number of frames Kaldi produces for ``num_samples`` samples."""
        if self.snip_edges:
            if num_samples < self.frame_length:
                return 0
            return 1 + (num_samples - self.frame_length) // self.frame_shift
        return (num_samples + self.frame_shift // 2) // self.frame_shift

    def to_dict(self) -> dict:
        """The options as a plain dict (for saving next to the features)."""
        return dataclasses.asdict(self)

    def to_knf_options(self, use_energy: bool = False):
        """Builds the equivalent ``kaldi_native_fbank.FbankOptions``.

        Args:
            use_energy: Add the raw log-energy as column 0 (Kaldi ``--use-energy``).

        Returns:
            The kaldi-native-fbank options.
        """
        import kaldi_native_fbank as knf

        opts = knf.FbankOptions()
        frame = opts.frame_opts
        frame.samp_freq = float(self.sample_rate)
        frame.frame_length_ms = float(self.frame_length_ms)
        frame.frame_shift_ms = float(self.frame_shift_ms)
        frame.dither = float(self.dither)
        frame.window_type = self.window_type
        frame.snip_edges = bool(self.snip_edges)
        frame.preemph_coeff = float(self.preemphasis)
        frame.remove_dc_offset = bool(self.remove_dc_offset)
        frame.round_to_power_of_two = True
        mel = opts.mel_opts
        mel.num_bins = int(self.num_mel_bins)
        mel.low_freq = float(self.low_freq)
        mel.high_freq = float(self.high_freq)
        mel.is_librosa = False  # Kaldi's mel banks, not librosa's
        mel.htk_mode = False
        opts.use_energy = use_energy
        opts.raw_energy = True  # Kaldi default: energy before pre-emphasis and windowing
        opts.energy_floor = 0.0  # Kaldi default: only floored at float epsilon before the log
        opts.htk_compat = False  # keeps the energy in column 0
        opts.use_log_fbank = True
        opts.use_power = True
        return opts


def check_waveform(waveform: np.ndarray) -> np.ndarray:
    """Returns ``waveform`` as an array after checking it is 1-D float with finite samples (any front-end's input).

    Raises:
        ValueError: saying what is wrong with it.
    """
    waveform = np.asarray(waveform)
    if waveform.ndim != 1:
        raise ValueError(f"waveform must be 1-D (mono samples), got shape {waveform.shape}")
    if not np.issubdtype(waveform.dtype, np.floating):
        raise ValueError(f"waveform must be float in [-1, 1], got dtype {waveform.dtype}")
    return waveform


#: Seconds of audio handed to the streaming extractor at a time. The int16-scale copy and the
#: extractor's frame buffer stay this small whatever the recording's length (a one-hour file
#: would otherwise hold two extra copies of its waveform and one of its features); the features
#: are bit-identical to one call on the whole waveform.
BLOCK_SECONDS = 10.0


def _run_knf(waveform: np.ndarray, config: FbankConfig, use_energy: bool,
             block_samples: int | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """Feeds the waveform to kaldi-native-fbank's streaming extractor block by block.

    Args:
        waveform: float 1-D samples in [-1, 1].
        config: Front-end options.
        use_energy: Also return the raw log-energy (the extractor's column 0).
        block_samples: Samples per block (default :data:`BLOCK_SECONDS` of audio).

    Returns:
        ``(fbank, log_energy)``: float32 ``[frames, num_mel_bins]`` and ``[frames]`` (None
        without ``use_energy``).

    Raises:
        ValueError: on a waveform that is not 1-D float or has NaN/Inf samples.
    """
    import kaldi_native_fbank as knf

    waveform = check_waveform(waveform)
    block_samples = block_samples or max(1, int(config.sample_rate * BLOCK_SECONDS))
    extractor = knf.OnlineFbank(config.to_knf_options(use_energy=use_energy))
    num_frames = config.num_frames(len(waveform))
    first_mel = 1 if use_energy else 0
    fbank = np.empty((num_frames, config.num_mel_bins), dtype=np.float32)
    energy = np.empty(num_frames, dtype=np.float32) if use_energy else None
    done = 0

    def take_ready() -> None:
        nonlocal done
        ready = extractor.num_frames_ready
        if ready > num_frames:
            raise RuntimeError(f"kaldi-native-fbank made more frames ({ready}) than expected ({num_frames})")
        if ready == done:
            return
        rows = np.empty((ready - done, config.num_mel_bins + first_mel), dtype=np.float32)
        for index in range(done, ready):  # get_frame is a view into the extractor's buffer: copy it out
            rows[index - done] = extractor.get_frame(index)
        fbank[done:ready] = rows[:, first_mel:]
        if energy is not None:
            energy[done:ready] = rows[:, 0]
        if hasattr(extractor, "pop"):  # free the copied frames (older kaldi-native-fbank keeps them)
            extractor.pop(ready - done)
        done = ready

    for start in range(0, len(waveform), block_samples):
        block = waveform[start : start + block_samples]
        if not np.isfinite(block).all():
            raise ValueError("waveform has NaN/Inf samples")
        extractor.accept_waveform(float(config.sample_rate), (block * INT16_SCALE).astype(np.float32, copy=False))
        take_ready()
    extractor.input_finished()
    take_ready()
    if done != num_frames:
        raise RuntimeError(f"kaldi-native-fbank made {done} frames, expected {num_frames}")
    return fbank, energy


def compute_fbank(waveform: np.ndarray, config: FbankConfig = FbankConfig()) -> np.ndarray:
    """Computes Kaldi log-mel filterbank features.

    Args:
        waveform: float 1-D samples in [-1, 1] at ``config.sample_rate`` (scaled by 32768
            internally, Kaldi's int16 convention).
        config: Front-end options.

    Returns:
        float32 ``[frames, num_mel_bins]``; ``frames`` is ``config.num_frames(len(waveform))``
        (0 rows for audio shorter than one frame with ``snip_edges``).

    Raises:
        ValueError: on a waveform that is not 1-D float or has NaN/Inf samples.
    """
    return _run_knf(waveform, config, use_energy=False)[0]


def compute_fbank_and_energy(
    waveform: np.ndarray, config: FbankConfig = FbankConfig()
) -> tuple[np.ndarray, np.ndarray]:
    """Computes the filterbank and the per-frame raw log-energy (the input of energy VAD).

    The energy is Kaldi's ``--use-energy --raw-energy`` value, which kaldi-native-fbank puts
    in column 0: ``log(max(sum(x^2), float_epsilon))`` over each frame's int16-scale samples
    after dithering and DC removal, before pre-emphasis and windowing. It is the same
    quantity Kaldi's ``compute-vad`` reads from column 0 of MFCCs made with ``--use-energy``.
    The mel columns are bit-identical to :func:`compute_fbank`.

    Args:
        waveform: float 1-D samples in [-1, 1] at ``config.sample_rate``.
        config: Front-end options.

    Returns:
        ``(fbank, log_energy)``: float32 ``[frames, num_mel_bins]`` and float32 ``[frames]``.

    Raises:
        ValueError: on a waveform that is not 1-D float or has NaN/Inf samples.
    """
    fbank, log_energy = _run_knf(waveform, config, use_energy=True)
    assert log_energy is not None
    return fbank, log_energy
