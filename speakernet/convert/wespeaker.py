"""WeSpeaker's published models (``avg_model.pt`` + ``config.yaml``) to speakernet's ResNet, ECAPA_TDNN and CAMPPlus.

The source is a WeSpeaker model dir as WeSpeaker publishes it (``avg_model.pt`` and the training's
``config.yaml``), or an ``avg_model.pt`` file: then a ``config.yaml`` beside it is read if there is
one, else the ``model`` option names the architecture. Options override the config:

- ``model``: WeSpeaker's model name (``ResNet34``, ``ECAPA_TDNN_GLOB_c512``, ``CAMPPlus``, ...);
- ``model_args``: WeSpeaker's ``model_args`` (``feat_dim``, ``embed_dim``, ``pooling_func``, ...),
  merged key by key over the config's;
- ``fbank_args``: WeSpeaker's ``dataset_args.fbank_args`` (``num_mel_bins``, ``frame_length``,
  ``frame_shift`` in ms), merged likewise.

Supported: ``ResNet18|34|50|101|152|221|293`` (``pooling_func`` TSTP, TAP or ASTP; ``two_emb_layer``
either way, the second layer's output is the embedding as in WeSpeaker's extraction),
``ECAPA_TDNN_c512|c1024`` and ``ECAPA_TDNN_GLOB_c512|c1024`` (ASTP, TSTP or TAP; ``emb_bn`` either
way) and ``CAMPPlus`` (``config_str`` ``batchnorm-relu``). Their layouts are speakernet's own
models' (see docs REFERENCE.md, "Architectures"); the poolings compute their statistics as
WeSpeaker's do (:data:`speakernet.models.pooling.WESPEAKER_STATS`). Widths that WeSpeaker fixes
in code rather than in ``model_args`` (ResNet's ``m_channels``, ECAPA's aggregation and bottleneck
widths, CAM++'s front-end channels and block depths) are read from the weights' shapes.

The training head (``projection.*``) is dropped and recorded in ``import.json``; any other
parameter the model does not have is an error. The front-end is Kaldi fbank as WeSpeaker extracts
it: torchaudio's Kaldi fbank options with a hamming window, no dither, the waveform on the int16
scale, then per-utterance mean normalisation, without VAD.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any, Mapping

import torch
import yaml

from speakernet.convert import (CONVERTERS, ConversionError, ImportedModel, RenameRule, apply_rules, check_fits,
                                load_weights, rename_weights)
from speakernet.features.fbank import FbankConfig
from speakernet.models.pooling import WESPEAKER_STATS
from speakernet.models.resnet import RESNET_DEPTHS

logger = logging.getLogger(__name__)

CHECKPOINT_NAME = "avg_model.pt"
CONFIG_NAME = "config.yaml"
OPTIONS = ("model", "model_args", "fbank_args")

#: WeSpeaker's ECAPA models: name -> (channels, global-context attention).
ECAPA_MODELS = {"ECAPA_TDNN_c512": (512, False), "ECAPA_TDNN_GLOB_c512": (512, True),
                "ECAPA_TDNN_c1024": (1024, False), "ECAPA_TDNN_GLOB_c1024": (1024, True)}
#: WeSpeaker's ``model_args`` each family takes, with WeSpeaker's defaults (``None``: from the weights, or
#: for a ResNet's or CAM++'s feat_dim 80).
FAMILY_ARGS: dict[str, dict[str, Any]] = {
    "resnet": {"feat_dim": None, "embed_dim": None, "pooling_func": "TSTP", "two_emb_layer": False},
    "ecapa": {"feat_dim": None, "embed_dim": None, "pooling_func": "ASTP", "emb_bn": False},
    "campplus": {"feat_dim": None, "embed_dim": None, "pooling_func": "TSTP", "growth_rate": 32, "bn_size": 4,
                 "init_channels": 128, "config_str": "batchnorm-relu"},
}
POOLINGS = ("TSTP", "TAP", "ASTP")
# WeSpeaker's fbank_args and the defaults of its compute_fbank (dither is the training's: extraction uses 0);
# num_mel_bins defaults to the model's feat_dim.
FBANK_DEFAULTS = {"num_mel_bins": None, "frame_length": 25, "frame_shift": 10, "dither": 1.0}
DEFAULT_FEAT_DIM = 80


def supported_models() -> list[str]:
    """The WeSpeaker model names this converter reads."""
    return [*RESNET_DEPTHS, *ECAPA_MODELS, "CAMPPlus"]


def _family(model: str, where: Path | str) -> str:
    if model in RESNET_DEPTHS:
        return "resnet"
    if model in ECAPA_MODELS:
        return "ecapa"
    if model == "CAMPPlus":
        return "campplus"
    raise ConversionError(f"{where}: WeSpeaker model '{model}' is not supported by the wespeaker converter "
                          f"(it reads: {', '.join(supported_models())})")


_CAM_LAYER = {"linear_local": "local", "linear1": "context_hidden", "linear2": "context_out"}


def _attention_rule(prefix: str) -> RenameRule:
    """WeSpeaker's ASTP (``<prefix>.linear1|2``) to speakernet's (``pooling.attention_hidden|out``)."""
    return (re.compile(rf"^{re.escape(prefix)}\.linear([12])\.(\w+)$"),
            lambda m: f"pooling.attention_{'hidden' if m[1] == '1' else 'out'}.{m[2]}")


# WeSpeaker's parameter names -> speakernet's, per family.
_RULES: dict[str, list[RenameRule]] = {
    "resnet": [
        (re.compile(r"^conv1\.(\w+)$"), lambda m: f"stem_conv.{m[1]}"),
        (re.compile(r"^bn1\.(\w+)$"), lambda m: f"stem_bn.{m[1]}"),
        (re.compile(r"^layer([1-4])\.(\d+)\.(conv[1-3]|bn[1-3])\.(\w+)$"),
         lambda m: f"stages.{int(m[1]) - 1}.{m[2]}.{m[3]}.{m[4]}"),
        (re.compile(r"^layer([1-4])\.(\d+)\.shortcut\.([01])\.(\w+)$"),
         lambda m: f"stages.{int(m[1]) - 1}.{m[2]}.shortcut.{'conv' if m[3] == '0' else 'bn'}.{m[4]}"),
        _attention_rule("pool"),
        (re.compile(r"^seg_1\.(\w+)$"), lambda m: f"embedding.{m[1]}"),
        (re.compile(r"^seg_bn_1\.(\w+)$"), lambda m: f"second_embedding_bn.{m[1]}"),
        (re.compile(r"^seg_2\.(\w+)$"), lambda m: f"second_embedding.{m[1]}"),
    ],
    "ecapa": [
        (re.compile(r"^layer1\.(conv|bn)\.(\w+)$"), lambda m: f"input_layer.{m[1]}.{m[2]}"),
        (re.compile(r"^layer([2-4])\.se_res2block\.([02])\.(conv|bn)\.(\w+)$"),
         lambda m: f"blocks.{int(m[1]) - 2}.body.{m[2]}.{m[3]}.{m[4]}"),
        (re.compile(r"^layer([2-4])\.se_res2block\.1\.(convs|bns)\.(\d+)\.(\w+)$"),
         lambda m: f"blocks.{int(m[1]) - 2}.body.1.convs.{m[3]}.{'conv' if m[2] == 'convs' else 'bn'}.{m[4]}"),
        (re.compile(r"^layer([2-4])\.se_res2block\.3\.linear([12])\.(\w+)$"),
         lambda m: f"blocks.{int(m[1]) - 2}.body.3.{'squeeze' if m[2] == '1' else 'excite'}.{m[3]}"),
        (re.compile(r"^conv\.(\w+)$"), lambda m: f"aggregation.{m[1]}"),
        _attention_rule("pool"),
        (re.compile(r"^bn\.(\w+)$"), lambda m: f"pooling_bn.{m[1]}"),
        (re.compile(r"^linear\.(\w+)$"), lambda m: f"embedding.{m[1]}"),
        (re.compile(r"^bn2\.(\w+)$"), lambda m: f"embedding_bn.{m[1]}"),
    ],
    "campplus": [
        (re.compile(r"^head\.(conv[12]|bn[12])\.(\w+)$"), lambda m: f"head.{m[1]}.{m[2]}"),
        (re.compile(r"^head\.layer([12])\.(\d+)\.(conv[12]|bn[12]|shortcut\.[01])\.(\w+)$"),
         lambda m: f"head.stages.{int(m[1]) - 1}.{m[2]}.{m[3]}.{m[4]}"),
        (re.compile(r"^xvector\.tdnn\.linear\.(\w+)$"), lambda m: f"tdnn.{m[1]}"),
        (re.compile(r"^xvector\.tdnn\.nonlinear\.batchnorm\.(\w+)$"), lambda m: f"tdnn_norm.bn.{m[1]}"),
        (re.compile(r"^xvector\.block(\d+)\.tdnnd(\d+)\.nonlinear([12])\.batchnorm\.(\w+)$"),
         lambda m: f"blocks.{int(m[1]) - 1}.layers.{int(m[2]) - 1}.norm{m[3]}.bn.{m[4]}"),
        (re.compile(r"^xvector\.block(\d+)\.tdnnd(\d+)\.linear1\.(\w+)$"),
         lambda m: f"blocks.{int(m[1]) - 1}.layers.{int(m[2]) - 1}.bottleneck.{m[3]}"),
        (re.compile(r"^xvector\.block(\d+)\.tdnnd(\d+)\.cam_layer\.(linear_local|linear1|linear2)\.(\w+)$"),
         lambda m: f"blocks.{int(m[1]) - 1}.layers.{int(m[2]) - 1}.cam.{_CAM_LAYER[m[3]]}.{m[4]}"),
        (re.compile(r"^xvector\.transit(\d+)\.nonlinear\.batchnorm\.(\w+)$"),
         lambda m: f"transits.{int(m[1]) - 1}.norm.bn.{m[2]}"),
        (re.compile(r"^xvector\.transit(\d+)\.linear\.(\w+)$"), lambda m: f"transits.{int(m[1]) - 1}.conv.{m[2]}"),
        (re.compile(r"^xvector\.out_nonlinear\.batchnorm\.(\w+)$"), lambda m: f"out_norm.bn.{m[1]}"),
        _attention_rule("xvector.stats"),
        (re.compile(r"^xvector\.dense\.linear\.(\w+)$"), lambda m: f"embedding.{m[1]}"),
        (re.compile(r"^xvector\.dense\.nonlinear\.batchnorm\.(\w+)$"), lambda m: f"embedding_bn.{m[1]}"),
    ],
}


def read_config(path: Path) -> dict[str, Any]:
    """A WeSpeaker ``config.yaml`` as a dict.

    Raises:
        ConversionError: naming the file, if it is not a YAML mapping.
    """
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        raise ConversionError(f"{path}: not a YAML file ({' '.join(str(error).split())[:200]})") from None
    if not isinstance(document, dict):
        raise ConversionError(f"{path}: expected a mapping (WeSpeaker's training config), "
                              f"got {type(document).__name__}")
    return document


def _mapping(value: Any, what: str, where: Path | str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConversionError(f"{where}: {what} must be a mapping, got {value!r}")
    return dict(value)


def _shape(state: Mapping[str, torch.Tensor], key: str, path: Path, model: str) -> tuple[int, ...]:
    if key not in state:
        raise ConversionError(f"{path}: has no '{key}': not a WeSpeaker {model} checkpoint")
    return tuple(state[key].shape)


def _count(state: Mapping[str, torch.Tensor], template: str) -> int:
    """How many consecutive indices from 1 (or 0 if the template's first index is 0) ``template`` has keys for."""
    start = 0 if template.format(0) in state else 1
    index = start
    while template.format(index) in state:
        index += 1
    return index - start


def _pooling(pooling_func: str, where: Path | str) -> str:
    if pooling_func not in POOLINGS:
        raise ConversionError(f"{where}: pooling_func '{pooling_func}' is not supported by the wespeaker converter "
                              f"(it reads: {', '.join(POOLINGS)}; WeSpeaker's other poolings differ from speakernet's)")
    return pooling_func


def _pooling_args(pooling: str, attention: tuple[int, ...] | None = None) -> dict[str, Any] | None:
    """speakernet's ``pooling_args`` for WeSpeaker's pooling; ``attention``: the shape of ASTP's first layer.

    WeSpeaker's ResNets and CAM++ build ASTP without global context.
    """
    if pooling == "TAP":
        return None
    if pooling == "ASTP" and attention is not None:
        return {"bottleneck_dim": attention[0], "global_context": False, **WESPEAKER_STATS}
    return dict(WESPEAKER_STATS)


def _model_args(model: str, family: str, ws_args: dict[str, Any], state: Mapping[str, torch.Tensor], path: Path
                ) -> tuple[str, dict[str, Any], int, dict[str, Any]]:
    """speakernet's model, its arguments and feature dimension, and the widths the weights set.

    Returns:
        ``(model name, model_args, feat_dim, widths)``; ``widths`` holds, for each width that differs from
        the one WeSpeaker's code fixes, ``{"wespeaker": fixed, "weights": actual}``.

    Raises:
        ConversionError: for an unsupported pooling or CAM++ variant, or weights lacking a key, naming the file.
    """
    pooling = _pooling(ws_args["pooling_func"], path)
    feat_dim = ws_args["feat_dim"]
    embed_dim = ws_args["embed_dim"]
    widths: dict[str, Any] = {}

    def from_weights(name: str, fixed: int, actual: int) -> int:
        if actual != fixed:
            widths[name] = {"wespeaker": fixed, "weights": actual}
        return actual

    if family == "resnet":
        m_channels = from_weights("m_channels", 32, _shape(state, "conv1.weight", path, model)[0])
        args = {"embed_dim": embed_dim or _shape(state, "seg_1.weight", path, model)[0], "m_channels": m_channels,
                "pooling": pooling, "two_emb_layer": bool(ws_args["two_emb_layer"]),
                "pooling_args": _pooling_args(pooling, _shape(state, "pool.linear1.weight", path, model)
                                              if pooling == "ASTP" else None)}
        return model, args, int(feat_dim or DEFAULT_FEAT_DIM), widths
    if family == "ecapa":
        name_channels, global_context = ECAPA_MODELS[model]
        first = _shape(state, "layer1.conv.weight", path, model)
        channels = from_weights("channels", name_channels, first[0])
        width = _shape(state, "layer2.se_res2block.1.convs.0.weight", path, model)[0]
        args = {"channels": channels, "embed_dim": embed_dim or _shape(state, "linear.weight", path, model)[0],
                "scale": from_weights("scale", 8, channels // width),
                "se_bottleneck": from_weights("se_bottleneck", 128, _shape(
                    state, "layer2.se_res2block.3.linear1.weight", path, model)[0]),
                "aggregation_channels": from_weights("aggregation_channels", 1536,
                                                     _shape(state, "conv.weight", path, model)[0]),
                "global_context": global_context, "dilations": [2, 3, 4], "embed_bn": bool(ws_args["emb_bn"]),
                "pooling": pooling}
        if pooling == "ASTP":  # ECAPA_TDNN passes its attention's width and context to its ASTP itself
            args["attention_bottleneck"] = from_weights("attention_bottleneck", 128,
                                                        _shape(state, "pool.linear1.weight", path, model)[0])
        args["pooling_args"] = _pooling_args(pooling)
        return "ECAPA_TDNN", args, int(feat_dim or first[1]), widths
    if ws_args["config_str"] != "batchnorm-relu":
        raise ConversionError(f"{path}: CAMPPlus with config_str '{ws_args['config_str']}' is not supported "
                              "(speakernet's CAMPPlus is batchnorm-relu throughout, as WeSpeaker's recipes)")
    block_layers = [_count(state, f"xvector.block{block}.tdnnd{{}}.linear1.weight") for block in (1, 2, 3)]
    if 0 in block_layers or "xvector.block4.tdnnd1.linear1.weight" in state:
        raise ConversionError(f"{path}: expected three CAM dense blocks (xvector.block1..3), found layers "
                              f"{block_layers}: not a WeSpeaker CAMPPlus checkpoint")
    for index, (fixed, actual) in enumerate(zip((12, 24, 16), block_layers)):
        from_weights(f"block{index + 1}_layers", fixed, actual)
    args = {"embed_dim": embed_dim or _shape(state, "xvector.dense.linear.weight", path, model)[0],
            "growth_rate": ws_args["growth_rate"], "bn_size": ws_args["bn_size"],
            "init_channels": ws_args["init_channels"], "pooling": pooling,
            "pooling_args": _pooling_args(pooling, _shape(state, "xvector.stats.linear1.weight", path, model)
                                          if pooling == "ASTP" else None),
            "seg_len": 100, "block_layers": block_layers, "block_dilations": [1, 2, 2],
            "fcm_channels": from_weights("fcm_channels", 32, _shape(state, "head.conv1.weight", path, model)[0]),
            "fcm_blocks": [_count(state, f"head.layer{stage}.{{}}.conv1.weight") for stage in (1, 2)]}
    return "CAMPPlus", args, int(feat_dim or DEFAULT_FEAT_DIM), widths


def _frontend(config: Mapping[str, Any], fbank_options: Mapping[str, Any], feat_dim: int, where: Path | str
              ) -> tuple[FbankConfig, dict[str, Any]]:
    """The Kaldi fbank of WeSpeaker's extraction, and WeSpeaker's fbank options as given.

    Raises:
        ConversionError: for a front-end or normalisation speakernet does not reproduce.
    """
    dataset = _mapping(config.get("dataset_args"), "dataset_args", where)
    frontend = dataset.get("frontend", "fbank")
    if frontend != "fbank":
        raise ConversionError(f"{where}: dataset_args.frontend '{frontend}' is not supported (only WeSpeaker's "
                              "Kaldi fbank front-end is)")
    cmvn_args = _mapping(dataset.get("cmvn_args"), "dataset_args.cmvn_args", where)
    if not dataset.get("cmvn", True) or not cmvn_args.get("norm_mean", True) or cmvn_args.get("norm_var", False):
        raise ConversionError(f"{where}: only per-utterance mean normalisation is supported (dataset_args.cmvn "
                              f"{dataset.get('cmvn', True)}, cmvn_args {cmvn_args})")
    fbank = {**FBANK_DEFAULTS, **_mapping(dataset.get("fbank_args"), "dataset_args.fbank_args", where),
             **fbank_options}
    unknown = sorted(set(fbank) - set(FBANK_DEFAULTS))
    if unknown:
        raise ConversionError(f"{where}: unknown fbank_args {', '.join(unknown)} (WeSpeaker's are: "
                              f"{', '.join(FBANK_DEFAULTS)})")
    fbank["num_mel_bins"] = fbank["num_mel_bins"] or feat_dim
    if int(fbank["num_mel_bins"]) != feat_dim:
        raise ConversionError(f"{where}: fbank_args.num_mel_bins is {fbank['num_mel_bins']}, but the model takes "
                              f"feat_dim {feat_dim}")
    # WeSpeaker extracts with dither 0 whatever the training used (bin/extract.py).
    return FbankConfig(num_mel_bins=feat_dim, frame_length_ms=float(fbank["frame_length"]),
                       frame_shift_ms=float(fbank["frame_shift"]),
                       sample_rate=int(dataset.get("resample_rate", 16000)), dither=0.0, window_type="hamming"), fbank


@CONVERTERS.register("wespeaker")
def convert_wespeaker(source: Path, options: Mapping[str, Any] | None = None) -> ImportedModel:
    """Converts a WeSpeaker ResNet, ECAPA-TDNN or CAM++ model.

    Args:
        source: A WeSpeaker model dir (``avg_model.pt`` + ``config.yaml``), or the checkpoint file.
        options: ``model``, ``model_args``, ``fbank_args`` (see the module's docstring), over the config's.

    Returns:
        The model as speakernet's ``ResNet*``, ``ECAPA_TDNN`` or ``CAMPPlus`` with WeSpeaker's front-end.

    Raises:
        ConversionError: for a missing file, an unsupported model or option, or weights of another layout,
            naming the file and the key.
    """
    from speakernet.models import build_model

    options = dict(options or {})
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise ConversionError(f"wespeaker converter: unknown option(s) {', '.join(unknown)} "
                              f"(it takes: {', '.join(OPTIONS)})")
    source = Path(source)
    checkpoint = source / CHECKPOINT_NAME if source.is_dir() else source
    if not checkpoint.is_file():
        raise ConversionError(f"{checkpoint} does not exist (a WeSpeaker model dir holds {CHECKPOINT_NAME} and "
                              f"{CONFIG_NAME})")
    config_path = checkpoint.parent / CONFIG_NAME
    config = read_config(config_path) if config_path.is_file() else {}
    sources = [checkpoint, config_path] if config else [checkpoint]
    where = config_path if config else "options"
    model = options.get("model", config.get("model"))
    if model is None:
        raise ConversionError(f"{checkpoint}: no {CONFIG_NAME} beside it: name the WeSpeaker model with "
                              f"--option model=NAME (one of: {', '.join(supported_models())})")
    family = _family(str(model), where)
    ws_args = {**_mapping(config.get("model_args"), "model_args", where),
               **_mapping(options.get("model_args"), "the model_args option", "options")}
    unknown = sorted(set(ws_args) - set(FAMILY_ARGS[family]))
    if unknown:
        raise ConversionError(f"{where}: model_args {', '.join(unknown)} not supported for {model} (it takes: "
                              f"{', '.join(FAMILY_ARGS[family])})")
    ws_args = {**FAMILY_ARGS[family], **ws_args}

    state = load_weights(checkpoint, nested=("state_dict", "model"))
    dropped = {key: list(value.shape) for key, value in state.items() if key.startswith("projection.")}
    state = {key: value for key, value in state.items() if key not in dropped}
    if family == "campplus":
        # WeSpeaker's CAMPPlus holds its pooling twice (``pool`` and ``xvector.stats``): keep one.
        for key in [key for key in state if key.startswith("pool.")]:
            twin = "xvector.stats." + key[len("pool."):]
            if twin not in state or not torch.equal(state[twin], state[key]):
                raise ConversionError(f"{checkpoint}: unexpected parameter '{key}' (not the twin of '{twin}')")
            del state[key]
    name, model_args, feat_dim, widths = _model_args(str(model), family, ws_args, state, checkpoint)
    renamed = rename_weights(state, lambda key: apply_rules(_RULES[family], key), checkpoint)
    if family == "campplus" and "embedding.weight" in renamed:
        renamed["embedding.weight"] = renamed["embedding.weight"].squeeze(-1)  # WeSpeaker's 1x1 conv, a linear
    try:
        built = build_model(name, feat_dim=feat_dim, **model_args)
    except (ValueError, TypeError) as error:
        raise ConversionError(f"{where}: {model} with {ws_args}: {error}") from None
    check_fits(built, renamed, checkpoint)
    frontend, fbank_args = _frontend(config, _mapping(options.get("fbank_args"), "the fbank_args option", "options"),
                                     feat_dim, where)
    if widths:
        logger.warning("%s: widths read from the weights differ from WeSpeaker's %s: %s", checkpoint, model, widths)
    notes: dict[str, Any] = {"wespeaker": {"model": model, "model_args": ws_args, "fbank_args": fbank_args}}
    if widths:
        notes["wespeaker"]["widths_from_weights"] = widths
    if dropped:
        classes = dropped.get("projection.weight", [None])[0]
        notes["dropped"] = {"parameters": dropped, "why": "WeSpeaker's training head (projection), not part of "
                            "the embedding model", "training_classes": classes}
        logger.info("%s: dropped the training head (%s)", checkpoint, ", ".join(dropped))
    return ImportedModel(model=name, model_args=model_args, feat_dim=feat_dim, state=renamed, frontend=frontend,
                         use_vad=False, source_files=sources, notes=notes)
