"""Verification trial lists sampled from a data directory's ``utt2spk`` (Kaldi format ``enroll test label``).

A trial is an unordered pair of different utterances: a *target* if both are of one speaker, a
*non-target* otherwise. Each pair appears once, written with its C-smaller utterance first, and
the list is C-sorted by (enroll, test), so the same ``utt2spk`` and seed give the same bytes.

* Targets: all same-speaker pairs, or ``num_targets`` of them drawn uniformly without replacement
  (a sampled index is unranked into its speaker and pair, so the pairs are never all listed).
* Non-targets: ``num_nontargets`` (default: as many as targets, balanced like VoxCeleb1-O) pairs
  of different speakers drawn uniformly without replacement by rejection sampling, so the
  O(N^2) pairs are never listed either (unless more than half of them are asked for).
  ``same_gender`` draws them only within each gender of ``spk2gender``.

Asking explicitly for more pairs than exist is an error saying how many exist; the default number
of non-targets is capped, with a warning, at the number that exist.
"""

from __future__ import annotations

import bisect
import logging
import math
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from speakernet.data.kaldi_dir import c_sort_key, read_spk2gender, read_utt2spk, write_trials
from speakernet.utils.fileio import PathLike

logger = logging.getLogger(__name__)

Trial = tuple[str, str, str]

# Above this fraction of the existing pairs, non-targets are drawn from the listed pairs: rejection
# sampling would mostly draw pairs already taken.
_ENUMERATE_ABOVE_FRACTION = 0.5
_MIN_BATCH = 1024
_MAX_BATCH = 1 << 20


class _Group:
    """Utterances among which non-targets are drawn (all of them, or one gender's), as speaker indices."""

    def __init__(self, speaker_of: np.ndarray, utt_indices: np.ndarray):
        self.utts = utt_indices
        self.speakers = speaker_of[utt_indices]
        sizes = np.bincount(self.speakers).astype(np.int64)
        n = len(utt_indices)
        self.num_nontargets = n * (n - 1) // 2 - int(np.sum(sizes * (sizes - 1) // 2))


def _unrank_pair(index: int, size: int) -> tuple[int, int]:
    """The ``index``-th pair ``(i, j)``, ``i < j < size``, in lexicographic order."""
    reverse = size * (size - 1) // 2 - 1 - index
    row = (math.isqrt(8 * reverse + 1) - 1) // 2
    return size - 2 - row, size - 1 - (reverse - row * (row + 1) // 2)


def _targets(spk2idx: list[list[int]], num_targets: int | None, rng: np.random.Generator) -> list[tuple[int, int]]:
    """Same-speaker pairs ``(a, b)``, ``a < b`` (utterance indices): all of them, or ``num_targets`` drawn."""
    multi = [indices for indices in spk2idx if len(indices) > 1]
    if num_targets is None:
        return [(indices[i], indices[j]) for indices in multi
                for i in range(len(indices)) for j in range(i + 1, len(indices))]
    if num_targets == 0:
        return []
    counts = [len(indices) * (len(indices) - 1) // 2 for indices in multi]
    starts = np.cumsum([0] + counts[:-1]).tolist()
    pairs = []
    for index in rng.choice(sum(counts), size=num_targets, replace=False).tolist():
        position = bisect.bisect_right(starts, index) - 1
        indices = multi[position]
        i, j = _unrank_pair(index - starts[position], len(indices))
        pairs.append((indices[i], indices[j]))
    return pairs


def _nontargets(groups: list[_Group], num_nontargets: int, rng: np.random.Generator) -> list[tuple[int, int]]:
    """Draws ``num_nontargets`` distinct pairs ``(a, b)``, ``a < b`` (utterance indices), of different speakers."""
    total = sum(group.num_nontargets for group in groups)
    members = [(group.utts.tolist(), group.speakers.tolist()) for group in groups]
    if num_nontargets > _ENUMERATE_ABOVE_FRACTION * total:
        every = [(utts[a], utts[b]) for utts, speakers in members
                 for a in range(len(utts)) for b in range(a + 1, len(utts)) if speakers[a] != speakers[b]]
        return [every[index] for index in sorted(rng.choice(len(every), size=num_nontargets, replace=False).tolist())]
    # A group is drawn with probability proportional to its non-target pairs, then a uniform pair in
    # it: every non-target pair is equally likely, and rejecting repeats makes it without replacement.
    weights = np.array([group.num_nontargets for group in groups], dtype=np.float64) / total
    sizes = np.array([len(group.utts) for group in groups], dtype=np.int64)
    chosen: set[tuple[int, int]] = set()
    while len(chosen) < num_nontargets:
        batch = min(max(_MIN_BATCH, 2 * (num_nontargets - len(chosen))), _MAX_BATCH)
        which = rng.choice(len(groups), size=batch, p=weights) if len(groups) > 1 else np.zeros(batch, dtype=np.int64)
        firsts = rng.integers(0, sizes[which])
        seconds = rng.integers(0, sizes[which])
        for group_index, a, b in zip(which.tolist(), firsts.tolist(), seconds.tolist()):
            group_utts, group_speakers = members[group_index]
            if group_speakers[a] == group_speakers[b]:
                continue
            pair = (group_utts[a], group_utts[b]) if a < b else (group_utts[b], group_utts[a])
            if pair in chosen:
                continue
            chosen.add(pair)
            if len(chosen) == num_nontargets:
                break
    return sorted(chosen)


def sample_trials(
    utt2spk: Mapping[str, str],
    num_targets: int | None = None,
    num_nontargets: int | None = None,
    spk2gender: Mapping[str, str] | None = None,
    seed: int = 0,
    source: str = "utt2spk",
    max_targets: int | None = None,
) -> list[Trial]:
    """Samples a trial list (see the module docstring).

    Args:
        utt2spk: Utterance -> speaker.
        num_targets: Target trials to draw, or None for every same-speaker pair.
        num_nontargets: Non-target trials to draw, or None for as many as the targets (capped, with
            a warning, at the number of non-target pairs there are).
        spk2gender: If given, non-targets pair only speakers of one gender (``m``/``f``); it must
            name every speaker.
        seed: Seed of the draws.
        source: What ``utt2spk`` is, for messages (e.g. the data directory).
        max_targets: Instead of ``num_targets``: at most this many targets, all of them when there are
            no more (a recipe's default for sets of any size).

    Returns:
        ``(enroll, test, "target"|"nontarget")``, C-sorted by (enroll, test), enroll C-smaller.

    Raises:
        ValueError: on a negative count, more targets or non-targets asked for than exist (saying
            how many exist), a speaker missing from ``spk2gender``, or an empty result.
    """
    for name, count in (("num_targets", num_targets), ("num_nontargets", num_nontargets)):
        if count is not None and count < 0:
            raise ValueError(f"{name} must be >= 0, got {count}")
    rng = np.random.default_rng(seed)
    # Utterances are numbered in C order, so a pair (a, b) with a < b has its C-smaller id first.
    utts = sorted(utt2spk, key=c_sort_key)
    speakers = sorted(set(utt2spk.values()), key=c_sort_key)
    speaker_index = {spk: index for index, spk in enumerate(speakers)}
    spk2idx: list[list[int]] = [[] for _ in speakers]
    for index, utt in enumerate(utts):
        spk2idx[speaker_index[utt2spk[utt]]].append(index)

    available_targets = sum(len(indices) * (len(indices) - 1) // 2 for indices in spk2idx)
    if max_targets is not None:
        if num_targets is not None:
            raise ValueError("give num_targets or max_targets, not both")
        if max_targets < 0:
            raise ValueError(f"max_targets must be >= 0, got {max_targets}")
        num_targets = max_targets if max_targets < available_targets else None
    if num_targets is not None and num_targets > available_targets:
        raise ValueError(f"asked for {num_targets} target trials but {source} has only {available_targets} "
                         "(pairs of different utterances of one speaker)")
    if available_targets == 0 and num_targets != 0:
        raise ValueError(f"{source}: every speaker has one utterance, so there is no target trial (a pair of "
                         "utterances of one speaker) to draw")
    targets = _targets(spk2idx, num_targets, rng)

    speaker_of = np.array([speaker_index[utt2spk[utt]] for utt in utts], dtype=np.int64)
    if spk2gender is None:
        groups = [_Group(speaker_of, np.arange(len(utts)))]
        kind = "non-target"
    else:
        missing = [spk for spk in speakers if spk not in spk2gender]
        if missing:
            raise ValueError(f"{len(missing)} speaker(s) of {source} have no gender in spk2gender, e.g. '{missing[0]}'")
        genders = np.array([spk2gender[utt2spk[utt]] for utt in utts])
        groups = [_Group(speaker_of, np.flatnonzero(genders == gender)) for gender in sorted(set(genders.tolist()))]
        kind = "same-gender non-target"
    available_nontargets = sum(group.num_nontargets for group in groups)
    if available_nontargets == 0 and num_nontargets != 0:
        raise ValueError(f"{source}: no two utterances of different speakers{' of one gender' if spk2gender else ''}, "
                         f"so there is no non-target trial to draw ({len(speakers)} speaker(s))")
    if num_nontargets is None:
        num_nontargets = len(targets)
        if num_nontargets > available_nontargets:
            logger.warning("%s has only %d %s pairs, fewer than the %d targets: taking them all", source,
                           available_nontargets, kind, num_nontargets)
            num_nontargets = available_nontargets
    elif num_nontargets > available_nontargets:
        raise ValueError(f"asked for {num_nontargets} {kind} trials but {source} has only {available_nontargets} "
                         "(pairs of utterances of different speakers" + (" of one gender)" if spk2gender else ")"))
    nontargets = _nontargets(groups, num_nontargets, rng) if num_nontargets else []

    pairs = [(a, b, "target") for a, b in targets] + [(a, b, "nontarget") for a, b in nontargets]
    if not pairs:
        raise ValueError(f"no trials to write: {source} has {available_targets} target and {available_nontargets} "
                         f"{kind} pairs, and none were asked for")
    pairs.sort()
    return [(utts[a], utts[b], label) for a, b, label in pairs]


def make_trials_file(
    data_dir: PathLike,
    out: PathLike,
    num_targets: int | None = None,
    num_nontargets: int | None = None,
    same_gender: bool = False,
    seed: int = 0,
    max_targets: int | None = None,
) -> list[Trial]:
    """Samples trials over a data directory's ``utt2spk`` and writes them atomically to ``out``.

    Args:
        data_dir: Kaldi data directory (``utt2spk``; ``spk2gender`` with ``same_gender``).
        out: Trial file to write.
        num_targets: See :func:`sample_trials` (None: all target pairs).
        num_nontargets: See :func:`sample_trials` (None: as many as the targets).
        same_gender: Non-targets only between speakers of one gender (needs ``data_dir/spk2gender``).
        seed: Seed of the draws.
        max_targets: See :func:`sample_trials`.

    Returns:
        The trials written.

    Raises:
        DataDirError: on a missing or malformed ``utt2spk`` or ``spk2gender``.
        ValueError: see :func:`sample_trials`.
    """
    data_dir = Path(data_dir)
    utt2spk = read_utt2spk(data_dir / "utt2spk")
    spk2gender = None
    if same_gender:
        gender_path = data_dir / "spk2gender"
        if not gender_path.is_file():
            raise FileNotFoundError(f"{gender_path}: not found; same-gender trials need spk2gender "
                                    "(lines '<speaker> m|f')")
        spk2gender = read_spk2gender(gender_path)
    trials = sample_trials(utt2spk, num_targets, num_nontargets, spk2gender, seed, source=str(data_dir),
                           max_targets=max_targets)
    write_trials(out, trials)
    num_target = sum(1 for trial in trials if trial[2] == "target")
    logger.info("Wrote %s: %d trials (%d target, %d %snon-target) over %d utterances of %d speakers, seed %d", out,
                len(trials), num_target, len(trials) - num_target, "same-gender " if same_gender else "",
                len(utt2spk), len(set(utt2spk.values())), seed)
    return trials
