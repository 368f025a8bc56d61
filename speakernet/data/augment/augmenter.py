"""The :class:`Augmenter`: noise and RIR sources loaded from data dirs, a random chain applied per utterance.

Configured from a dict (e.g. a YAML section); every key is optional but at least one source kind
must be given, and unknown keys are errors listing the valid ones::

    probability: 0.6            # an utterance is augmented at all (WeSpeaker: 0.6)
    reverb_probability: 0.5     # an augmented utterance is reverberated
    chain: false                # false (WeSpeaker): reverb, or else one additive kind;
                                # true: reverb (reverb_probability), then an additive kind (additive_probability)
    additive_probability: 1.0   # with chain: true
    normalize: peak             # peak (WeSpeaker: augmented audio peak-normalised) | none
    sample_rate: 16000          # sources are resampled to it
    speeds: [1.0, 0.9, 1.1]     # speed perturbation (perturb_speed); index 0 keeps the labels
    reverb: {dirs: [data/rirs_smallroom, data/rirs_mediumroom]}
    noise:  {dirs: [data/musan_noise], snr: [0, 15]}                      # U(0,15) dB (WeSpeaker)
    speech: {dirs: [data/musan_speech], snr: [10, 30]}                    # one talker, U(10,30) (WeSpeaker)
    babble: {dirs: [data/musan_speech], snr_choices: [20, 17, 15, 13], num_talkers: [3, 7]}  # Kaldi
    music:  {dirs: [data/musan_music], snr: [5, 15]}                      # U(5,15) (WeSpeaker)

A kind is on when its section is given; its ``dirs`` are source dirs (``wav.scp``), the defaults of
the other keys are :data:`KIND_DEFAULTS`. ``snr: [low, high]`` draws U(low, high), ``snr_choices``
one of the values (then ``snr`` is not used); ``weight`` is the kind's share when one additive kind
is drawn; ``preload`` keeps every file of the kind in memory (default for ``reverb`` only: RIRs are
short); ``gap_seconds`` puts silence between repeats of a short noise (Kaldi's foreground noise:
1 s). Without reverb sources, an augmented utterance always gets an additive kind (and the other
way round).
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from speakernet.data.audio import load_audio
from speakernet.data.augment import ops
from speakernet.data.kaldi_dir import read_wav_scp
from speakernet.utils.fileio import PathLike

logger = logging.getLogger(__name__)

#: Additive kinds, in the order their weights are listed.
ADDITIVE_KINDS = ("noise", "speech", "babble", "music")
#: Defaults of each kind's section (``dirs`` has none: it is required).
KIND_DEFAULTS: dict[str, dict[str, Any]] = {
    "reverb": {"preload": True},
    "noise": {"snr": [0.0, 15.0], "snr_choices": None, "weight": 1.0, "preload": False, "gap_seconds": 0.0},
    "speech": {"snr": [10.0, 30.0], "snr_choices": None, "weight": 1.0, "preload": False, "num_talkers": [1, 1]},
    "babble": {"snr": None, "snr_choices": [20.0, 17.0, 15.0, 13.0], "weight": 1.0, "preload": False,
               "num_talkers": [3, 7]},
    "music": {"snr": [5.0, 15.0], "snr_choices": None, "weight": 1.0, "preload": False},
}
#: Top-level defaults.
DEFAULTS: dict[str, Any] = {
    "probability": 0.6, "reverb_probability": 0.5, "chain": False, "additive_probability": 1.0,
    "normalize": "peak", "sample_rate": 16000, "speeds": list(ops.SPEEDS),
}
_NORMALIZE = ("peak", "none")


class AudioSource:
    """The audio files of one or more source dirs, drawn at random.

    Args:
        dirs: Data dirs with a ``wav.scp`` (e.g. from :func:`~speakernet.data.prepare.musan.prepare_musan`).
        sample_rate: Rate (Hz) the audio is returned at.
        preload: Read every file now (else each draw reads its file).
        what: Name of the source, for messages.

    Raises:
        ValueError: if no dir is given or the dirs hold no files.
        DataDirError: on a missing or malformed ``wav.scp``.
        AudioError: (with ``preload``) on an unreadable file.
    """

    def __init__(self, dirs: Sequence[PathLike], sample_rate: int = 16000, preload: bool = False, what: str = "source"):
        if isinstance(dirs, (str, Path)) or not dirs:
            raise ValueError(f"{what}: 'dirs' must be a non-empty list of data dirs, got {dirs!r}")
        self.what = what
        self.sample_rate = sample_rate
        self.entries: list[tuple[str, str]] = []
        for data_dir in dirs:
            table = read_wav_scp(Path(data_dir) / "wav.scp")
            self.entries.extend((f"{data_dir}:{utt}", spec) for utt, spec in table.items())
        if not self.entries:
            raise ValueError(f"{what}: no audio in {', '.join(map(str, dirs))}")
        self._cache: dict[int, np.ndarray] | None = None
        if preload:
            self._cache = {index: self._read(index) for index in range(len(self.entries))}
        logger.info("%s: %d files from %s%s", what, len(self.entries), ", ".join(map(str, dirs)),
                    " (in memory)" if preload else "")

    def __len__(self) -> int:
        return len(self.entries)

    def _read(self, index: int) -> np.ndarray:
        return load_audio(self.entries[index][1], self.sample_rate)[0]

    def get(self, index: int) -> np.ndarray:
        """The waveform of file ``index`` (float32, mono, at :attr:`sample_rate`)."""
        return self._cache[index] if self._cache is not None else self._read(index)

    def draw(self, rng: np.random.Generator) -> np.ndarray:
        """A file drawn uniformly."""
        return self.get(int(rng.integers(len(self.entries))))


def _check_keys(section: Mapping[str, Any], valid: Sequence[str], where: str) -> None:
    unknown = sorted(set(section) - set(valid))
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {', '.join(unknown)}; valid: {', '.join(sorted(valid))}")


def _check_probability(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise ValueError(f"augment.{name} must be a probability in [0, 1], got {value!r}")
    return float(value)


def _check_range(value: Any, name: str, integer: bool = False) -> tuple[float, float]:
    kinds = (int,) if integer else (int, float)
    if (not isinstance(value, (list, tuple)) or len(value) != 2
            or not all(isinstance(item, kinds) and not isinstance(item, bool) for item in value)
            or value[0] > value[1]):
        raise ValueError(f"augment.{name} must be [low, high] with low <= high, got {value!r}")
    return value[0], value[1]


class _Kind:
    """One configured source kind: its files and how its SNR and talkers are drawn."""

    def __init__(self, name: str, section: Mapping[str, Any], sample_rate: int):
        if not isinstance(section, Mapping):
            raise ValueError(f"augment.{name} must be a mapping with 'dirs', got {section!r}")
        valid = ["dirs", *KIND_DEFAULTS[name]]
        _check_keys(section, valid, f"augment.{name}")
        if "dirs" not in section:
            raise ValueError(f"augment.{name}: 'dirs' (a list of source data dirs) is required")
        options = {**KIND_DEFAULTS[name], **section}
        self.name = name
        self.weight = float(options.get("weight", 0.0))
        if name != "reverb" and self.weight <= 0:
            raise ValueError(f"augment.{name}.weight must be positive, got {options.get('weight')!r}")
        self.snr_choices = options.get("snr_choices")
        self.snr = None
        if name != "reverb":
            if "snr" in section and "snr_choices" not in section:
                self.snr_choices = None
            if self.snr_choices is not None:
                if not isinstance(self.snr_choices, (list, tuple)) or not self.snr_choices:
                    raise ValueError(f"augment.{name}.snr_choices must be a non-empty list, got {self.snr_choices!r}")
                self.snr_choices = [float(value) for value in self.snr_choices]
            else:
                self.snr = _check_range(options["snr"], f"{name}.snr")
        self.num_talkers = _check_range(options["num_talkers"], f"{name}.num_talkers", integer=True) \
            if "num_talkers" in options else (1, 1)
        if self.num_talkers[0] < 1:
            raise ValueError(f"augment.{name}.num_talkers must be at least 1, got {options['num_talkers']!r}")
        self.gap = int(round(float(options.get("gap_seconds", 0.0)) * sample_rate))
        if self.gap < 0:
            raise ValueError(f"augment.{name}.gap_seconds must not be negative, got {options['gap_seconds']!r}")
        self.source = AudioSource(options["dirs"], sample_rate, bool(options["preload"]), f"augment.{name}")

    def draw_snr(self, rng: np.random.Generator) -> float:
        if self.snr_choices is not None:
            return self.snr_choices[int(rng.integers(len(self.snr_choices)))]
        return float(rng.uniform(*self.snr))

    def apply(self, waveform: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, str]:
        if self.name == "reverb":
            return ops.reverberate(waveform, self.source.draw(rng)), "reverb"
        snr = self.draw_snr(rng)
        if self.name in ("speech", "babble"):
            count = int(rng.integers(self.num_talkers[0], self.num_talkers[1] + 1))
            talkers = [self.source.draw(rng) for _ in range(count)]
            if count == 1:
                return ops.add_noise(waveform, talkers[0], snr, rng), f"{self.name}@{snr:.2f}dB"
            return ops.add_babble(waveform, talkers, snr, rng), f"{self.name}x{count}@{snr:.2f}dB"
        return ops.add_noise(waveform, self.source.draw(rng), snr, rng, self.gap), f"{self.name}@{snr:.2f}dB"


class Augmenter:
    """Applies a random augmentation chain to waveforms (see the module docstring for the config).

    Args:
        config: The ``augment`` section; missing keys take :data:`DEFAULTS` / :data:`KIND_DEFAULTS`.

    Raises:
        ValueError: on an unknown key, a bad value, no source kind at all, or a source dir without audio.
    """

    def __init__(self, config: Mapping[str, Any]):
        if not isinstance(config, Mapping):
            raise ValueError(f"augment config must be a mapping, got {type(config).__name__}")
        _check_keys(config, [*DEFAULTS, "reverb", *ADDITIVE_KINDS], "augment")
        options = {**copy.deepcopy(DEFAULTS), **config}
        self.config = options
        self.probability = _check_probability(options["probability"], "probability")
        self.reverb_probability = _check_probability(options["reverb_probability"], "reverb_probability")
        self.additive_probability = _check_probability(options["additive_probability"], "additive_probability")
        if not isinstance(options["chain"], bool):
            raise ValueError(f"augment.chain must be true or false, got {options['chain']!r}")
        self.chain = options["chain"]
        if options["normalize"] not in _NORMALIZE:
            raise ValueError(f"augment.normalize must be one of {', '.join(_NORMALIZE)}, got {options['normalize']!r}")
        self.normalize = options["normalize"]
        self.sample_rate = int(options["sample_rate"])
        if self.sample_rate <= 0:
            raise ValueError(f"augment.sample_rate must be positive, got {options['sample_rate']!r}")
        speeds = options["speeds"]
        if not isinstance(speeds, (list, tuple)) or not speeds or speeds[0] != 1.0:
            raise ValueError(f"augment.speeds must be a list starting with 1.0 (the unperturbed copy), got {speeds!r}")
        self.speeds = [float(speed) for speed in speeds]
        for speed in self.speeds:
            ops.speed_ratio(speed)
        self.reverb = _Kind("reverb", config["reverb"], self.sample_rate) if "reverb" in config else None
        self.additive = [_Kind(name, config[name], self.sample_rate) for name in ADDITIVE_KINDS if name in config]
        if self.reverb is None and not self.additive:
            raise ValueError(f"augment: no source kind given; give at least one of reverb, {', '.join(ADDITIVE_KINDS)}")
        weights = np.array([kind.weight for kind in self.additive])
        self._weights = weights / weights.sum() if self.additive else weights

    def _additive(self, waveform: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, str]:
        kind = self.additive[int(rng.choice(len(self.additive), p=self._weights))]
        return kind.apply(waveform, rng)

    def augment(self, waveform: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, list[str]]:
        """Applies a random chain to one waveform (at :attr:`sample_rate`).

        Args:
            waveform: 1-D samples.
            rng: Every random choice is drawn from it.

        Returns:
            The waveform (float32, same length) and what was applied (``["reverb", "noise@7.31dB"]``;
            empty when the utterance was left clean, and then the waveform is returned unchanged).
        """
        waveform = np.asarray(waveform, dtype=np.float32)
        if rng.random() >= self.probability:
            return waveform, []
        applied: list[str] = []
        if self.chain:
            if self.reverb is not None and rng.random() < self.reverb_probability:
                waveform, name = self.reverb.apply(waveform, rng)
                applied.append(name)
            if self.additive and rng.random() < self.additive_probability:
                waveform, name = self._additive(waveform, rng)
                applied.append(name)
        else:
            use_reverb = self.reverb is not None and (not self.additive or rng.random() < self.reverb_probability)
            waveform, name = self.reverb.apply(waveform, rng) if use_reverb else self._additive(waveform, rng)
            applied.append(name)
        if applied and self.normalize == "peak":
            waveform = ops.peak_normalize(waveform)
        return waveform, applied

    def __call__(self, waveform: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """:meth:`augment`'s waveform only."""
        return self.augment(waveform, rng)[0]

    def num_classes(self, num_speakers: int) -> int:
        """Classes of a classifier trained with speed perturbation: ``num_speakers`` per speed."""
        return num_speakers * len(self.speeds)

    def perturb_speed(
        self, waveform: np.ndarray, label: int, num_speakers: int, rng: np.random.Generator
    ) -> tuple[np.ndarray, int]:
        """Draws a speed uniformly from :attr:`speeds` and returns the perturbed waveform and its class.

        Returns:
            ``(waveform, label + num_speakers * speed index)``; index 0 (1.0) keeps both.
        """
        index = int(rng.integers(len(self.speeds)))
        return ops.perturb_speed(waveform, self.speeds[index]), ops.speed_label(label, index, num_speakers)
