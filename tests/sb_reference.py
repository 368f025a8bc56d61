"""The inputs of the SpeechBrain parity fixture (``tests/fixtures/speechbrain_ecapa.npz``).

Shared by the test (``tests/convert/test_speechbrain.py``) and the script that computed the fixture
once with SpeechBrain itself (``tools/make_speechbrain_fixture.py``), so both embed the same audio.
Only numpy here: the script runs in SpeechBrain's own environment.
"""

from __future__ import annotations

import numpy as np

#: Real recordings, relative to the shared real-speech root (``SPEAKERNET_REAL_DATA``, default ``../shared/data``
#: beside the repository); not in the repository.
REAL_FILES = (
    "LibriSpeech/train-clean-100/103/1240/103-1240-0000.flac",
    "LibriSpeech/train-clean-100/1034/121119/1034-121119-0000.flac",
    "speech_commands_v0.02_test/down/022cd682_nohash_0.flac",
)

#: Seeds and lengths (s) of the synthetic signals, which every machine can make.
SYNTHETIC = ((1, 3.0), (2, 1.7))

SAMPLE_RATE = 16000


def synthetic_signal(seed: int, seconds: float) -> np.ndarray:
    """A voiced-speech-like float32 signal in [-1, 1]: a gliding harmonic tone, syllable-rate envelope, noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    f0 = 110.0 + 40.0 * seed + 20.0 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / SAMPLE_RATE
    voiced = sum(np.sin(k * phase) / k for k in range(1, 15))
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 4.0 * t) ** 2
    signal = 0.3 * envelope * voiced + 0.01 * rng.standard_normal(t.shape)
    return (signal / np.abs(signal).max() * 0.8).astype(np.float32)
