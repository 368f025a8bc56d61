"""SpeechBrain's ECAPA-TDNN (``speechbrain.lobes.models.ECAPA_TDNN``) to :class:`ECAPA_TDNN_SB`.

The source is a SpeechBrain model dir (``embedding_model.ckpt``, and ``hyperparams.yaml`` when
present, as in spkrec-ecapa-voxceleb) or the ``embedding_model.ckpt`` file itself. Widths, kernels,
Res2 scale, SE and attention sizes and the embedding size are read from the weights' shapes;
the dilations are not in the weights, so they come from ``hyperparams.yaml`` (its
``embedding_model`` entry), else from the published recipe (1, 2, 3, 4, 1), and an explicit
``dilations`` option wins over both. The front-end is SpeechBrain's ``Fbank`` with the
checkpoint's ``n_mels``, without VAD (SpeechBrain extracts from the whole recording).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any, Mapping

import torch
import yaml

from speakernet.convert import (CONVERTERS, ConversionError, ImportedModel, apply_rules, check_fits, load_weights,
                                rename_weights)
from speakernet.features.sb_fbank import SpeechBrainFbankConfig

logger = logging.getLogger(__name__)

CHECKPOINT_NAME = "embedding_model.ckpt"
HPARAMS_NAME = "hyperparams.yaml"
PUBLISHED_DILATIONS = (1, 2, 3, 4, 1)

# SpeechBrain's module paths -> ECAPA_TDNN_SB's (its Conv1d/BatchNorm1d wrappers add a '.conv'/'.norm' level;
# its TDNN blocks' '.norm' is ConvReluBn's '.bn').
_LAYER = r"(?P<layer>conv|norm)\.(?P=layer)\."
_RULES = [
    (re.compile(rf"^blocks\.0\.{_LAYER}(\w+)$"), lambda m: f"input_layer.{m[1]}.{m[2]}"),
    (re.compile(rf"^blocks\.(\d+)\.(tdnn1|tdnn2)\.{_LAYER}(\w+)$"),
     lambda m: f"blocks.{int(m[1]) - 1}.{m[2]}.{m[3]}.{m[4]}"),
    (re.compile(rf"^blocks\.(\d+)\.res2net_block\.blocks\.(\d+)\.{_LAYER}(\w+)$"),
     lambda m: f"blocks.{int(m[1]) - 1}.res2.convs.{m[2]}.{m[3]}.{m[4]}"),
    (re.compile(r"^blocks\.(\d+)\.se_block\.(conv1|conv2)\.conv\.(\w+)$"),
     lambda m: f"blocks.{int(m[1]) - 1}.se.{'squeeze' if m[2] == 'conv1' else 'excite'}.{m[3]}"),
    (re.compile(r"^blocks\.(\d+)\.shortcut\.conv\.(\w+)$"), lambda m: f"blocks.{int(m[1]) - 1}.shortcut.{m[2]}"),
    (re.compile(rf"^mfa\.{_LAYER}(\w+)$"), lambda m: f"aggregation.{m[1]}.{m[2]}"),
    (re.compile(rf"^asp\.tdnn\.{_LAYER}(\w+)$"), lambda m: f"pooling.attention_hidden.{m[1]}.{m[2]}"),
    (re.compile(r"^asp\.conv\.conv\.(\w+)$"), lambda m: f"pooling.attention_out.{m[1]}"),
    (re.compile(r"^asp_bn\.norm\.(\w+)$"), lambda m: f"pooling_bn.{m[1]}"),
    (re.compile(r"^fc\.conv\.(\w+)$"), lambda m: f"embedding.{m[1]}"),
]


def _rename(key: str) -> str | None:
    renamed = apply_rules(_RULES, key)
    return None if renamed is None else re.sub(r"\.norm\.", ".bn.", renamed)


class _TaggedLoader(yaml.SafeLoader):
    """Reads HyperPyYAML (``!new:``, ``!ref``, ``!name:`` tags) as plain YAML: tags are dropped, values kept."""


def _untagged(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Any:
    if isinstance(node, yaml.MappingNode):
        return loader.construct_mapping(node, deep=True)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node, deep=True)
    return loader.construct_scalar(node)


_TaggedLoader.add_multi_constructor("!", _untagged)


def read_hparams(path: Path) -> dict[str, Any]:
    """The ``embedding_model`` arguments and ``n_mels`` of a SpeechBrain ``hyperparams.yaml`` (empty if absent).

    Raises:
        ConversionError: naming the file, if it is not YAML.
    """
    try:
        document = yaml.load(path.read_text(encoding="utf-8"), Loader=_TaggedLoader)  # noqa: S506 (a safe loader)
    except yaml.YAMLError as error:
        raise ConversionError(f"{path}: not a YAML file ({' '.join(str(error).split())[:200]})") from None
    if not isinstance(document, dict):
        return {}
    model = document.get("embedding_model")
    return {"model": model if isinstance(model, dict) else {}, "n_mels": document.get("n_mels")}


def _shape(state: Mapping[str, torch.Tensor], key: str, path: Path) -> tuple[int, ...]:
    if key not in state:
        raise ConversionError(f"{path}: has no '{key}': not a SpeechBrain ECAPA-TDNN embedding_model checkpoint")
    return tuple(state[key].shape)


def infer_model_args(state: Mapping[str, torch.Tensor], path: Path) -> tuple[dict[str, Any], int]:
    """ECAPA_TDNN_SB's arguments (dilations excepted) and the feature dimension, from the shapes of the weights.

    Raises:
        ConversionError: naming the file and the key it lacks.
    """
    first = _shape(state, "blocks.0.conv.conv.weight", path)
    num_blocks = 1
    while f"blocks.{num_blocks}.tdnn1.conv.conv.weight" in state:
        num_blocks += 1
    channels, kernel_sizes = [first[0]], [first[2]]
    for block in range(1, num_blocks):
        channels.append(_shape(state, f"blocks.{block}.tdnn1.conv.conv.weight", path)[0])
        kernel_sizes.append(_shape(state, f"blocks.{block}.res2net_block.blocks.0.conv.conv.weight", path)[2])
    aggregation = _shape(state, "mfa.conv.conv.weight", path)
    channels.append(aggregation[0])
    kernel_sizes.append(aggregation[2])
    scale = 1
    while f"blocks.1.res2net_block.blocks.{scale - 1}.conv.conv.weight" in state:
        scale += 1
    attention = _shape(state, "asp.tdnn.conv.conv.weight", path)
    return {
        "channels": channels,
        "kernel_sizes": kernel_sizes,
        "res2net_scale": scale,
        "se_channels": _shape(state, "blocks.1.se_block.conv1.conv.weight", path)[0],
        "attention_channels": attention[0],
        "global_context": attention[1] == 3 * aggregation[0],
        "embed_dim": _shape(state, "fc.conv.weight", path)[0],
    }, first[1]


@CONVERTERS.register("speechbrain")
def convert_speechbrain(source: Path, options: Mapping[str, Any] | None = None) -> ImportedModel:
    """Converts SpeechBrain's ECAPA-TDNN embedding model.

    Args:
        source: A SpeechBrain model dir, or its ``embedding_model.ckpt``.
        options: ``dilations`` (a list, one per layer) to override the dilations of ``hyperparams.yaml``.

    Returns:
        The model as ``ECAPA_TDNN_SB`` with SpeechBrain's front-end.

    Raises:
        ConversionError: on a missing file or weights of another layout, naming the file and key.
    """
    from speakernet.models import build_model

    options = dict(options or {})
    source = Path(source)
    checkpoint = source / CHECKPOINT_NAME if source.is_dir() else source
    if not checkpoint.is_file():
        raise ConversionError(f"{checkpoint} does not exist (a SpeechBrain model dir holds {CHECKPOINT_NAME})")
    sources = [checkpoint]
    state = load_weights(checkpoint)
    model_args, feat_dim = infer_model_args(state, checkpoint)
    hparams_path = checkpoint.parent / HPARAMS_NAME
    hparams = read_hparams(hparams_path) if hparams_path.is_file() else {"model": {}, "n_mels": None}
    if hparams_path.is_file():
        sources.append(hparams_path)
    dilations = options.pop("dilations", None) or hparams["model"].get("dilations")
    if dilations is None:
        logger.warning("%s: no %s beside it: using the published dilations %s", checkpoint, HPARAMS_NAME,
                       list(PUBLISHED_DILATIONS))
        dilations = list(PUBLISHED_DILATIONS)
    if options:
        raise ConversionError(f"speechbrain converter: unknown option(s) {', '.join(sorted(options))} "
                              "(it takes: dilations)")
    model_args["dilations"] = [int(d) for d in dilations]
    if len(model_args["dilations"]) != len(model_args["channels"]):
        raise ConversionError(f"{checkpoint}: {len(model_args['channels'])} layers but {len(dilations)} dilations "
                              f"({dilations})")
    renamed = rename_weights(state, _rename, checkpoint)
    renamed["embedding.weight"] = renamed["embedding.weight"].squeeze(-1)
    model = build_model("ECAPA_TDNN_SB", feat_dim=feat_dim, **model_args)
    check_fits(model, renamed, checkpoint)
    n_mels = hparams.get("n_mels") or feat_dim
    if int(n_mels) != feat_dim:
        raise ConversionError(f"{hparams_path}: n_mels is {n_mels}, but the weights take {feat_dim} features")
    return ImportedModel(model="ECAPA_TDNN_SB", model_args=model_args, feat_dim=feat_dim, state=renamed,
                         frontend=SpeechBrainFbankConfig(num_mel_bins=feat_dim), use_vad=False, source_files=sources)
