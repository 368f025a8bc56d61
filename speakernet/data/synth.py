"""The built-in synthetic multi-speaker corpus, so a recipe runs end to end with no downloads.

Speech-like audio is made by a source-filter model in the STFT domain:

* every **speaker** has its own glottal source (F0 mean and intonation range, jitter, shimmer,
  Rosenberg pulse open quotient and skew, spectral tilt, breathiness), its own vocal tract
  (length scaling all formants, a personal perturbation of a shared 8-vowel formant inventory
  so all speakers speak the same "language", bandwidths, nasality) and its own speaking rate;
* every **utterance** is a random sequence of syllables (optional fricative, /h/ or stop
  consonant, then a vowel with formant transitions), phrase pauses and an F0 contour with
  declination and accents, plus a small per-utterance shift of pitch and vocal effort;
* every **session** has its own channel: a smooth random microphone EQ, band limits, level,
  coloured background noise at a random SNR and, for some sessions, room reverberation.

So the speaker information is present but buried under channel, noise and content
variability that a model must learn to ignore (see ``benches/bench_synth_baseline.py``).
The corpus itself (speakers, sessions, data dirs, trials, parallel jobs) is made by
:mod:`speakernet.data.synth_corpus`.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np


logger = logging.getLogger(__name__)

N_FFT = 512
HOP = 256

# Shared "phoneme" inventory: F1-F3 (Hz) of 8 vowels for a reference adult vocal tract
# (close to Peterson & Barney averages); F4 and F5 are fixed per speaker.
VOWEL_FORMANTS_HZ = np.array(
    [
        [270.0, 2290.0, 3010.0],  # i
        [390.0, 1990.0, 2550.0],  # I
        [530.0, 1840.0, 2480.0],  # E
        [660.0, 1720.0, 2410.0],  # ae
        [730.0, 1090.0, 2440.0],  # a
        [570.0, 840.0, 2410.0],  # o
        [440.0, 1020.0, 2240.0],  # U
        [300.0, 870.0, 2240.0],  # u
    ]
)
NUM_VOWELS = VOWEL_FORMANTS_HZ.shape[0]
BASE_BANDWIDTHS_HZ = np.array([70.0, 100.0, 140.0, 200.0, 280.0])
# Fricatives: (centre Hz, bandwidth Hz, level dB relative to the vowels); None centre = flat (/f/).
FRICATIVES = ((5500.0, 1800.0, -8.0), (3000.0, 900.0, -6.0), (None, None, -16.0))


@dataclass(frozen=True)
class SpeakerProfile:
    """Voice parameters of one synthetic speaker.

    Attributes:
        f0_mean_hz: Mean fundamental frequency (Hz).
        f0_range_st: Intonation excursion (semitones).
        jitter: Relative standard deviation of the F0 micro-perturbation.
        shimmer: Standard deviation of the per-period log amplitude.
        open_quotient: Open phase of the Rosenberg glottal pulse (fraction of a period).
        speed_quotient: Opening / closing duration ratio of the pulse.
        tilt_db_per_octave: Extra spectral tilt of the voice source.
        breathiness_db: Aspiration noise level relative to the voiced source.
        formants_hz: ``[NUM_VOWELS, 5]`` personal formant targets (vocal-tract length applied).
        bandwidths_hz: ``[5]`` formant bandwidths.
        nasality: Strength (0-1) of the nasal pole/zero pair.
        nasal_zero_hz: Frequency of the nasal anti-resonance.
        fricative_scale: Scaling of the fricative spectra (vocal-tract size).
        vowel_duration_s: Mean vowel duration (speaking rate).
    """

    f0_mean_hz: float
    f0_range_st: float
    jitter: float
    shimmer: float
    open_quotient: float
    speed_quotient: float
    tilt_db_per_octave: float
    breathiness_db: float
    formants_hz: np.ndarray
    bandwidths_hz: np.ndarray
    nasality: float
    nasal_zero_hz: float
    fricative_scale: float
    vowel_duration_s: float


@dataclass(frozen=True)
class SessionChannel:
    """Recording conditions shared by the utterances of one session.

    Attributes:
        eq_cosine_db: Coefficients (dB) of a cosine series over the mel axis: the microphone EQ.
        highpass_hz: Corner of the 2nd-order high-pass roll-off.
        lowpass_hz: Corner of the band limit (0 = none).
        lowpass_order: Butterworth order of the band limit.
        level_dbfs: RMS level of the recording (dB full scale).
        snr_db: Mean speech-to-noise ratio of the session.
        noise_tilt_db_per_octave: Slope of the background noise spectrum.
        noise_bumps_db: Cosine-series coefficients (dB) shaping the noise spectrum.
        rt60_s: Reverberation time (0 = dry).
        drr_db: Direct-to-reverberant ratio when reverberant.
    """

    eq_cosine_db: np.ndarray
    highpass_hz: float
    lowpass_hz: float
    lowpass_order: int
    level_dbfs: float
    snr_db: float
    noise_tilt_db_per_octave: float
    noise_bumps_db: np.ndarray
    rt60_s: float
    drr_db: float

    @classmethod
    def clean(cls, level_dbfs: float = -20.0) -> SessionChannel:
        """A flat, quiet, dry channel (for tests and listening)."""
        return cls(np.zeros(4), 20.0, 0.0, 4, level_dbfs, 80.0, 0.0, np.zeros(4), 0.0, 100.0)


def _rng(seed: int, *key: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=tuple(key)))


def sample_speaker(rng: np.random.Generator) -> SpeakerProfile:
    """Draws a random speaker.

    Args:
        rng: Random generator (its state advances).

    Returns:
        The speaker's voice parameters.
    """
    female = rng.random() < 0.5
    f0_mean = math.exp(rng.normal(math.log(205.0 if female else 115.0), 0.14))
    vtl_scale = rng.normal(1.15 if female else 1.0, 0.045)
    formants = np.empty((NUM_VOWELS, 5))
    # Personal vowel inventory: every speaker shifts each vowel's formants a little.
    formants[:, :3] = VOWEL_FORMANTS_HZ * vtl_scale * np.exp(rng.normal(0.0, 0.08, size=(NUM_VOWELS, 3)))
    formants[:, 3] = 3500.0 * vtl_scale * math.exp(rng.normal(0.0, 0.04))
    formants[:, 4] = 4500.0 * vtl_scale * math.exp(rng.normal(0.0, 0.04))
    formants = np.sort(formants, axis=1)
    return SpeakerProfile(
        f0_mean_hz=f0_mean,
        f0_range_st=rng.uniform(2.0, 7.0),
        jitter=rng.uniform(0.003, 0.02),
        shimmer=rng.uniform(0.02, 0.12),
        open_quotient=rng.uniform(0.4, 0.8),
        speed_quotient=rng.uniform(1.5, 4.0),
        tilt_db_per_octave=rng.uniform(-4.0, 2.0),
        breathiness_db=rng.uniform(-35.0, -12.0),
        formants_hz=formants,
        bandwidths_hz=BASE_BANDWIDTHS_HZ * rng.uniform(0.7, 1.6) * np.exp(rng.normal(0.0, 0.15, size=5)),
        nasality=rng.uniform(0.0, 1.0) ** 2,
        nasal_zero_hz=rng.uniform(600.0, 1200.0) * vtl_scale,
        fricative_scale=vtl_scale * math.exp(rng.normal(0.0, 0.05)),
        vowel_duration_s=rng.uniform(0.08, 0.2),
    )


def sample_session(rng: np.random.Generator) -> SessionChannel:
    """Draws random recording conditions for one session.

    Args:
        rng: Random generator (its state advances).

    Returns:
        The session's channel.
    """
    reverberant = rng.random() < 0.5
    return SessionChannel(
        eq_cosine_db=rng.normal(0.0, 1.0, size=6) * np.array([5.0, 4.0, 3.2, 2.5, 2.0, 1.6]),
        highpass_hz=rng.uniform(40.0, 300.0),
        lowpass_hz=rng.uniform(3400.0, 7500.0) if rng.random() < 0.5 else 0.0,
        lowpass_order=int(rng.integers(3, 9)),
        level_dbfs=rng.uniform(-38.0, -16.0),
        snr_db=rng.uniform(5.0, 30.0),
        noise_tilt_db_per_octave=rng.uniform(-6.0, 1.0),
        noise_bumps_db=rng.normal(0.0, 3.0, size=4),
        rt60_s=rng.uniform(0.15, 0.7) if reverberant else 0.0,
        drr_db=rng.uniform(0.0, 12.0),
    )


def _mel(freqs_hz: np.ndarray) -> np.ndarray:
    return 2595.0 * np.log10(1.0 + freqs_hz / 700.0)


def _cosine_curve_db(freqs_hz: np.ndarray, coefficients: np.ndarray, sample_rate: int) -> np.ndarray:
    """A smooth curve over the mel axis: sum_k c_k cos(pi k m / m_max), k = 1..K (dB)."""
    position = _mel(freqs_hz) / _mel(np.array(sample_rate / 2.0))
    orders = np.arange(1, len(coefficients) + 1)
    return np.cos(np.pi * position[:, None] * orders[None, :]) @ coefficients


def _resonance(freqs_hz: np.ndarray, centre_hz: np.ndarray, bandwidth_hz: np.ndarray | float) -> np.ndarray:
    """Magnitude of a 2-pole resonator with unit gain at DC (Klatt-style), broadcasting."""
    half = np.asarray(bandwidth_hz) / 2.0
    numerator = centre_hz**2 + half**2
    return numerator / np.sqrt(((freqs_hz - centre_hz) ** 2 + half**2) * ((freqs_hz + centre_hz) ** 2 + half**2))


def _smooth(track: np.ndarray, width: int) -> np.ndarray:
    """Moving Hann-window average along axis 0 with edge padding (formant transitions)."""
    if width <= 1:
        return track
    kernel = np.hanning(width + 2)[1:-1]
    kernel /= kernel.sum()
    pad = width // 2
    padded = np.pad(track, [(pad, width - 1 - pad)] + [(0, 0)] * (track.ndim - 1), mode="edge")
    if track.ndim == 1:
        return np.convolve(padded, kernel, mode="valid")
    return np.stack([np.convolve(padded[:, i], kernel, mode="valid") for i in range(track.shape[1])], axis=1)


@dataclass
class _Plan:
    """Frame-level control tracks of one utterance (frame j is centred on sample j * HOP)."""

    vowel: np.ndarray  # vowel id whose formants the tract aims at
    voiced: np.ndarray  # 0/1 voicing
    fricative: np.ndarray  # fricative id, -1 none
    aspiration: np.ndarray  # 0/1 /h/ or stop burst through the tract
    f0_st: np.ndarray  # intonation in semitones around the speaker's mean


def _plan_utterance(speaker: SpeakerProfile, rng: np.random.Generator, num_frames: int, frame_s: float) -> _Plan:
    """Lays out syllables, pauses and the intonation contour over ``num_frames`` frames."""
    vowel = np.zeros(num_frames, dtype=np.int64)
    voiced = np.zeros(num_frames)
    fricative = np.full(num_frames, -1, dtype=np.int64)
    aspiration = np.zeros(num_frames)
    f0_st = np.zeros(num_frames)

    def frames(seconds: float) -> int:
        return max(1, round(seconds / frame_s))

    position = frames(rng.uniform(0.05, 0.25))
    end = num_frames - frames(rng.uniform(0.05, 0.2))
    phrase_start = position
    phrase_len = frames(rng.uniform(0.8, 2.0))
    while position < end:
        kind = rng.choice(5, p=[0.3, 0.15, 0.15, 0.15, 0.25])  # none, s, sh, f/h, stop
        next_vowel = int(rng.integers(NUM_VOWELS))
        if kind in (1, 2):
            span = frames(rng.uniform(0.06, 0.14))
            fricative[position : position + span] = kind - 1
        elif kind == 3:
            span = frames(rng.uniform(0.04, 0.1))
            if rng.random() < 0.5:
                fricative[position : position + span] = 2
            else:
                aspiration[position : position + span] = 1.0
        elif kind == 4:
            closure = frames(rng.uniform(0.03, 0.07))
            burst = frames(0.015)
            aspiration[position + closure : position + closure + burst] = 1.0
            span = closure + burst
        else:
            span = 0
        vowel[position : position + span] = next_vowel
        position += span
        span = frames(speaker.vowel_duration_s * rng.uniform(0.6, 1.6))
        vowel[position : position + span] = next_vowel
        voiced[position : position + span] = 1.0
        if rng.random() < 0.35:  # pitch accent on this syllable
            centre = position + span // 2
            index = np.arange(num_frames)
            f0_st += rng.uniform(0.3, 1.0) * speaker.f0_range_st * np.exp(-0.5 * ((index - centre) / (span / 2.0)) ** 2)
        position += span
        if position - phrase_start > phrase_len or rng.random() < 0.08:
            # Phrase boundary: a pause and a declination line over the phrase just ended.
            stop = min(position, num_frames)
            f0_st[phrase_start:stop] += np.linspace(0.5, -0.5, stop - phrase_start) * speaker.f0_range_st
            position += frames(rng.uniform(0.08, 0.35))
            phrase_start = position
            phrase_len = frames(rng.uniform(0.8, 2.0))
    stop = min(position, num_frames)
    if stop > phrase_start:  # declination over the last phrase
        f0_st[phrase_start:stop] += np.linspace(0.5, -0.5, stop - phrase_start) * speaker.f0_range_st
    # The tract keeps aiming at the last vowel through the trailing silence.
    last = vowel[min(num_frames, position) - 1] if position > 0 else 0
    vowel[min(num_frames, position) :] = last
    return _Plan(vowel[:num_frames], voiced[:num_frames], fricative[:num_frames], aspiration[:num_frames], f0_st)


def _glottal_source(
    speaker: SpeakerProfile, f0_hz: np.ndarray, rng: np.random.Generator, sample_rate: int
) -> np.ndarray:
    """Rosenberg glottal-flow derivative driven by a sample-level F0 track, with shimmer."""
    phase = np.cumsum(f0_hz / sample_rate)
    period = phase.astype(np.int64)
    frac = phase - period
    opening = speaker.open_quotient * speaker.speed_quotient / (1.0 + speaker.speed_quotient)
    closing = speaker.open_quotient - opening
    flow = np.where(
        frac < opening,
        0.5 * (1.0 - np.cos(np.pi * frac / opening)),
        np.where(frac < speaker.open_quotient, np.cos(0.5 * np.pi * (frac - opening) / closing), 0.0),
    )
    amplitude = np.exp(rng.normal(0.0, speaker.shimmer, size=period[-1] + 1))
    return np.diff(flow, prepend=0.0) * amplitude[period]


def _stft(x: np.ndarray) -> np.ndarray:
    from scipy import signal

    return signal.stft(x, nperseg=N_FFT, noverlap=N_FFT - HOP, window="hann", boundary="zeros", padded=True)[2]


def _room_impulse_response(channel: SessionChannel, rng: np.random.Generator, sample_rate: int) -> np.ndarray:
    """Direct path plus an exponentially decaying noise tail at the channel's DRR."""
    length = int(min(channel.rt60_s, 0.6) * sample_rate)
    t = np.arange(length) / sample_rate
    tail = rng.standard_normal(length) * np.exp(-6.9 * t / channel.rt60_s)
    tail[: int(0.002 * sample_rate)] = 0.0
    tail *= math.sqrt(10.0 ** (-channel.drr_db / 10.0) / max(float(np.sum(tail**2)), 1e-12))
    tail[0] = 1.0
    return tail


def synthesize_utterance(
    speaker: SpeakerProfile,
    channel: SessionChannel,
    rng: np.random.Generator,
    num_samples: int,
    sample_rate: int = 16000,
) -> np.ndarray:
    """Synthesises one utterance of a speaker recorded through a session's channel.

    Args:
        speaker: Voice parameters.
        channel: Recording conditions.
        rng: Random generator for the content, prosody and noise of this utterance.
        num_samples: Length of the output (samples).
        sample_rate: Sampling rate (Hz).

    Returns:
        float32 waveform of ``num_samples`` samples in [-1, 1].

    Raises:
        ValueError: if ``num_samples`` is shorter than 0.2 s.
    """
    from scipy import signal  # (imported here: a run that finds its corpus made needs none of it)

    if num_samples < 0.2 * sample_rate:
        raise ValueError(f"an utterance needs at least 0.2 s, got {num_samples} samples at {sample_rate} Hz")
    frame_s = HOP / sample_rate
    num_frames = num_samples // HOP + 1
    plan = _plan_utterance(speaker, rng, num_frames, frame_s)
    freqs = np.fft.rfftfreq(N_FFT, 1.0 / sample_rate)

    # Per-utterance pitch and vocal-effort drift of the speaker.
    f0_shift_st = rng.normal(0.0, 0.7)
    effort_tilt = rng.normal(0.0, 0.7)
    drift = _smooth(rng.normal(0.0, 0.6, size=num_frames), max(3, int(0.3 / frame_s)))
    f0_frames = speaker.f0_mean_hz * 2.0 ** ((plan.f0_st - plan.f0_st.mean() + f0_shift_st + drift) / 12.0)
    sample_times = np.arange(num_samples)
    f0 = np.interp(sample_times, np.arange(num_frames) * HOP, f0_frames)
    # Jitter: F0 perturbation held for ~5 ms at a time.
    hold = max(1, int(0.005 * sample_rate))
    f0 *= np.exp(speaker.jitter * np.repeat(rng.standard_normal(num_samples // hold + 1), hold)[:num_samples])

    # One STFT for the glottal source and three independent white noises (float32 for speed):
    # breath noise, consonant noise (aspiration and fricatives never overlap) and background noise.
    streams = np.empty((4, num_samples), dtype=np.float32)
    streams[0] = _glottal_source(speaker, f0, rng, sample_rate)
    streams[1:] = rng.standard_normal((3, num_samples), dtype=np.float32)
    spectra = _stft(streams)[:, :, :num_frames]
    window = np.hanning(N_FFT + 1)[:-1]
    spectra[1:] *= np.float32(window.sum() / math.sqrt(np.sum(window**2)))  # unit power per bin
    source, breath_noise, consonant_noise, background_noise = spectra
    source_power = float(np.mean(np.abs(source) ** 2))

    octaves = np.log2(np.maximum(freqs, 100.0) / 1000.0)
    tilt = 10.0 ** ((speaker.tilt_db_per_octave + effort_tilt) * octaves / 20.0)
    breath = 10.0 ** (speaker.breathiness_db / 20.0) * math.sqrt(source_power)
    excitation = (source * tilt[:, None] + breath * breath_noise) * _smooth(plan.voiced, 3)[None, :]
    excitation += consonant_noise * math.sqrt(source_power) * 0.5 * _smooth(plan.aspiration, 2)[None, :]

    # Vocal tract: time-varying formants (smoothed targets give the transitions), nasal pole/zero.
    targets = speaker.formants_hz[plan.vowel] * np.exp(rng.normal(0.0, 0.015, size=5))
    formants = _smooth(targets, max(3, int(0.05 / frame_s)))
    tract = np.prod(
        _resonance(
            freqs.astype(np.float32)[None, None, :],
            formants.astype(np.float32)[:, :, None],
            speaker.bandwidths_hz.astype(np.float32)[None, :, None],
        ),
        axis=1,
    )
    nasal = _resonance(freqs, 270.0 * speaker.fricative_scale, 100.0) / _resonance(freqs, speaker.nasal_zero_hz, 150.0)
    tract *= (nasal**speaker.nasality)[None, :]
    speech = excitation * tract.T

    voiced_power = float(np.mean(np.abs(speech[:, plan.voiced > 0]) ** 2)) if plan.voiced.any() else source_power
    for index, (centre, width, level_db) in enumerate(FRICATIVES):
        mask = plan.fricative == index
        if not mask.any():
            continue
        if centre is None:
            shape = np.ones_like(freqs)
        else:
            shape = np.exp(-0.5 * ((freqs - centre * speaker.fricative_scale) / width) ** 2)
        shape *= math.sqrt(len(freqs) / float(np.sum(shape**2)) * voiced_power * 10.0 ** (level_db / 10.0))
        speech += consonant_noise * shape[:, None] * _smooth(mask.astype(float), 3)[None, :]

    # Background noise at the session SNR (+-3 dB per utterance), slowly fluctuating in level.
    active = (plan.voiced > 0) | (plan.fricative >= 0)
    speech_power = float(np.mean(np.abs(speech[:, active]) ** 2)) if active.any() else voiced_power
    noise_db = channel.noise_tilt_db_per_octave * octaves + _cosine_curve_db(freqs, channel.noise_bumps_db, sample_rate)
    noise_shape = 10.0 ** (noise_db / 20.0)
    noise_shape *= math.sqrt(len(freqs) / float(np.sum(noise_shape**2)))
    snr_db = channel.snr_db + rng.uniform(-3.0, 3.0)
    wobble = 10.0 ** (_smooth(rng.normal(0.0, 2.0, size=num_frames), max(3, int(0.5 / frame_s))) / 20.0)
    noise = background_noise * noise_shape[:, None] * wobble[None, :]
    noise *= math.sqrt(speech_power * 10.0 ** (-snr_db / 10.0) / float(np.mean(np.abs(noise) ** 2)))

    # Microphone: smooth EQ, high-pass roll-off and optional band limit.
    eq_db = _cosine_curve_db(freqs, channel.eq_cosine_db, sample_rate)
    response = 10.0 ** (eq_db / 20.0) / np.sqrt(1.0 + (channel.highpass_hz / np.maximum(freqs, 1.0)) ** 4)
    if channel.lowpass_hz > 0:
        response /= np.sqrt(1.0 + (freqs / channel.lowpass_hz) ** (2 * channel.lowpass_order))
    spectrum = (speech + noise) * response[:, None]
    wave = signal.istft(spectrum, nperseg=N_FFT, noverlap=N_FFT - HOP, window="hann", boundary=True)[1]
    wave = np.pad(wave, (0, max(0, num_samples - len(wave))))[:num_samples]
    if channel.rt60_s > 0:
        wave = signal.fftconvolve(wave, _room_impulse_response(channel, rng, sample_rate))[:num_samples]

    rms = math.sqrt(float(np.mean(wave**2))) or 1.0
    wave *= 10.0 ** (channel.level_dbfs / 20.0) / rms
    peak = float(np.max(np.abs(wave)))
    if peak > 0.98:
        wave *= 0.98 / peak
    return wave.astype(np.float32)
