"""Where an exp dir's checkpoints are: their file names, finding one (``latest`` and the other names), pruning.

Torch-free (paths and text files only), so that stages which only name a checkpoint (calibration
records its file) do not import torch; :mod:`speakernet.training.checkpoint` reads and writes them
(and the ``latest`` pointer).
"""

from __future__ import annotations

import os
from pathlib import Path

from speakernet.utils.fileio import PathLike

CHECKPOINT_DIR = "checkpoints"
LATEST = "latest"
INIT_NAME = "init.pt"


def checkpoint_name(epochs_done: int, step: int, end_of_epoch: bool) -> str:
    """File name of a checkpoint taken after ``step`` optimiser steps.

    End-of-epoch checkpoints are ``epoch_NNN.pt`` (NNN epochs completed); they are the ones
    kept for model averaging. Mid-epoch ones are ``step_NNNNNNNN.pt``, for crash recovery only.
    """
    return f"epoch_{epochs_done:03d}.pt" if end_of_epoch else f"step_{step:08d}.pt"


def resolve_checkpoint(exp_dir: PathLike, which: str = "latest") -> Path:
    """Finds a checkpoint of an exp dir.

    Args:
        exp_dir: Experiment dir written by the training stage.
        which: ``latest``, ``init`` (the untrained model saved before the first step),
            ``avgN`` (written by :func:`write_average`), a file name inside
            ``exp_dir/checkpoints`` (with or without its ``.pt``: ``epoch_002``) or a path.

    Returns:
        Path of the checkpoint file.

    Raises:
        FileNotFoundError: naming what was looked for.
    """
    directory = Path(exp_dir) / CHECKPOINT_DIR
    if which == "latest":
        pointer = directory / LATEST
        if not pointer.is_file():
            raise FileNotFoundError(f"{pointer} does not exist: {exp_dir} has no finished training step yet")
        name = pointer.read_text().strip()
        if not name:
            raise FileNotFoundError(f"{pointer} is empty (an interrupted write?): it should name the newest "
                                    f"checkpoint of {directory}; write that file name into it or re-run training")
        path = directory / name
    elif which == "init":
        path = directory / INIT_NAME
    elif which.startswith("avg") and which[3:].isdigit():
        path = directory / f"{which}.pt"
    elif os.sep in which or Path(which).is_file():
        path = Path(which)
    else:
        path = directory / which
        if not path.is_file() and path.suffix != ".pt" and path.with_name(f"{path.name}.pt").is_file():
            path = path.with_name(f"{path.name}.pt")  # the name as the listing below shows it, less .pt
    if not path.is_file():
        available = sorted(p.name for p in directory.glob("*.pt")) if directory.is_dir() else []
        listing = ", ".join(available) if available else "none"
        raise FileNotFoundError(f"checkpoint {path} does not exist; {directory} holds: {listing}")
    return path


def epoch_checkpoints(exp_dir: PathLike) -> list[Path]:
    """End-of-epoch checkpoints of an exp dir, oldest first."""
    return sorted((Path(exp_dir) / CHECKPOINT_DIR).glob("epoch_[0-9][0-9][0-9]*.pt"))


def prune_checkpoints(exp_dir: PathLike, keep: int) -> None:
    """Keeps the newest ``keep`` end-of-epoch checkpoints (0: all) and only the newest mid-epoch one.

    The untrained ``init.pt``, averaged models and the checkpoint ``latest`` points at are
    always kept.
    """
    directory = Path(exp_dir) / CHECKPOINT_DIR
    pointer = directory / LATEST
    latest = pointer.read_text().strip() if pointer.is_file() else None
    stale = sorted(directory.glob("step_*.pt"))[:-1]
    if keep > 0:
        stale += epoch_checkpoints(exp_dir)[:-keep]
    for path in stale:
        if path.name != latest:
            path.unlink(missing_ok=True)
