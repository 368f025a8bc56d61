"""The front-end record that travels with the features: data dir -> exp dir -> CLI.

The feature stage writes its fbank and VAD options to ``<data_dir>/frontend.json``; training
copies the training data's record into the exp dir. Extraction refuses features made with
other options than the model was trained on, and the CLI rebuilds the same front-end for raw
audio, so a model never sees features it was not trained with.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, NamedTuple, Union

import numpy as np

from speakernet.features.fbank import FbankConfig, compute_fbank_and_energy
from speakernet.features.sb_fbank import SpeechBrainFbankConfig, compute_sb_fbank_and_energy
from speakernet.features.vad import VadConfig
from speakernet.registry import Registry
from speakernet.utils.fileio import PathLike, atomic_write

FRONTEND_CONFIG_NAME = "frontend.json"

#: Any registered filterbank front-end's options.
FeatureConfig = Union[FbankConfig, SpeechBrainFbankConfig]


class Frontend(NamedTuple):
    """A registered front-end: its options class and ``compute(waveform, config) -> (features, log_energy)``."""

    config: Callable[..., FeatureConfig]
    compute: Callable[[np.ndarray, Any], tuple[np.ndarray, np.ndarray]]


#: Filterbank front-ends by ``kind``. ``kaldi`` is Kaldi's fbank (every recipe's default);
#: ``speechbrain`` is SpeechBrain's ``Fbank``, which models imported from SpeechBrain were trained on.
FRONTENDS: Registry[Frontend] = Registry("front-end")
FRONTENDS.register("kaldi")(lambda: Frontend(FbankConfig, compute_fbank_and_energy))
FRONTENDS.register("speechbrain")(lambda: Frontend(SpeechBrainFbankConfig, compute_sb_fbank_and_energy))


def compute_features_and_energy(waveform: np.ndarray, config: FeatureConfig) -> tuple[np.ndarray, np.ndarray]:
    """The features of ``config``'s front-end and the per-frame raw log-energy (the input of energy VAD).

    Args:
        waveform: float 1-D samples in [-1, 1] at ``config.sample_rate``.
        config: The options of a registered front-end.

    Returns:
        ``(features [frames, num_mel_bins], log_energy [frames])``, float32.

    Raises:
        ValueError: on a waveform that is not 1-D float or has NaN/Inf samples.
    """
    return FRONTENDS.build(config.kind).compute(waveform, config)


def frontend_to_dict(config: FeatureConfig) -> dict[str, Any]:
    """The options of a front-end with its ``kind``, as stored in ``frontend.json``."""
    return {"kind": config.kind, **config.to_dict()}


def frontend_from_dict(record: dict[str, Any]) -> FeatureConfig:
    """The front-end options of a ``frontend.json`` ``fbank`` record (no ``kind``: a Kaldi fbank record).

    Raises:
        KeyError: for an unknown kind (the message lists the registered front-ends).
        TypeError: for an option the front-end does not take.
        ValueError: for an invalid option value.
    """
    options = dict(record)
    return FRONTENDS.build(options.pop("kind", "kaldi")).config(**options)


def save_frontend(directory: PathLike, fbank: FeatureConfig, vad: VadConfig) -> None:
    """Writes ``directory/frontend.json`` atomically."""
    with atomic_write(Path(directory) / FRONTEND_CONFIG_NAME) as handle:
        json.dump({"fbank": frontend_to_dict(fbank), "vad": vad.to_dict()}, handle, indent=2, sort_keys=True)


def read_frontend_record(directory: PathLike) -> dict[str, Any] | None:
    """The raw record of ``directory/frontend.json``, or None when there is none.

    Raises:
        ValueError: on a file that is not a valid record (names the file).
    """
    path = Path(directory) / FRONTEND_CONFIG_NAME
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        record["fbank"] = frontend_to_dict(frontend_from_dict(record["fbank"]))  # defaults filled in
        VadConfig(**record["vad"])
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise ValueError(f"{path} is not a valid front-end record: {error}") from error
    return record


def load_frontend(directory: PathLike) -> tuple[FeatureConfig, VadConfig] | None:
    """The front-end and VAD options recorded in ``directory``, or None when there is no record."""
    record = read_frontend_record(directory)
    if record is None:
        return None
    return frontend_from_dict(record["fbank"]), VadConfig(**record["vad"])


def check_same_frontend(model_dir: PathLike, data_dir: PathLike) -> None:
    """Raises if the data dir's features were made with other options than the model's.

    Either side without a record is accepted (features made before records existed).

    Raises:
        ValueError: naming both files and the first differing option.
    """
    model, data = read_frontend_record(model_dir), read_frontend_record(data_dir)
    if model is None or data is None:
        return
    for part in ("fbank", "vad"):
        for key in sorted(set(model[part]) | set(data[part]), key=lambda k: (k != "kind", k)):  # the kind first
            if model[part].get(key) != data[part].get(key):
                raise ValueError(
                    f"{Path(data_dir) / FRONTEND_CONFIG_NAME}: {part}.{key} = {data[part].get(key)!r}, but the model "
                    f"was trained on {model[part].get(key)!r} ({Path(model_dir) / FRONTEND_CONFIG_NAME}); "
                    "re-make the features with the model's options"
                )
