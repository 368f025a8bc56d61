"""The front-end record that travels with the features: data dir -> exp dir -> CLI.

The feature stage writes its fbank and VAD options to ``<data_dir>/frontend.json``; training
copies the training data's record into the exp dir. Extraction refuses features made with
other options than the model was trained on, and the CLI rebuilds the same front-end for raw
audio, so a model never sees features it was not trained with.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from speakernet.features.fbank import FbankConfig
from speakernet.features.vad import VadConfig
from speakernet.utils.fileio import PathLike, atomic_write

FRONTEND_CONFIG_NAME = "frontend.json"


def save_frontend(directory: PathLike, fbank: FbankConfig, vad: VadConfig) -> None:
    """Writes ``directory/frontend.json`` atomically."""
    with atomic_write(Path(directory) / FRONTEND_CONFIG_NAME) as handle:
        json.dump({"fbank": fbank.to_dict(), "vad": vad.to_dict()}, handle, indent=2, sort_keys=True)


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
        FbankConfig(**record["fbank"])
        VadConfig(**record["vad"])
    except (ValueError, KeyError, TypeError) as error:
        raise ValueError(f"{path} is not a valid front-end record: {error}") from error
    return record


def load_frontend(directory: PathLike) -> tuple[FbankConfig, VadConfig] | None:
    """The fbank and VAD options recorded in ``directory``, or None when there is no record."""
    record = read_frontend_record(directory)
    if record is None:
        return None
    return FbankConfig(**record["fbank"]), VadConfig(**record["vad"])


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
        for key in sorted(set(model[part]) | set(data[part])):
            if model[part].get(key) != data[part].get(key):
                raise ValueError(
                    f"{Path(data_dir) / FRONTEND_CONFIG_NAME}: {part}.{key} = {data[part].get(key)!r}, but the model "
                    f"was trained on {model[part].get(key)!r} ({Path(model_dir) / FRONTEND_CONFIG_NAME}); "
                    "re-make the features with the model's options"
                )
