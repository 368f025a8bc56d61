"""Recipe configuration: YAML file + dotted command-line overrides, validated strictly.

A config names each component by its registered name plus its own arguments
(``model: ECAPA_TDNN`` + ``model_args: {...}``). Every key is checked against the schema
below (or, for ``*_args``, against the component's constructor signature), so a typo is an
error that lists the valid choices instead of a silently ignored setting.
"""

from __future__ import annotations

import copy
import inspect
from pathlib import Path
from typing import Any, Callable, Mapping

import yaml

from speakernet.utils.fileio import PathLike, atomic_write


class ConfigError(ValueError):
    """An invalid key, value or override in a recipe config."""


#: The schema: every section and key a config may hold, with its default.
DEFAULTS: dict[str, Any] = {
    "model": "ECAPA_TDNN",
    "model_args": {},
    "head": "AAMSoftmax",
    "head_args": {},
    "margin_schedule": {
        "enabled": True,
        "increase_start_epoch": 1,  # 1-based epoch in which the margin starts to rise from 0
        "fix_start_epoch": 1,  # 1-based first epoch with the final margin (1, 1: fixed from the start)
    },
    "optimizer": "SGD",
    "optimizer_args": {"lr": 0.1},
    "scheduler": "WarmupExponential",
    "scheduler_args": {},
    "data": {
        "feat_dim": 80,
        "crop_frames": 200,  # training crop length in frames (10 ms each)
        "min_frames": 100,  # shorter utterances (after VAD) are not used for training
        "use_vad": True,  # drop unvoiced frames (vad.scp) before cropping
        "sampler": "random",  # random | speaker_balanced
        "batch_size": 64,  # utterances per batch and process
        "speakers_per_batch": 16,  # P, for the speaker_balanced sampler
        "utts_per_speaker": 4,  # K, for the speaker_balanced sampler
        # features (feats.scp, made offline) | audio (wav.scp, fbank on the fly) | shards (shards.list of
        # make_shards: the audio in tar shards, fbank on the fly)
        "source": "features",
        # data.source=audio: the front-end's options (speakernet.features.fbank.FbankConfig), the offline
        # feature stage's defaults for those not given; num_mel_bins defaults to data.feat_dim
        "frontend": {},
        "speed_perturb": False,  # data.source=audio: speed 0.9/1.0/1.1 per item, each speed its own classes
        # data.source=audio: online augmentation, the Augmenter's section (speakernet.data.augment.augmenter:
        # probability, reverb_probability, reverb/noise/speech/babble/music with their source dirs); {}: off
        "augment": {},
        "num_workers": 0,  # DataLoader worker processes (the crops are the same with any number)
        "shard_lanes": 4,  # data.source=shards: streams of shards per process (data.num_workers must divide it)
        "shuffle_buffer": 1000,  # data.source=shards: shuffle-buffer size of a lane, in utterances
        "prefetch_factor": 2,  # batches each worker loads ahead (with num_workers > 0)
        # SpecAugment on the normalised crops (speakernet.data.spec_augment); probability 0: off
        "spec_augment": {"probability": 0.0, "freq_masks": 1, "freq_width": 8, "time_masks": 1, "time_width": 10},
    },
    "training": {
        "epochs": 10,
        "max_steps": 0,  # stop after this many optimiser steps in total (0: run all epochs)
        "grad_clip": 5.0,  # max gradient norm (0: off)
        "amp": True,  # mixed precision, used on CUDA only
        "seed": 42,
        "log_interval": 20,  # steps between log lines
        "checkpoint_interval": 0,  # steps between mid-epoch checkpoints (0: once per epoch)
        "keep_checkpoints": 5,  # newest epoch checkpoints to keep (0: all)
        "num_threads": 0,  # torch intra-op threads per process (0: OMP_NUM_THREADS if set, else CPUs / processes)
        # Start from another training's weights (a checkpoint file, or an exp dir for its latest):
        # large-margin fine-tuning, or a second stage such as triplet fine-tuning (see Trainer)
        "init_from": "",
        "init_head": True,  # also take its training head (same speakers); false: a new head
        # Epochs (a fraction is fine) in which only the head learns, the model frozen (its batch norms
        # too): a new head for a pretrained model first fits the model before it changes the model
        "freeze_model_epochs": 0.0,
        # Batch norms keep their running statistics (inference mode) while the rest trains; their scales and
        # shifts still learn. For fine-tuning a pretrained model on little data, whose statistics would drift.
        "freeze_norm_stats": False,
    },
    "extract": {
        "mode": "full",  # full | multicrop
        "num_crops": 5,
        "crop_frames": 300,
        "batch_size": 32,
        "max_frames": 6000,  # full mode: longer utterances in chunks of at most this, averaged (0: never)
    },
}

#: Mappings taken as a whole, their keys checked where they are used (:func:`validate_data`).
FREE_MAPPINGS = {"data.frontend", "data.augment"}

#: Sections whose keys are constructor arguments of the named component.
COMPONENT_ARGS = {
    "model_args": "model",
    "head_args": "head",
    "optimizer_args": "optimizer",
    "scheduler_args": "scheduler",
}


def _merge(base: dict[str, Any], update: Mapping[str, Any], where: str = "") -> dict[str, Any]:
    merged = copy.deepcopy(base)
    for key, value in update.items():
        path = f"{where}{key}"
        if key not in base:
            raise ConfigError(f"unknown config key '{path}'; valid keys here: {', '.join(sorted(base))}")
        if key in COMPONENT_ARGS or path in FREE_MAPPINGS:
            if not isinstance(value, Mapping):
                raise ConfigError(f"config key '{path}' must be a mapping, got {value!r}")
            merged[key] = dict(value)  # a component's args replace the defaults as a whole
        elif isinstance(base[key], dict):
            if not isinstance(value, Mapping):
                raise ConfigError(f"config key '{path}' must be a mapping, got {value!r}")
            merged[key] = _merge(base[key], value, f"{path}.")
        else:
            merged[key] = _coerce(value, base[key], path)
    return merged


#: Keys with a fixed set of values (checked when the config is loaded, not when first used).
CHOICES = {
    "extract.mode": ("full", "multicrop"),
    "data.sampler": ("random", "speaker_balanced"),
    "data.source": ("features", "audio", "shards"),
}


#: Numeric keys with a valid range ``(lowest, highest)``, either end None for unbounded (inclusive).
RANGES: dict[str, tuple[float | None, float | None]] = {
    "margin_schedule.increase_start_epoch": (1, None),
    "margin_schedule.fix_start_epoch": (1, None),
    "data.feat_dim": (1, None),
    "data.crop_frames": (1, None),
    "data.min_frames": (1, None),
    "data.batch_size": (1, None),
    "data.speakers_per_batch": (1, None),
    "data.utts_per_speaker": (1, None),
    "data.num_workers": (0, None),
    "data.shard_lanes": (1, None),
    "data.shuffle_buffer": (1, None),
    "data.prefetch_factor": (1, None),
    "data.spec_augment.probability": (0.0, 1.0),
    "data.spec_augment.freq_masks": (0, None),
    "data.spec_augment.freq_width": (0, None),
    "data.spec_augment.time_masks": (0, None),
    "data.spec_augment.time_width": (0, None),
    "training.epochs": (1, None),
    "training.max_steps": (0, None),
    "training.grad_clip": (0.0, None),
    "training.log_interval": (1, None),
    "training.checkpoint_interval": (0, None),
    "training.keep_checkpoints": (0, None),
    "training.num_threads": (0, None),
    "training.freeze_model_epochs": (0.0, None),
    "extract.num_crops": (1, None),
    "extract.crop_frames": (1, None),
    "extract.batch_size": (1, None),
    "extract.max_frames": (0, None),
}


def _coerce(value: Any, default: Any, path: str) -> Any:
    value = _coerce_type(value, default, path)
    if path in CHOICES and value not in CHOICES[path]:
        raise ConfigError(f"config key '{path}' must be one of: {', '.join(CHOICES[path])}; got {value!r}")
    low, high = RANGES.get(path, (None, None))
    if (low is not None and value < low) or (high is not None and value > high):
        bound = f"between {low} and {high}" if low is not None and high is not None else (
            f">= {low}" if low is not None else f"<= {high}")
        raise ConfigError(f"config key '{path}' must be {bound}, got {value!r}")
    return value


def _check_arg_type(value: Any, default: Any, path: str) -> None:
    """A component argument against the type of its default (numbers stay as given: a float may
    replace an integer default, e.g. ``scale: 32.5``)."""
    if value is None:  # null: "derive it" for the arguments that allow it; the constructor decides
        return
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"config key '{path}' must be true or false, got {value!r}")
    elif isinstance(default, (int, float)):
        if not number:
            raise ConfigError(f"config key '{path}' must be a number, got {value!r}")
    elif isinstance(default, str) and not isinstance(value, str):
        raise ConfigError(f"config key '{path}' must be a string, got {value!r}")


def _coerce_type(value: Any, default: Any, path: str) -> Any:
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"config key '{path}' must be true or false, got {value!r}")
        return value
    if isinstance(default, int) and not isinstance(default, bool):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value:
            raise ConfigError(f"config key '{path}' must be an integer, got {value!r}")
        return int(value)
    if isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"config key '{path}' must be a number, got {value!r}")
        return float(value)
    if isinstance(default, str) and not isinstance(value, str):
        raise ConfigError(f"config key '{path}' must be a string, got {value!r}")
    return value


def parse_override(override: str) -> dict[str, Any]:
    """Turns ``a.b.c=value`` into ``{"a": {"b": {"c": value}}}``; the value is parsed as YAML.

    Raises:
        ConfigError: if there is no ``=`` or the key is empty.
    """
    if "=" not in override:
        raise ConfigError(f"override '{override}' must look like key.sub=value")
    dotted, raw = override.split("=", 1)
    keys = dotted.strip().split(".")
    if not all(keys):
        raise ConfigError(f"override '{override}' has an empty key")
    try:
        value: Any = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as error:
        raise ConfigError(f"override '{override}': value is not valid YAML: {error}") from error
    for key in reversed(keys):
        value = {key: value}
    return value


def _deep_update(base: dict[str, Any], update: Mapping[str, Any]) -> None:
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            _deep_update(base[key], value)
        else:
            base[key] = value


def _read_yaml(path: PathLike) -> dict[str, Any]:
    """A config file's YAML mapping, as written (no defaults, no checks of its keys).

    Raises:
        ConfigError: on an unreadable file, invalid YAML (one line: file, line and column, the problem)
            or a top level that is not a mapping.
    """
    try:
        with open(path, encoding="utf-8") as handle:
            raw = yaml.safe_load(handle) or {}
    except OSError as error:
        raise ConfigError(f"cannot read config {path}: {error}") from error
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark is not None else str(path)
        problem = " ".join(str(getattr(error, "problem", None) or error).split())
        raise ConfigError(f"config {where}: not valid YAML: {problem}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"config {path} must be a YAML mapping at the top level")
    return raw


def load_config(path: PathLike | None, overrides: list[str] | None = None,
                check_components: bool = True) -> dict[str, Any]:
    """Reads a YAML config, applies dotted overrides and validates the result.

    Args:
        path: YAML file (None: defaults only).
        overrides: ``key.sub=value`` strings applied after the file.
        check_components: Check the component names and arguments against their registries, which
            imports the models (and torch, seconds); False for a quick look at the other keys.

    Returns:
        The resolved config: every schema key present, component names checked against
        their registries and component args against the constructors.

    Raises:
        ConfigError: on an unreadable file, unknown key, wrong type, unknown component
            name or an argument the component does not take.
    """
    raw = _read_yaml(path) if path is not None else {}
    for override in overrides or []:
        update = parse_override(override)
        for args_key, name_key in COMPONENT_ARGS.items():
            # Another component (e.g. scheduler=Constant over the file's WarmupExponential): the
            # file's arguments were for the old one, so they go unless the overrides give new ones.
            if name_key in update and update[name_key] != raw.get(name_key, DEFAULTS[name_key]) \
                    and args_key not in update:
                raw.pop(args_key, None)
        _deep_update(raw, update)
    try:
        config = _merge(DEFAULTS, raw)
        if check_components:
            validate_components(config)
        validate_data(config)
    except ConfigError as error:
        source = str(path or "config") + (" + command-line overrides" if overrides else "")
        raise ConfigError(f"{source}: {error}") from None
    return config


def relocated_source_overrides(path: PathLike, data: str, default_data: str = "data") -> list[str]:
    """Overrides that move a recipe conf's augmentation sources from the default ``--data`` to ``data``.

    A recipe's conf names the source dirs its stage 0 prepares relative to the recipe dir, under the default
    data dir (``data/sources/musan_noise``); a run with ``--data DIR`` has them under ``DIR``. Dirs outside
    ``default_data`` (absolute, or the user's own) are kept.

    Args:
        path: The conf (YAML; read as it is, the training validates it).
        data: The run's data dir.
        default_data: The data dir the conf's paths assume.

    Returns:
        ``data.augment.<kind>.dirs=[...]`` overrides, one per kind whose dirs move (none when ``data`` is
        ``default_data``).

    Raises:
        ConfigError: on an unreadable conf (as :func:`load_config` says it), or a moved dir that an override
            cannot carry (space, comma, bracket).
    """
    data_section = _read_yaml(path).get("data")
    augment = data_section.get("augment") if isinstance(data_section, dict) else None
    overrides = []
    for kind, section in (augment if isinstance(augment, dict) else {}).items():
        dirs = section.get("dirs") if isinstance(section, dict) else None
        if not isinstance(dirs, list):
            continue
        moved = [data + str(d)[len(default_data):] if str(d) == default_data or str(d).startswith(default_data + "/")
                 else str(d) for d in dirs]
        if moved == [str(d) for d in dirs]:
            continue
        bad = next((d for d in moved if any(c in d for c in " \t,[]")), None)
        if bad is not None:
            raise ConfigError(f"{path}: data.augment.{kind}.dirs: '{bad}' cannot be passed as an override (space, "
                              "comma or bracket): choose a --data without them")
        overrides.append(f"data.augment.{kind}.dirs=[{','.join(moved)}]")
    return overrides


def build_component(config: Mapping[str, Any], name_key: str, **trainer_args: Any) -> Any:
    """Builds the component a config names (``model``, ``head``, ``optimizer``, ``scheduler``).

    Args:
        config: A resolved config.
        name_key: Which component.
        **trainer_args: The arguments the trainer fills in (:data:`TRAINER_ARGS`).

    Returns:
        The component, built with its ``*_args`` from the config and ``trainer_args``.

    Raises:
        ConfigError: when the component rejects its configured arguments (e.g. a negative
            learning rate), naming the config section and the component.
    """
    args_key = next(key for key, name in COMPONENT_ARGS.items() if name == name_key)
    registry = component_registries()[name_key]
    try:
        return registry.build(config[name_key], **trainer_args, **config[args_key])
    except (TypeError, ValueError) as error:
        detail = " ".join(str(error).split())
        raise ConfigError(f"config key '{args_key}' ({args_key} of {name_key} '{config[name_key]}' "
                          f"{dict(config[args_key])}): {detail}") from None


def component_registries() -> dict[str, Any]:
    """The registry behind each component key (imports torch-side modules lazily)."""
    from speakernet.losses import HEADS
    from speakernet.models import MODELS
    from speakernet.training.optim import OPTIMIZERS, SCHEDULERS

    return {"model": MODELS, "head": HEADS, "optimizer": OPTIMIZERS, "scheduler": SCHEDULERS}


# Arguments the trainer fills in itself; a config must not set them.
TRAINER_ARGS = {
    "head": {"embed_dim", "num_classes"},
    "optimizer": {"params"},
    "scheduler": {"optimizer", "steps_per_epoch", "total_epochs"},
    "model": {"feat_dim"},
}


def accepted_args(constructor: Callable[..., Any]) -> tuple[dict[str, Any], bool]:
    """The constructor's keyword arguments with their defaults (``inspect.Parameter.empty`` if none)."""
    signature = inspect.signature(constructor)
    takes_any = any(p.kind == inspect.Parameter.VAR_KEYWORD for p in signature.parameters.values())
    names = {name: p.default for name, p in signature.parameters.items()
             if p.kind not in (inspect.Parameter.VAR_KEYWORD, inspect.Parameter.VAR_POSITIONAL)}
    names.pop("self", None)
    return names, takes_any


def validate_components(config: Mapping[str, Any]) -> None:
    """Checks each component name against its registry and its args against its signature.

    Raises:
        ConfigError: naming the bad component or argument and listing the valid ones.
    """
    registries = component_registries()
    for args_key, name_key in COMPONENT_ARGS.items():
        registry = registries[name_key]
        try:
            constructor = registry.get(config[name_key])
        except KeyError as error:
            raise ConfigError(f"config key '{name_key}': {error.args[0]}") from None
        accepted, takes_any = accepted_args(constructor)
        reserved = TRAINER_ARGS.get(name_key, set())
        for arg, value in config[args_key].items():
            if arg in reserved:
                raise ConfigError(f"config key '{args_key}.{arg}' is set by the trainer and must not be configured")
            if arg not in accepted and not takes_any:
                valid = ", ".join(sorted(set(accepted) - reserved))
                raise ConfigError(
                    f"unknown config key '{args_key}.{arg}' for {name_key} '{config[name_key]}'; valid: {valid}"
                )
            if arg in accepted:
                _check_arg_type(value, accepted[arg], f"{args_key}.{arg}")


def audio_frontend(data: Mapping[str, Any]) -> Any:
    """The fbank options of a ``data`` section for training from audio (``data.frontend`` over the defaults).

    Raises:
        ConfigError: on an option the front-end does not take, a bad value, or mel bins other than
            ``data.feat_dim``.
    """
    from speakernet.features.frontend import frontend_from_dict

    options = {"num_mel_bins": data["feat_dim"], **data["frontend"]}
    try:
        frontend = frontend_from_dict(options)
    except (KeyError, TypeError, ValueError) as error:
        detail = " ".join(str(error.args[0] if isinstance(error, KeyError) else error).split())
        raise ConfigError(f"config key 'data.frontend' ({dict(data['frontend'])}): {detail}") from None
    if frontend.num_mel_bins != data["feat_dim"]:
        raise ConfigError(f"config key 'data.frontend.num_mel_bins' is {frontend.num_mel_bins}, but data.feat_dim is "
                          f"{data['feat_dim']}")
    return frontend


def validate_data(config: Mapping[str, Any]) -> None:
    """Checks the ``data`` keys that depend on each other.

    Raises:
        ConfigError: for options of training from audio set with ``data.source: features``, options
            of shards with another source, VAD with ``data.source: audio`` or ``shards`` (there is no
            VAD on the fly), a bad ``data.frontend``, or (shards) a sampler other than ``random`` or
            workers that do not divide the lanes.
    """
    data = config["data"]
    if data["source"] != "shards":
        for key in ("shard_lanes", "shuffle_buffer"):
            if data[key] != DEFAULTS["data"][key]:
                raise ConfigError(f"config key 'data.{key}' is for data.source: shards (data.source is "
                                  f"{data['source']})")
    if data["source"] == "features":
        for key, unset in (("frontend", {}), ("speed_perturb", False), ("augment", {})):
            if data[key] != unset:
                raise ConfigError(f"config key 'data.{key}' is for data.source: audio or shards (data.source is "
                                  "features: the features were made offline, with their own front-end)")
        return
    if data["use_vad"]:
        raise ConfigError(f"data.source: {data['source']} computes the features on the fly without VAD: set "
                          "data.use_vad: false")
    if data["source"] == "shards":
        if data["sampler"] != "random":
            raise ConfigError("data.source: shards reads each shard front to back through shuffle buffers: set "
                              "data.sampler: random (speaker_balanced batches need random access, data.source: audio)")
        if data["num_workers"] > 0 and data["shard_lanes"] % data["num_workers"]:
            raise ConfigError(f"data.num_workers={data['num_workers']} must divide data.shard_lanes="
                              f"{data['shard_lanes']} (each worker reads whole lanes of shards)")
    audio_frontend(data)
    if "speeds" in data["augment"]:
        raise ConfigError("config key 'data.augment.speeds': speed perturbation is data.speed_perturb (true: 0.9, 1.0 "
                          "and 1.1, each speed its own classes)")


def save_config(config: Mapping[str, Any], path: PathLike) -> None:
    """Writes the resolved config as YAML, atomically."""
    with atomic_write(path) as handle:
        yaml.safe_dump(dict(config), handle, sort_keys=False, default_flow_style=False)


def load_resolved_config(exp_dir: PathLike) -> dict[str, Any]:
    """Reads ``exp_dir/config.yaml`` written by the training stage, validated again.

    Raises:
        ConfigError: if the file is missing or invalid.
    """
    path = Path(exp_dir) / "config.yaml"
    if not path.is_file():
        raise ConfigError(f"{path} does not exist: run the training stage for this exp_dir first")
    return load_config(path)
