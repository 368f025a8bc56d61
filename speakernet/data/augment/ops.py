"""Waveform augmentation operations (numpy, 1-D float waveforms in samples).

Every random choice is drawn from the ``numpy.random.Generator`` passed in, so one seed gives one
output. SNRs are in dB over the whole utterance, as WeSpeaker and Kaldi compute them: the mean
power of the speech over the mean power of the added signal once it has the speech's length
(WeSpeaker adds 1e-4 to both powers; here the powers are exact, so the SNR asked is the SNR got).
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction

import numpy as np

#: Speed factors of speed perturbation; index 0 (1.0) keeps the speaker labels (WeSpeaker's order).
SPEEDS = (1.0, 0.9, 1.1)
_TINY = 1e-20


def _check_waveform(waveform: np.ndarray, what: str) -> np.ndarray:
    waveform = np.asarray(waveform)
    if waveform.ndim != 1 or waveform.size == 0:
        raise ValueError(f"{what} must be a non-empty 1-D waveform, got shape {waveform.shape}")
    if not np.isfinite(waveform).all():
        raise ValueError(f"{what} has NaN/Inf samples")
    return waveform


def power(waveform: np.ndarray) -> float:
    """Mean power (mean square) of a waveform."""
    return float(np.mean(np.square(waveform, dtype=np.float64)))


def snr_db(speech: np.ndarray, added: np.ndarray) -> float:
    """SNR (dB) of ``speech`` over ``added`` (same length): 10 log10 of their mean powers' ratio."""
    return 10.0 * float(np.log10(power(speech) / max(power(added), _TINY)))


def fit_length(noise: np.ndarray, length: int, rng: np.random.Generator, gap: int = 0) -> np.ndarray:
    """Gives ``noise`` exactly ``length`` samples.

    A longer noise is cropped at a random offset; a shorter one is repeated back to back from its
    start, ``gap`` zeros between repeats (Kaldi places foreground noises with gaps, background
    noises without), and cut at ``length``.

    Args:
        noise: 1-D samples.
        length: Wanted number of samples (positive).
        rng: Draws the crop offset.
        gap: Zeros between repeats of a short noise.

    Returns:
        float64 samples, ``length`` of them.

    Raises:
        ValueError: on an empty or non-1-D noise, a non-positive length or a negative gap.
    """
    noise = _check_waveform(noise, "noise").astype(np.float64)
    if length <= 0 or gap < 0:
        raise ValueError(f"length must be positive and gap not negative, got {length}, {gap}")
    if noise.size >= length:
        start = int(rng.integers(0, noise.size - length + 1))
        return noise[start:start + length].copy()
    period = np.concatenate([noise, np.zeros(gap)])
    return np.tile(period, -(-length // period.size))[:length]


def scale_to_snr(speech: np.ndarray, added: np.ndarray, snr: float) -> np.ndarray:
    """``added`` scaled so that ``snr_db(speech, result) == snr``; zeros if either is silent (no SNR exists)."""
    speech_power, added_power = power(speech), power(added)
    if speech_power <= _TINY or added_power <= _TINY:
        return np.zeros(np.shape(added))
    return np.asarray(added, dtype=np.float64) * np.sqrt(speech_power / (added_power * 10.0 ** (snr / 10.0)))


def add_noise(
    speech: np.ndarray, noise: np.ndarray, snr: float, rng: np.random.Generator, gap: int = 0
) -> np.ndarray:
    """Adds a noise (or music, or one speech file) at ``snr`` dB over the whole utterance.

    Args:
        speech: 1-D samples.
        noise: 1-D samples at the same rate, fitted to the speech's length by :func:`fit_length`.
        snr: Wanted SNR in dB.
        rng: Draws the noise's crop offset.
        gap: Zeros between repeats of a noise shorter than the speech.

    Returns:
        The mixture, float32, the speech's length. A silent speech or noise gives the speech back.

    Raises:
        ValueError: on an empty, non-1-D or non-finite waveform, or a non-finite SNR.
    """
    speech = _check_waveform(speech, "speech")
    if not np.isfinite(snr):
        raise ValueError(f"SNR must be finite, got {snr}")
    fitted = fit_length(noise, speech.size, rng, gap)
    return (speech.astype(np.float64) + scale_to_snr(speech, fitted, snr)).astype(np.float32)


def add_babble(
    speech: np.ndarray, talkers: Sequence[np.ndarray], snr: float, rng: np.random.Generator
) -> np.ndarray:
    """Adds babble: the sum of several speech files, each at equal power, at ``snr`` dB in all.

    Kaldi adds each babble talker at its own SNR from the list (so the sum is louder than any one);
    here the talkers are summed at equal power first and the sum is mixed at ``snr``, so the SNR
    of the babble as a whole is the one asked.

    Args:
        speech: 1-D samples.
        talkers: The babble's speech files (1-D, same rate), each fitted to the speech's length.
        snr: SNR of the speech over the babble, in dB.
        rng: Draws the crop offsets.

    Returns:
        The mixture, float32, the speech's length.

    Raises:
        ValueError: on no talkers, or a bad waveform or SNR (as :func:`add_noise`).
    """
    speech = _check_waveform(speech, "speech")
    if not talkers:
        raise ValueError("babble needs at least one talker")
    babble = np.zeros(speech.size)
    for talker in talkers:
        fitted = fit_length(talker, speech.size, rng)
        talker_power = power(fitted)
        babble += fitted / np.sqrt(talker_power) if talker_power > _TINY else fitted
    return add_noise(speech, babble, snr, rng)


def reverberate(speech: np.ndarray, rir: np.ndarray) -> np.ndarray:
    """Convolves speech with a room impulse response, aligned at its direct path, keeping the length.

    The RIR is scaled to unit energy (WeSpeaker) and the output starts at the RIR's largest
    absolute sample (its direct path), so the speech is not delayed: an impulse at any position
    gives the input back (times the impulse's sign).

    Args:
        speech: 1-D samples.
        rir: 1-D impulse response at the speech's rate (e.g. the first channel of a multi-channel file).

    Returns:
        float32 samples, the speech's length.

    Raises:
        ValueError: on an empty, non-1-D, non-finite or all-zero RIR, or a bad speech waveform.
    """
    from scipy.signal import fftconvolve

    speech = _check_waveform(speech, "speech")
    rir = _check_waveform(rir, "rir").astype(np.float64)
    energy = float(np.sum(np.square(rir)))
    if energy <= _TINY:
        raise ValueError("rir is all zeros")
    rir = rir / np.sqrt(energy)
    direct = int(np.argmax(np.abs(rir)))
    full = fftconvolve(speech.astype(np.float64), rir)
    return full[direct:direct + speech.size].astype(np.float32)


def speed_ratio(speed: float) -> tuple[int, int]:
    """``(up, down)`` of the polyphase resampling that plays a waveform ``speed`` times faster."""
    if not np.isfinite(speed) or speed <= 0:
        raise ValueError(f"speed must be positive, got {speed}")
    ratio = Fraction(1.0 / speed).limit_denominator(1000)
    return ratio.numerator, ratio.denominator


def perturb_speed(waveform: np.ndarray, speed: float) -> np.ndarray:
    """Speed perturbation (tempo and pitch, like sox ``speed``) by resampling with ``resample_poly``.

    The waveform is resampled from rate ``r`` to ``r / speed`` and read at ``r``: 1.1 makes it
    1/1.1 as long (``ceil(n / 1.1)`` samples) and higher, 0.9 longer and lower.

    Args:
        waveform: 1-D samples.
        speed: Speed factor (positive; 1.0 returns the input as float32).

    Returns:
        float32 samples.

    Raises:
        ValueError: on a bad waveform or a non-positive speed.
    """
    from scipy.signal import resample_poly

    waveform = _check_waveform(waveform, "waveform")
    up, down = speed_ratio(speed)
    if up == down:
        return waveform.astype(np.float32)
    return resample_poly(waveform.astype(np.float64), up, down).astype(np.float32)


def speed_label(label: int, speed_index: int, num_speakers: int) -> int:
    """The class of a speaker's speed-perturbed copy: ``label + num_speakers * speed_index`` (WeSpeaker).

    Index 0 (speed 1.0 in :data:`SPEEDS`) keeps the label; a classifier then has
    ``num_speakers * len(SPEEDS)`` classes.

    Raises:
        ValueError: on a label outside ``[0, num_speakers)`` or a negative speed index.
    """
    if not 0 <= label < num_speakers or speed_index < 0:
        raise ValueError(f"need 0 <= label < num_speakers and speed_index >= 0, got label {label}, "
                         f"num_speakers {num_speakers}, speed_index {speed_index}")
    return label + num_speakers * speed_index


def peak_normalize(waveform: np.ndarray) -> np.ndarray:
    """Scales a waveform so that its largest absolute sample is 1 (a silent one is returned as is)."""
    peak = float(np.max(np.abs(waveform)))
    return (waveform / peak).astype(np.float32) if peak > 0 else np.asarray(waveform, dtype=np.float32)
