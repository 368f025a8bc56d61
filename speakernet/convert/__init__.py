"""Converters from other toolkits' checkpoints to speakernet models.

Each converter is registered by the toolkit's name in :data:`CONVERTERS` and maps a source (the
toolkit's model dir or checkpoint file) to an :class:`ImportedModel`: a registered speakernet
model, its arguments, its weights under speakernet's names, and the front-end the weights were
trained on. :func:`speakernet.importing.import_model` writes that as a model dir which every stage,
the CLI and :func:`speakernet.load` take like a trained exp dir.

Checkpoints are read with ``torch.load(..., weights_only=True)``: a file from elsewhere cannot run code.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import torch

from speakernet.features.frontend import FeatureConfig
from speakernet.registry import Registry


class ConversionError(ValueError):
    """A source that is not a checkpoint of the expected layout (the message names the file and the key)."""


@dataclass
class ImportedModel:
    """A converted model, ready to be written as a model dir.

    Attributes:
        model: Registered model name (``speakernet.models.MODELS``).
        model_args: The model's arguments, ``feat_dim`` excluded.
        feat_dim: Input feature dimension.
        state: The model's ``state_dict`` under speakernet's parameter names.
        frontend: The front-end the weights were trained on.
        use_vad: Whether extraction drops unvoiced frames (the source toolkit's practice).
        source_files: The files the weights and options came from.
        notes: Further provenance for ``import.json`` (e.g. the checkpoint's training classes).
    """

    model: str
    model_args: dict[str, Any]
    feat_dim: int
    state: dict[str, torch.Tensor]
    frontend: FeatureConfig
    use_vad: bool
    source_files: list[Path]
    notes: dict[str, Any] = field(default_factory=dict)


#: ``convert(source, options) -> ImportedModel`` by toolkit name.
CONVERTERS: Registry[ImportedModel] = Registry("checkpoint format")


def load_weights(path: Path, nested: Sequence[str] = ()) -> dict[str, torch.Tensor]:
    """A checkpoint's table of tensors, read without running code.

    Args:
        path: The checkpoint file.
        nested: Keys under which a checkpoint may hold the table instead (e.g. ``state_dict``); the first present wins.

    Raises:
        ConversionError: naming the file, if it is not a torch checkpoint holding a table of tensors.
    """
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many kinds (pickle, zip, EOF) for a foreign file
        raise ConversionError(f"{path}: not a readable torch checkpoint ({' '.join(str(error).split())[:200]})") \
            from None
    if isinstance(state, Mapping):
        state = next((state[key] for key in nested if isinstance(state.get(key), Mapping)), state)
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ConversionError(f"{path}: expected a table of named tensors (a state_dict), got {type(state).__name__}")
    return dict(state)


def rename_weights(state: Mapping[str, torch.Tensor], rename: Callable[[str], str | None], path: Path
                   ) -> dict[str, torch.Tensor]:
    """Renames every key with ``rename`` (``None`` for a key the converter does not know: an error).

    Raises:
        ConversionError: naming the file and the first unknown key.
    """
    renamed: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        new = rename(key)
        if new is None:
            raise ConversionError(f"{path}: unexpected parameter '{key}' (not part of the model this converter reads)")
        renamed[new] = value
    return renamed


#: A renaming rule: a key matching the pattern becomes what the function makes of the match.
RenameRule = tuple[re.Pattern[str], Callable[[re.Match[str]], str]]


def apply_rules(rules: Sequence[RenameRule], key: str) -> str | None:
    """The new name of ``key`` by the first rule whose pattern matches it, or None if none does."""
    for pattern, replace in rules:
        match = pattern.match(key)
        if match:
            return replace(match)
    return None


def check_fits(model: torch.nn.Module, state: Mapping[str, torch.Tensor], path: Path) -> None:
    """Checks that ``state`` has exactly the model's parameters, with its shapes.

    Raises:
        ConversionError: naming the file and the first missing, extra or misshaped parameter.
    """
    expected = model.state_dict()
    missing = [key for key in expected if key not in state]
    extra = [key for key in state if key not in expected]
    if missing or extra:
        which = f"lacks '{missing[0]}'" if missing else f"has an extra '{extra[0]}'"
        raise ConversionError(f"{path}: {which} ({len(missing)} missing, {len(extra)} extra parameters): "
                              "not the architecture the options describe")
    for key, tensor in expected.items():
        if tuple(state[key].shape) != tuple(tensor.shape):
            raise ConversionError(f"{path}: parameter '{key}' has shape {tuple(state[key].shape)}, the model needs "
                                  f"{tuple(tensor.shape)}")


def converter_names() -> list[str]:
    """The registered source formats."""
    return CONVERTERS.names()


from speakernet.convert import speechbrain, wespeaker  # noqa: E402,F401  (register their converters)
