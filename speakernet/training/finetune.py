"""Starting a training from another one's weights (``training.init_from``).

Large-margin fine-tuning (WeSpeaker's ``do_lm``, SpeakerNet's ``*_lm`` recipes) continues the
averaged model with longer crops and a larger margin; Deep Speaker's second stage continues a
softmax-trained network with the triplet loss. Both are a new training (fresh optimiser, lr
schedule and step count, in their own exp dir) whose model starts from the first one's weights:

- the model must be the same (name, ``model_args``, ``data.feat_dim``); otherwise it is an
  error naming both configs, not a half-loaded network;
- with ``training.init_head`` (the default) the training head is taken too, which needs a head
  with the same parameters (e.g. AM-softmax centres for an AAM-softmax fine-tuning) and the same
  training speakers (the class order of the checkpoint is kept);
  with ``init_head: false`` the head starts afresh (e.g. softmax -> triplet).
"""

from __future__ import annotations

import inspect
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from speakernet.training import checkpoint as ckpt

logger = logging.getLogger(__name__)

MODEL_KEYS = ("model", "model_args")


@dataclass
class InitState:
    """A checkpoint to start from: where it is and what it holds."""

    path: Path
    state: dict[str, Any]

    @property
    def config(self) -> dict[str, Any]:
        """The config the checkpoint was trained with."""
        return self.state.get("config") or {}


def resolve_init(spec: str) -> Path:
    """The checkpoint file ``training.init_from`` names: a file, or an exp dir (its latest checkpoint).

    Raises:
        FileNotFoundError: naming the path, if there is no such checkpoint.
    """
    path = Path(spec)
    if path.is_dir():
        return ckpt.resolve_checkpoint(path, "latest")
    if not path.is_file():
        raise FileNotFoundError(f"training.init_from: {path} is neither a checkpoint file nor an exp dir")
    return path


def load_init(config: dict[str, Any]) -> InitState | None:
    """Loads the checkpoint of ``training.init_from`` (None when it is empty) and checks its model.

    Raises:
        FileNotFoundError: if the checkpoint does not exist.
        CheckpointError: if it is unreadable, damaged, or holds no model weights.
        ValueError: if its model is not the one ``config`` builds.
    """
    spec = config["training"]["init_from"]
    if not spec:
        return None
    path = resolve_init(spec)
    init = InitState(path, ckpt.load_checkpoint(path))
    if not isinstance(init.state.get("model"), dict):
        raise ckpt.CheckpointError(f"training.init_from: checkpoint {path} holds no model weights")
    theirs = {key: init.config.get(key) for key in MODEL_KEYS}
    ours = {key: config[key] for key in MODEL_KEYS}
    their_dim = (init.config.get("data") or {}).get("feat_dim")
    if _full_args(theirs) != _full_args(ours) or their_dim != config["data"]["feat_dim"]:
        raise ValueError(f"training.init_from: {path} holds a {theirs['model']} {theirs['model_args']} on "
                         f"{their_dim}-dim features, but this config builds a {ours['model']} {ours['model_args']} "
                         f"on {config['data']['feat_dim']}-dim features; the fine-tuning config must build the same "
                         "model")
    return init


def _plain(value: Any) -> Any:
    """Tuples as lists, recursively: a default ``(1, 2)`` equals a YAML ``[1, 2]``."""
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    return value


def _full_args(spec: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """A model name with its arguments, the constructor's defaults filled in (a conf may leave them out)."""
    from speakernet.config import accepted_args
    from speakernet.models.registry import MODELS

    name, args = spec.get("model"), dict(spec.get("model_args") or {})
    if name in MODELS.names():
        defaults, _ = accepted_args(MODELS.get(name))
        args = {**{k: v for k, v in defaults.items() if k != "feat_dim" and v is not inspect.Parameter.empty},
                **args}
    return name, _plain(args)


def check_init_frontend(init: InitState, data_dir: Path) -> None:
    """Checks that the training features were made with the front-end the starting model was trained on.

    The starting model's dir is the one its checkpoint lives in (``<dir>/checkpoints/<file>``); a
    model imported from SpeechBrain, for one, needs SpeechBrain's front-end
    (``make_features --frontend-from <dir>``).

    Raises:
        ValueError: naming both ``frontend.json`` files and the first differing option.
    """
    from speakernet.features.frontend import check_same_frontend

    model_dir = init.path.parent.parent if init.path.parent.name == ckpt.CHECKPOINT_DIR else init.path.parent
    try:
        check_same_frontend(model_dir, data_dir)
    except ValueError as error:
        raise ValueError(f"training.init_from: {error} (make_features --frontend-from {model_dir})") from None


def check_init_audio_frontend(init: InitState, frontend: Any) -> None:
    """For training from audio: checks the config's front-end against the one the starting model was trained on.

    A starting model without a record is accepted, as :func:`check_init_frontend` does.

    Raises:
        ValueError: naming the model's ``frontend.json`` and the first differing option.
    """
    from speakernet.features.frontend import FRONTEND_CONFIG_NAME, frontend_to_dict, read_frontend_record

    model_dir = init.path.parent.parent if init.path.parent.name == ckpt.CHECKPOINT_DIR else init.path.parent
    record = read_frontend_record(model_dir)
    if record is None:
        return
    ours = frontend_to_dict(frontend)
    for key in sorted(set(ours) | set(record["fbank"]), key=lambda k: (k != "kind", k)):
        if ours.get(key) != record["fbank"].get(key):
            raise ValueError(f"training.init_from: data.frontend gives {key} = {ours.get(key)!r}, but the model was "
                             f"trained on {record['fbank'].get(key)!r} ({model_dir / FRONTEND_CONFIG_NAME}); set "
                             f"data.frontend.{key}")


def init_speakers(init: InitState, data_speakers: list[str], init_head: bool) -> list[str]:
    """The training speakers, in class order: the checkpoint's when its head is taken.

    Raises:
        ValueError: if the head is taken but the checkpoint has no speaker list, or the data holds
            speakers its head was not trained on.
    """
    if not init_head:
        return data_speakers
    speakers = init.state.get("speakers")
    if speakers is None or not isinstance(init.state.get("head"), dict):
        raise ValueError(f"training.init_from: {init.path} holds no training head (and speaker list) to start "
                         "from; set training.init_head=false to train a new head")
    unknown = sorted(set(data_speakers) - set(speakers))
    if unknown:
        raise ValueError(f"training.init_from: the training data has {len(unknown)} speaker(s) the head of "
                         f"{init.path} was not trained on (e.g. '{unknown[0]}'); train on the same speakers or set "
                         "training.init_head=false")
    return list(speakers)


def apply_init(init: InitState, model: nn.Module, head: nn.Module, init_head: bool, head_name: str) -> None:
    """Copies the checkpoint's model (and head) weights into ``model`` (and ``head``).

    Raises:
        ValueError: if the head is taken but its parameters do not fit ``head`` (other keys or shapes).
    """
    model.load_state_dict(init.state["model"])
    if init_head:
        # Heads with the same parameters carry over whatever their margin: the class centres of an
        # AM-softmax start an AAM-softmax fine-tuning (SpeakerNet's LM stage does this), those of a
        # one-centre sub-center head an AAM head. Anything else fails on the keys or shapes.
        their_head = init.config.get("head")
        try:
            head.load_state_dict(init.state["head"])
        except RuntimeError as error:
            detail = " ".join(str(error).split())[:300]
            raise ValueError(f"training.init_from: the {their_head} head of {init.path} does not fit this config's "
                             f"{head_name} ({detail}); use a head of the same shape or set training.init_head=false"
                             ) from None
        if their_head != head_name:
            logger.info("the %s head's weights start this %s head", their_head, head_name)
    logger.info("starting from the weights of %s (step %s; %s)", init.path, init.state.get("step", "?"),
                "model and head" if init_head else "model only, new head")
