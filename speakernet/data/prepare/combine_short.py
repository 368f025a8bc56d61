"""Merging a corpus' short training utterances into utterances of a minimum duration.

CN-Celeb has many utterances of one or two seconds. WeSpeaker's CN-Celeb v2 recipe (on by default
there) joins them before training: within each (speaker, genre) group, in the order of the file
names, neighbouring utterances are joined until every merged one lasts at least 5 s. Which
neighbour a short one joins follows Kaldi's ``choose_utts_to_combine.py`` (the last short one in the
list first; the left neighbour when the right one is missing or long enough already, else the side
that reaches the minimum, else the shorter side; in practice short runs grow leftwards from the end,
and a short first one joins rightwards). A group whose whole audio is shorter than the minimum
becomes one utterance, shorter than the minimum. Nothing is dropped, and nothing is joined across
groups.

A merged utterance is named after its first part, ``<first>-comb<N>``, and its ``wav.scp`` value is
an ffmpeg pipe that plays its parts in order (:func:`speakernet.data.audio.ffmpeg_concat_pipe`):
no audio is copied.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

logger = logging.getLogger(__name__)

# Durations closer than this (seconds) count as equal: rounding in a header never decides a merge.
_TOLERANCE = 1e-5


def _shorter(x: float, y: float) -> bool:
    return x < y - _TOLERANCE


def group_consecutive(durations: Sequence[float], min_duration: float) -> list[tuple[int, int]]:
    """Splits a list of utterances into runs of neighbours that each last at least ``min_duration``.

    Args:
        durations: Duration of each utterance in seconds, in list order (each > 0).
        min_duration: Minimum duration of a run in seconds.

    Returns:
        ``(start, end)`` index ranges (end exclusive) covering the list in order. Every run lasts at
        least ``min_duration`` unless the whole list is shorter, which is then one run.

    Raises:
        ValueError: on a duration that is not positive, or a negative ``min_duration``.
    """
    if min_duration < 0:
        raise ValueError(f"min_duration must not be negative, got {min_duration}")
    if any(duration <= 0 for duration in durations):
        raise ValueError("every duration must be positive")
    count = len(durations)
    # Runs as a doubly linked list keyed by their first index: end (exclusive) and total duration.
    end = list(range(1, count + 1))
    total = list(durations)
    start_of = list(range(count))  # the first index of the run each utterance is in
    pending = [i for i in range(count) if _shorter(total[i], min_duration)]
    while pending:
        run = pending.pop()
        if start_of[run] != run or not _shorter(total[run], min_duration):
            continue  # joined into another run, or long enough by now
        left = start_of[run - 1] if run > 0 else None
        right = end[run] if end[run] < count else None
        if left is None and right is None:
            break  # the whole list is one run, still short
        left_total = total[left] if left is not None else 0.0
        right_total = total[right] if right is not None else 0.0
        if left is None:
            join_left = False
        elif right is None or _shorter(min_duration, right_total):
            join_left = True
        elif _shorter(left_total + total[run], min_duration):
            join_left = False
        elif _shorter(right_total + total[run], min_duration):
            join_left = True
        else:  # either side reaches the minimum: the shorter side keeps the sizes even
            join_left = _shorter(left_total, right_total)
        first, second = (left, run) if join_left else (run, right)
        for index in range(second, end[second]):
            start_of[index] = first
        end[first] = end[second]
        total[first] += total[second]
        # A run that grew rightwards and is still short is looked at again; one that grew leftwards
        # started short itself (else joining it would have reached the minimum) and is still pending.
        if not join_left and _shorter(total[first], min_duration):
            pending.append(first)
    runs = []
    index = 0
    while index < count:
        runs.append((index, end[index]))
        index = end[index]
    return runs


def combine_short_utterances(
    utt2dur: Mapping[str, float],
    utt2group: Mapping[str, str],
    min_duration: float,
) -> dict[str, list[str]]:
    """Chooses which utterances to merge: neighbours within a group, in utterance-id order.

    Args:
        utt2dur: Utterance -> duration in seconds (> 0).
        utt2group: Utterance -> the group it may be merged within (e.g. ``<speaker>-<genre>``); every
            utterance of ``utt2dur``.
        min_duration: Minimum duration of a merged utterance in seconds.

    Returns:
        New utterance id -> its parts in playing order, for every utterance: an utterance that is
        long enough stays alone under its own id; a merged one is ``<first part>-comb<N>``.

    Raises:
        ValueError: on a utterance without a group, or a duration that is not positive.
    """
    groups: dict[str, list[str]] = {}
    for utt in sorted(utt2dur):
        if utt not in utt2group:
            raise ValueError(f"utterance '{utt}' has no group")
        groups.setdefault(utt2group[utt], []).append(utt)
    merged: dict[str, list[str]] = {}
    for utts in groups.values():
        for start, end in group_consecutive([utt2dur[utt] for utt in utts], min_duration):
            parts = utts[start:end]
            merged[parts[0] if len(parts) == 1 else f"{parts[0]}-comb{len(parts)}"] = parts
    short = sum(1 for parts in merged.values() if _shorter(sum(utt2dur[u] for u in parts), min_duration))
    logger.info("merged %d utterances into %d of at least %.1f s (%d groups shorter than that in all)",
                len(utt2dur), len(merged), min_duration, short)
    return merged
