"""Speaker-disjoint splits of a data directory: a seeded choice of held-out speakers.

:func:`split_train_eval` writes two complete data directories with
:func:`~speakernet.data.datadir_ops.subset_data_dir` (wav.scp, segments, features, durations,
spk2gender carry over): every utterance lands in exactly one of them, every speaker in one.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from speakernet.data.datadir_ops import subset_data_dir
from speakernet.data.kaldi_dir import c_sort_key, read_utt2spk
from speakernet.utils.fileio import PathLike

logger = logging.getLogger(__name__)


def count_for_fraction(num_speakers: int, fraction: float) -> int:
    """Speakers a ``fraction`` of ``num_speakers`` is, rounded; strictly between 0 and 1 at least one
    speaker lands on each side when there are two or more.

    Raises:
        ValueError: if ``fraction`` is outside [0, 1].
    """
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must be in [0, 1], got {fraction}")
    count = round(num_speakers * fraction)
    if 0.0 < fraction < 1.0 and num_speakers >= 2:
        count = min(max(count, 1), num_speakers - 1)
    return count


def choose_speakers(speakers: Sequence[str], count: int, rng: np.random.Generator) -> set[str]:
    """Picks ``count`` speakers at random: the first ``count`` of a permutation of the sorted speakers.

    Sorting first makes the choice depend only on the set of speakers and the generator's state.
    """
    ordered = sorted(speakers)
    return {ordered[index] for index in rng.permutation(len(ordered))[:count]}


def _inside(path: Path, other: Path) -> bool:
    """True if ``path`` is ``other`` or below it."""
    return path == other or other in path.parents


def split_train_eval(
    data_dir: PathLike,
    train_out: PathLike,
    eval_out: PathLike,
    eval_speakers: int | None = None,
    eval_fraction: float | None = None,
    seed: int = 0,
) -> tuple[list[str], list[str]]:
    """Splits a data directory by speaker into a train and an eval directory.

    The eval speakers are a seeded random choice (the same speakers and seed give the same split).
    The train directory gets no trials; the eval directory keeps the source's trials minus those
    that name a train utterance or speaker (see :meth:`KaldiDataDir.subset`).

    Args:
        data_dir: Source data directory (left unchanged).
        train_out: Train directory to write (replaced as a whole).
        eval_out: Eval directory to write (replaced as a whole).
        eval_speakers: Number of eval speakers (at least 1, and fewer than the speakers), or
        eval_fraction: the fraction of speakers for eval, in (0, 1); at least one speaker on each side.
        seed: Seed of the choice.

    Returns:
        ``(train speakers, eval speakers)``, each C-sorted.

    Raises:
        ValueError: unless exactly one of ``eval_speakers`` / ``eval_fraction`` is given, on a count
            or fraction that leaves a side empty (saying how many speakers there are), or on outputs
            that are the same, nested in each other, or the source or a folder holding it.
        DataDirError: if the source cannot be loaded.
    """
    if (eval_speakers is None) == (eval_fraction is None):
        raise ValueError("give eval_speakers or eval_fraction (exactly one)")
    source, train_dir, eval_dir = (Path(path).resolve() for path in (data_dir, train_out, eval_out))
    for name, out in (("train", train_dir), ("eval", eval_dir)):
        if _inside(source, out):
            raise ValueError(f"{name} out dir {out} is the source dir {source} or holds it; writing it would "
                             "replace the source")
    if _inside(train_dir, eval_dir) or _inside(eval_dir, train_dir):
        raise ValueError(f"train and eval out dirs must be separate, got {train_dir} and {eval_dir}")

    utt2spk = read_utt2spk(source / "utt2spk")
    speakers = sorted(set(utt2spk.values()), key=c_sort_key)
    if eval_fraction is not None:
        if not 0.0 < eval_fraction < 1.0:
            raise ValueError(f"eval fraction must be strictly between 0 and 1, got {eval_fraction}")
        if len(speakers) < 2:
            raise ValueError(f"{source} has {len(speakers)} speaker(s); a split needs at least 2")
        eval_speakers = count_for_fraction(len(speakers), eval_fraction)
    if not 0 < eval_speakers < len(speakers):
        raise ValueError(f"asked for {eval_speakers} eval speakers but {source} has {len(speakers)}; "
                         f"give 1 to {len(speakers) - 1} so that both sides have speakers")

    held_out = choose_speakers(speakers, eval_speakers, np.random.default_rng(seed))
    eval_list = [spk for spk in speakers if spk in held_out]
    train_list = [spk for spk in speakers if spk not in held_out]
    train = subset_data_dir(source, train_out, spk_list=train_list, keep_trials=False)
    held = subset_data_dir(source, eval_out, spk_list=eval_list, keep_trials=True)
    logger.info("Split %s (%d speakers, %d utterances), seed %d: train %s %d speakers, %d utterances; eval %s "
                "%d speakers, %d utterances%s", source, len(speakers), len(utt2spk), seed, train_out,
                len(train_list), len(train.utt2spk), eval_out, len(eval_list), len(held.utt2spk),
                f", {len(held.trials)} trials kept" if held.trials is not None else "")
    return train_list, eval_list
