"""Full-state checkpoints, written atomically, and loading a trained model from an exp dir.

A training checkpoint holds everything needed to continue bit-exactly: model and head
weights, optimiser, scheduler and grad-scaler state, the position in the batch plan
(epoch, batch within the epoch, global step), every RNG state and the resolved config.
It contains only tensors and plain Python values, so it loads with
``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import hashlib
import logging
import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from speakernet.training.checkpoint_files import (  # noqa: F401  (part of this module's interface)
    CHECKPOINT_DIR, INIT_NAME, LATEST, checkpoint_name, epoch_checkpoints, prune_checkpoints, resolve_checkpoint)
from speakernet.utils.faults import fault_point
from speakernet.utils.fileio import PathLike, atomic_write

logger = logging.getLogger(__name__)


def rng_state() -> dict[str, Any]:
    """Every RNG's state as tensors and plain values."""
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
        "python": [random.getstate()[0], list(random.getstate()[1]), random.getstate()[2]],
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restores the RNG states saved by :func:`rng_state`."""
    torch.set_rng_state(state["torch"])
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), *rest))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


CHECKSUM_KEY = "sha256"


class CheckpointError(ValueError):
    """A checkpoint file that is truncated, damaged or not a checkpoint (the message names it)."""


def _digest(value: Any, hasher: Any) -> None:
    """Feeds a checkpoint's content into ``hasher``: keys, types, shapes and every tensor byte."""
    if isinstance(value, torch.Tensor):
        tensor = value.detach().cpu().contiguous()
        hasher.update(f"T{tensor.dtype}{tuple(tensor.shape)}".encode())
        # the tensor's own memory, not a bytes copy of it (a second copy of the whole model per save and load)
        hasher.update(tensor.reshape(-1).view(torch.uint8).numpy() if tensor.numel() else b"")
    elif isinstance(value, dict):
        hasher.update(f"D{len(value)}".encode())
        for key in sorted(value, key=str):
            hasher.update(f"K{key!r}".encode())
            _digest(value[key], hasher)
    elif isinstance(value, (list, tuple)):
        hasher.update(f"L{len(value)}".encode())
        for item in value:
            _digest(item, hasher)
    else:
        hasher.update(f"V{type(value).__name__}{value!r}".encode())


def content_checksum(state: dict[str, Any]) -> str:
    """SHA-256 of a checkpoint's content, its stored checksum left out."""
    hasher = hashlib.sha256()
    _digest({key: value for key, value in state.items() if key != CHECKSUM_KEY}, hasher)
    return hasher.hexdigest()


def save_checkpoint(state: dict[str, Any], path: PathLike) -> None:
    """Writes ``state`` with its content checksum to ``path`` atomically (a temporary file renamed into place)."""
    with atomic_write(path, "wb") as handle:
        torch.save({**state, CHECKSUM_KEY: content_checksum(state)}, handle)
        fault_point("checkpoint.save")  # written, not yet in place


def load_checkpoint(path: PathLike) -> dict[str, Any]:
    """Loads a checkpoint with ``weights_only=True`` and checks its content checksum.

    A flipped byte inside the weights still unpickles, and would silently change every score;
    the checksum stored at save time says so. Checkpoints without one (older speakernet) load
    with a warning.

    Raises:
        FileNotFoundError: if ``path`` does not exist.
        CheckpointError: if the file is empty, truncated, not a checkpoint, or its content does
            not match its checksum.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    if path.stat().st_size == 0:
        raise CheckpointError(f"checkpoint {path} is empty (0 bytes): a copy or a save that was cut short; "
                              "use another checkpoint or re-run training")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001  (garbage makes the unpickler raise anything: KeyError, EOFError, ...)
        raise CheckpointError(f"checkpoint {path} cannot be read: it is truncated, damaged or not a speakernet "
                              f"checkpoint ({_torch_reason(error)})") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"checkpoint {path} is not a speakernet checkpoint (it holds a {type(state).__name__})")
    stored = state.pop(CHECKSUM_KEY, None)
    if stored is None:
        logger.warning("checkpoint %s has no checksum (an older speakernet's, or not a speakernet checkpoint): "
                       "its integrity is not checked", path)
    elif stored != content_checksum(state):
        raise CheckpointError(f"checkpoint {path} is damaged: its content does not match the checksum stored when "
                              "it was written (a bad copy or disk); use another checkpoint or re-run training")
    return state


def _torch_reason(error: BaseException) -> str:
    """The cause torch gives for an unreadable file, in one clause.

    torch's message for an unpickling failure is a page long and advises ``weights_only=False``,
    which would be wrong here: the file is damaged or foreign, not unsafe. Only its first
    sentence (for that error: the line naming the unsupported global) is kept.
    """
    text = " ".join(str(error).split())
    if "Weights only load failed" in text:
        found = re.search(r"Unsupported global: GLOBAL ([^ ]+)", text)
        return f"it pickles a {found.group(1)} object" if found else "it holds more than tensors and plain values"
    sentence = re.split(r"(?<=[.!?]) ", text, maxsplit=1)[0]
    if len(sentence.split()) < 3:  # e.g. KeyError(101) from garbage bytes: the type says more than the text
        sentence = f"{type(error).__name__} {sentence}".strip()
    return sentence[:200].rstrip(".")


def require_entries(state: dict[str, Any], path: PathLike, keys: tuple[str, ...], purpose: str, hint: str = "") -> None:
    """Checks that a loaded checkpoint has the entries a use needs.

    Args:
        state: What :func:`load_checkpoint` returned.
        path: The checkpoint file, for the message.
        keys: Entries required.
        purpose: What needs them, e.g. ``resuming a training``.
        hint: What to do instead, appended to the message.

    Raises:
        CheckpointError: naming the file and the missing entries.
    """
    missing = [key for key in keys if key not in state]
    if missing:
        listing = ", ".join(repr(key) for key in missing)
        one = len(missing) == 1
        advice = f"; {hint}" if hint else ""
        raise CheckpointError(f"checkpoint {path} has no {listing} entr{'y' if one else 'ies'}: {purpose} needs a "
                              f"speakernet checkpoint that holds {'it' if one else 'them'}{advice}")


#: What a checkpoint must hold to continue its training exactly.
TRAINING_ENTRIES = ("model", "head", "optimizer", "scheduler", "scaler", "epoch", "batch_in_epoch", "step", "rng",
                    "speakers", "world_size")


def mark_latest(exp_dir: PathLike, path: PathLike) -> None:
    """Points ``exp_dir/checkpoints/latest`` at ``path`` (a text file holding its name)."""
    with atomic_write(Path(exp_dir) / CHECKPOINT_DIR / LATEST) as handle:
        handle.write(Path(path).name + "\n")


def average_checkpoints(paths: list[Path], part: str = "model") -> dict[str, torch.Tensor]:
    """Element-wise mean of the weights of several checkpoints.

    Floating-point tensors (weights, BN running statistics) are averaged in float64 and cast
    back; integer buffers (BN's ``num_batches_tracked``) are taken from the newest checkpoint.

    Args:
        paths: Checkpoints of the same model, oldest first.
        part: Which weights: ``model`` or ``head``.

    Returns:
        The averaged ``state_dict``.

    Raises:
        ValueError: if ``paths`` is empty or the checkpoints hold different parameters.
    """
    if not paths:
        raise ValueError("no checkpoints to average")
    states = []
    for path in paths:
        state = load_checkpoint(path)
        require_entries(state, path, (part,), "model averaging")
        states.append(state[part])
    averaged: dict[str, torch.Tensor] = {}
    for key, newest in states[-1].items():
        for path, state in zip(paths, states):
            if key not in state or state[key].shape != newest.shape:
                raise ValueError(f"{path}: parameter '{key}' is missing or has another shape than in {paths[-1]}")
        if newest.is_floating_point():
            averaged[key] = (sum(state[key].double() for state in states) / len(states)).to(newest.dtype)
        else:
            averaged[key] = newest.clone()
    return averaged


def write_average(exp_dir: PathLike, num: int) -> Path:
    """Averages the last ``num`` end-of-epoch checkpoints into ``checkpoints/avg<num>.pt``.

    The result is a model checkpoint (weights, config, step and speakers of the newest, and the
    averaged training head) that :func:`load_model` and the extraction stage take as ``avg<num>``,
    and that a fine-tuning stage starts from (``training.init_from``).

    Raises:
        ValueError: if the exp dir holds fewer than ``num`` end-of-epoch checkpoints.
    """
    available = epoch_checkpoints(exp_dir)
    if num < 1 or len(available) < num:
        raise ValueError(
            f"cannot average the last {num} epochs of {exp_dir}: it keeps {len(available)} end-of-epoch "
            "checkpoints (raise training.keep_checkpoints)"
        )
    chosen = available[-num:]
    newest = load_checkpoint(chosen[-1])
    require_entries(newest, chosen[-1], ("step", "config", "speakers"), "model averaging")
    state = {
        "model": average_checkpoints(chosen),
        "head": average_checkpoints(chosen, "head"),
        "step": newest["step"],
        "config": newest["config"],
        "speakers": list(newest["speakers"]),
        "averaged_from": [path.name for path in chosen],
    }
    path = Path(exp_dir) / CHECKPOINT_DIR / f"avg{num}.pt"
    save_checkpoint(state, path)
    logger.info("averaged %s into %s", ", ".join(p.name for p in chosen), path)
    return path


def load_model(exp_dir: PathLike, which: str = "latest") -> tuple[torch.nn.Module, dict[str, Any]]:
    """Builds the embedding model of an exp dir from its ``config.yaml`` and a checkpoint.

    Args:
        exp_dir: Experiment dir written by the training stage.
        which: Checkpoint, as :func:`resolve_checkpoint` takes it.

    Returns:
        ``(model in eval mode on CPU, resolved config)``.

    Raises:
        CheckpointError: if the checkpoint is unreadable or its weights do not fit the model
            that ``config.yaml`` describes (e.g. an edited ``model_args``).
    """
    from speakernet.config import load_resolved_config
    from speakernet.models import build_model
    from speakernet.models.precision import flush_denormals

    flush_denormals()  # first: torch's intra-op threads take the mode from this thread when they start
    config = load_resolved_config(exp_dir)
    path = resolve_checkpoint(exp_dir, which)
    state = load_checkpoint(path)
    model = build_model(config["model"], feat_dim=config["data"]["feat_dim"], **config["model_args"])
    require_entries(state, path, ("model",), "loading a model")
    if not isinstance(state["model"], dict):
        raise CheckpointError(f"checkpoint {path}: its 'model' entry is not a table of weights")
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as error:  # an edited config.yaml, or a checkpoint of another model
        detail = " ".join(str(error).split())
        raise CheckpointError(f"checkpoint {path}: its weights do not fit the {config['model']} that "
                              f"{Path(exp_dir) / 'config.yaml'} describes ({detail[:300]})") from None
    model.eval()
    logger.info("loaded %s (%s, step %d) from %s", config["model"], which, state.get("step", -1), path)
    return model, config
