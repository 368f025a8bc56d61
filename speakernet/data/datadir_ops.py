"""Operations on whole Kaldi data directories: fix, subset, combine and split.

These follow the behaviour of Kaldi's ``utils/fix_data_dir.sh``, ``subset_data_dir.sh``,
``combine_data.sh`` and ``split_data.sh`` (re-implemented on :class:`KaldiDataDir`, not
copied). Every output file is written atomically and C-sorted; whole output directories
are built under a temporary name and renamed into place.
"""

from __future__ import annotations

import filecmp
import heapq
import json
import logging
import os
import random
import shutil
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from speakernet.data.datadir import DATA_DIR_FILES, KaldiDataDir, PER_UTT_FILES
from speakernet.data.kaldi_dir import DataDirError, Segment, c_sort_key
from speakernet.utils.fileio import PathLike, atomic_dir

logger = logging.getLogger(__name__)

BACKUP_DIR = ".backup"


def _line_of(path: Path, key: str) -> int | None:
    """1-based line on which ``key`` is the first field of ``path`` (for error messages)."""
    if not path.is_file():
        return None
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            fields = line.split(maxsplit=1)
            if fields and fields[0] == key:
                return number
    return None


def _replace_changed_files(path: Path, new: KaldiDataDir) -> list[str]:
    """Writes ``new`` into ``path``, replacing only files whose bytes change.

    The previous version of each replaced file is copied into ``path/.backup/`` first.

    Returns:
        Names of the files that were written.
    """
    changed: list[str] = []
    with tempfile.TemporaryDirectory(prefix=".rewrite.", dir=path) as tmp:
        new.save(tmp)
        for name in new.present_files():
            target, fresh = path / name, Path(tmp) / name
            if target.is_file() and filecmp.cmp(target, fresh, shallow=False):
                continue
            if target.is_file():
                backup = path / BACKUP_DIR
                backup.mkdir(exist_ok=True)
                shutil.copy2(target, backup / name)
            os.replace(fresh, target)
            changed.append(name)
    return changed


@dataclass
class FixSummary:
    """What :func:`fix_data_dir` did.

    Attributes:
        num_utts_before: Utterances in utt2spk before.
        num_utts_after: Utterances kept.
        num_speakers_removed: Speakers left with no utterance.
        missing_from: File name -> number of utterances dropped because that file lacks them.
        extra_entries: File name -> number of entries dropped because their utterance is not in utt2spk.
        changed_files: Files rewritten (their old versions are in ``.backup/``).
    """

    num_utts_before: int
    num_utts_after: int
    num_speakers_removed: int
    missing_from: dict[str, int] = field(default_factory=dict)
    extra_entries: dict[str, int] = field(default_factory=dict)
    changed_files: list[str] = field(default_factory=list)


def fix_data_dir(path: PathLike) -> FixSummary:
    """Makes a data directory consistent, like Kaldi's ``utils/fix_data_dir.sh``.

    Keeps only utterances present in every per-utterance file (utt2spk, wav.scp or segments
    with a recording in wav.scp, feats.scp, vad.scp, utt2num_frames, utt2dur), drops entries of
    utterances not in utt2spk, recordings no segment uses, speakers left without utterances
    and trials that refer to a removed utterance or speaker; regenerates spk2utt; sorts every
    file. Only files that change are rewritten; their old versions go to ``path/.backup/``.

    Args:
        path: Data directory, fixed in place.

    Returns:
        A :class:`FixSummary` of what was removed and rewritten.

    Raises:
        DataDirError: if the directory cannot be loaded (missing utt2spk/spk2utt, a malformed
            line or a duplicate key: these need a human decision), or if every utterance would
            be removed (nothing is changed then).
    """
    path = Path(path)
    data = KaldiDataDir.load(path)
    utts = set(data.utt2spk)
    keep = set(utts)
    summary = FixSummary(num_utts_before=len(utts), num_utts_after=0, num_speakers_removed=0)

    def require(name: str, keys: Iterable[str]) -> None:
        keys = set(keys)
        missing = keep - keys
        if missing:
            summary.missing_from[name] = len(missing)
            keep.difference_update(missing)
        extra = len(keys - utts)
        if extra:
            summary.extra_entries[name] = extra

    if data.segments is not None:
        require("segments", data.segments)
        if data.wav_scp is not None:
            require("wav.scp", (utt for utt, seg in data.segments.items() if seg.recording in data.wav_scp))
    elif data.wav_scp is not None:
        require("wav.scp", data.wav_scp)
    for attr, name in PER_UTT_FILES.items():
        table = getattr(data, attr)
        if table is not None:
            require(name, table)

    if utts and not keep:  # almost always a wrong file (another dir's wav.scp), not an intent
        reasons = ", ".join(f"{count} not in {name}" for name, count in summary.missing_from.items())
        raise DataDirError(path, f"fixing it would remove all {len(utts)} utterances ({reasons}); nothing was "
                           "changed: check that these files belong to one data dir")
    fixed = data.subset(keep, keep_trials=True)
    summary.num_utts_after = len(fixed.utt2spk)
    summary.num_speakers_removed = len(data.speakers) - len(fixed.speakers)
    summary.changed_files = _replace_changed_files(path, fixed)

    removed = summary.num_utts_before - summary.num_utts_after
    reasons = ", ".join(f"{count} not in {name}" for name, count in summary.missing_from.items()) or "none"
    extras = ", ".join(f"{count} from {name}" for name, count in summary.extra_entries.items()) or "none"
    logger.info(
        "fix_data_dir %s: kept %d of %d utterances (removed %d: %s); removed %d speakers; "
        "dropped entries of utterances not in utt2spk: %s; rewrote: %s%s",
        path, summary.num_utts_after, summary.num_utts_before, removed, reasons, summary.num_speakers_removed,
        extras, " ".join(summary.changed_files) or "nothing",
        f" (old versions in {path / BACKUP_DIR})" if summary.changed_files else "",
    )
    if data.trials is not None and fixed.trials is not None and len(fixed.trials) != len(data.trials):
        logger.info("fix_data_dir %s: kept %d of %d trials", path, len(fixed.trials), len(data.trials))
    return summary


def _same_dir(first: PathLike, second: PathLike) -> bool:
    return Path(first).resolve() == Path(second).resolve()


def _check_known(wanted: Sequence[str], known: Iterable[str], what: str, source: Path) -> list[str]:
    known = set(known)
    unknown = [item for item in wanted if item not in known]
    if unknown:
        logger.warning("%d of %d requested %s are not in %s and are skipped, e.g. '%s'",
                       len(unknown), len(wanted), what, source, unknown[0])
    return [item for item in wanted if item in known]


#: Files that describe a whole data dir rather than its utterances; carried over unchanged.
DIR_RECORDS = ("frontend.json",)


def _carry_records(sources: Sequence[Path], dst: Path) -> None:
    """Copies each dir-level record (``frontend.json``) that every source holds identically.

    Raises:
        DataDirError: if sources with features disagree on a record (e.g. fbank options), since
            their combined features would not be one front-end's.
    """
    for name in DIR_RECORDS:
        texts = {src: (src / name).read_text(encoding="utf-8") for src in sources if (src / name).is_file()}
        if not texts:
            continue
        distinct = set(texts.values())
        if len(texts) == len(sources) and len(distinct) == 1:
            (dst / name).write_text(distinct.pop(), encoding="utf-8")
            continue
        with_feats = [src for src in sources if (src / "feats.scp").is_file()]
        if len(distinct) > 1 and with_feats:
            first, *others = sorted(texts, key=str)
            other = next(src for src in others if texts[src] != texts[first])
            raise DataDirError(other / name, f"differs from {first / name}: the features were made with other options")
        logger.warning("not carrying %s over to %s: not every source has the same one", name, dst)


def subset_data_dir(
    src: PathLike,
    dst: PathLike,
    utt_list: Iterable[str] | None = None,
    spk_list: Iterable[str] | None = None,
    num_utts: int | None = None,
    per_spk: int | None = None,
    first: bool = False,
    seed: int = 0,
    keep_trials: bool = True,
) -> KaldiDataDir:
    """Writes a subset of a data directory, like Kaldi's ``utils/subset_data_dir.sh``.

    ``utt_list`` and ``spk_list`` narrow the candidates; then ``num_utts`` picks that many of
    them, or ``per_spk`` picks up to that many per speaker: the first ones in C order if
    ``first``, otherwise a random choice seeded by ``seed`` (the same seed gives the same subset).
    Trials referring to a dropped utterance or speaker are dropped (all trials, without ``keep_trials``).

    Args:
        src: Source data directory.
        dst: Destination (replaced atomically if it exists; must differ from ``src``).
        utt_list: Utterances to keep (ids missing from ``src`` are skipped with a warning).
        spk_list: Speakers to keep (ids missing from ``src`` are skipped with a warning).
        num_utts: Number of utterances to keep.
        per_spk: Number of utterances to keep per speaker (all if a speaker has fewer).
        first: Take the first utterances instead of a random choice.
        seed: Seed of the random choice.
        keep_trials: Keep the trials whose utterances and speakers the subset keeps; if False, write none.

    Returns:
        The subset that was written.

    Raises:
        ValueError: on no selection, both ``num_utts`` and ``per_spk``, a non-positive count,
            ``num_utts`` larger than the candidates, an empty result or ``dst == src``.
        DataDirError: if ``src`` cannot be loaded.
    """
    src, dst = Path(src), Path(dst)
    if utt_list is None and spk_list is None and num_utts is None and per_spk is None:
        raise ValueError("subset_data_dir needs utt_list, spk_list, num_utts or per_spk")
    if num_utts is not None and per_spk is not None:
        raise ValueError("give num_utts or per_spk, not both")
    for name, count in (("num_utts", num_utts), ("per_spk", per_spk)):
        if count is not None and count <= 0:
            raise ValueError(f"{name} must be > 0, got {count}")
    if _same_dir(src, dst):
        raise ValueError(f"destination {dst} is the source dir")

    data = KaldiDataDir.load(src)
    candidates = data.utts
    if utt_list is not None:
        wanted = set(_check_known(list(utt_list), data.utt2spk, "utterances", src))
        candidates = [utt for utt in candidates if utt in wanted]
    if spk_list is not None:
        speakers = set(_check_known(list(spk_list), data.speakers, "speakers", src))
        candidates = [utt for utt in candidates if data.utt2spk[utt] in speakers]

    rng = random.Random(seed)
    if num_utts is not None:
        if num_utts > len(candidates):
            raise ValueError(f"asked for {num_utts} utterances but {src} has only {len(candidates)} candidates")
        candidates = candidates[:num_utts] if first else rng.sample(candidates, num_utts)
    elif per_spk is not None:
        by_speaker: dict[str, list[str]] = {}
        for utt in candidates:
            by_speaker.setdefault(data.utt2spk[utt], []).append(utt)
        candidates = []
        for spk in sorted(by_speaker, key=c_sort_key):
            utts = by_speaker[spk]
            take = min(per_spk, len(utts))
            candidates += utts[:take] if first else rng.sample(utts, take)
    if not candidates:
        raise ValueError(f"the subset of {src} is empty")

    subset = data.subset(candidates, keep_trials=keep_trials)
    with atomic_dir(dst) as tmp:
        subset.save(tmp)
        _carry_records([Path(src)], tmp)
    logger.info("subset_data_dir %s -> %s: %d of %d utterances, %d of %d speakers", src, dst,
                len(subset.utt2spk), len(data.utt2spk), len(subset.speakers), len(data.speakers))
    return subset


def combine_data(dst: PathLike, srcs: Sequence[PathLike]) -> KaldiDataDir:
    """Combines data directories into one, like Kaldi's ``utils/combine_data.sh``.

    Utterance ids must be unique across sources; a recording id may repeat only with the same
    ``wav.scp`` value. If some sources have ``segments`` and others not, the latter get
    whole-recording segments (``<utt> <utt> 0 -1``). An optional per-utterance file
    (feats.scp, vad.scp, utt2num_frames, utt2dur), like ``spk2gender``, is combined only if
    every source has it; trial lists are not combined.

    Args:
        dst: Destination (replaced atomically if it exists; must not be a source).
        srcs: Source data directories.

    Returns:
        The combined directory that was written.

    Raises:
        ValueError: on no sources or ``dst`` among them.
        DataDirError: on a duplicate utterance id (naming both dirs) or a recording id with two
            different ``wav.scp`` values, or if a source cannot be loaded.
    """
    dst = Path(dst)
    sources = [Path(src) for src in srcs]
    if not sources:
        raise ValueError("combine_data needs at least one source dir")
    for src in sources:
        if _same_dir(src, dst):
            raise ValueError(f"destination {dst} is also a source dir")
    loaded = [KaldiDataDir.load(src) for src in sources]

    combined = KaldiDataDir()
    owner: dict[str, Path] = {}
    for src, data in zip(sources, loaded):
        for utt, spk in data.utt2spk.items():
            if utt in owner:
                raise DataDirError(src / "utt2spk", f"utterance id is also in {owner[utt]} (combining {owner[utt]} "
                                   f"and {src}); utterance ids must be unique", _line_of(src / "utt2spk", utt), utt)
            owner[utt] = src
            combined.utt2spk[utt] = spk

    have_wav = [data.wav_scp is not None for data in loaded]
    if all(have_wav):
        combined.wav_scp = {}
        rec_owner: dict[str, Path] = {}
        for src, data in zip(sources, loaded):
            for rec, value in data.wav_scp.items():
                if rec in combined.wav_scp and combined.wav_scp[rec] != value:
                    raise DataDirError(src / "wav.scp", f"recording id is also in {rec_owner[rec]} with a different "
                                       f"value ('{combined.wav_scp[rec]}')", _line_of(src / "wav.scp", rec), rec)
                rec_owner.setdefault(rec, src)
                combined.wav_scp[rec] = value
        if any(data.segments is not None for data in loaded):
            combined.segments = {}
            for data in loaded:
                combined.segments.update(
                    data.segments if data.segments is not None
                    else {utt: Segment(utt, 0.0, -1.0) for utt in data.utt2spk})
    elif any(have_wav):
        logger.warning("not combining wav.scp/segments: missing in %s",
                       " ".join(str(src) for src, has in zip(sources, have_wav) if not has))

    for attr, name in PER_UTT_FILES.items():
        tables = [getattr(data, attr) for data in loaded]
        if all(table is not None for table in tables):
            merged: dict = {}
            for table in tables:
                merged.update(table)
            setattr(combined, attr, merged)
        elif any(table is not None for table in tables):
            logger.warning("not combining %s: missing in %s", name,
                           " ".join(str(src) for src, table in zip(sources, tables) if table is None))
    if all(data.spk2gender is not None for data in loaded):
        combined.spk2gender = {}
        for src, data in zip(sources, loaded):
            for spk, gender in data.spk2gender.items():
                if combined.spk2gender.setdefault(spk, gender) != gender:
                    raise DataDirError(src / "spk2gender", f"speaker has gender '{combined.spk2gender[spk]}' in "
                                       "another source dir", _line_of(src / "spk2gender", spk), spk)
    elif any(data.spk2gender is not None for data in loaded):
        logger.warning("not combining spk2gender: missing in %s",
                       " ".join(str(src) for src, data in zip(sources, loaded) if data.spk2gender is None))
    if any(data.trials is not None for data in loaded):
        logger.info("combine_data: trial lists of the sources are not combined")

    with atomic_dir(dst) as tmp:
        combined.save(tmp)
        _carry_records([Path(src) for src in sources], tmp)
    logger.info("combine_data -> %s: %d utterances, %d speakers from %d dirs (%s)", dst, len(combined.utt2spk),
                len(combined.speakers), len(sources), " ".join(str(src) for src in sources))
    return combined


_SPLIT_INFO = ".split_info.json"


def _split_signature(path: Path, nj: int, by_speaker: bool) -> dict:
    files = {}
    for name in DATA_DIR_FILES:
        file = path / name
        if name != "trials" and file.is_file():
            stat = file.stat()
            files[name] = [stat.st_size, stat.st_mtime_ns]
    return {"nj": nj, "by_speaker": by_speaker, "files": files}


def split_contiguous(items: Sequence[str], num_chunks: int) -> list[list[str]]:
    """Splits ``items`` into ``num_chunks`` contiguous chunks whose sizes differ by at most one.

    Used for Kaldi-style ``split<nj>`` dirs and for the jobs of parallel stages.
    """
    base, extra = divmod(len(items), num_chunks)
    chunks, start = [], 0
    for index in range(num_chunks):
        size = base + (1 if index < extra else 0)
        chunks.append(list(items[start:start + size]))
        start += size
    return chunks


def _split_by_speaker(spk2utt: dict[str, list[str]], nj: int) -> list[list[str]]:
    """Whole speakers, largest first, each to the part with the fewest utterances so far.

    This greedy (longest-processing-time) rule keeps the parts within one speaker's
    utterance count of each other; ties break by speaker id and part index, so it is deterministic.
    """
    order = sorted(spk2utt, key=lambda spk: (-len(spk2utt[spk]), c_sort_key(spk)))
    heap = [(0, job) for job in range(nj)]
    parts: list[list[str]] = [[] for _ in range(nj)]
    for spk in order:
        load, job = heapq.heappop(heap)
        parts[job] += spk2utt[spk]
        heapq.heappush(heap, (load + len(spk2utt[spk]), job))
    return parts


def split_data_dir(path: PathLike, nj: int, by_speaker: bool = False) -> list[Path]:
    """Splits a data directory into ``nj`` parts ``<path>/split<nj>/<1..nj>/``, like Kaldi's ``split_data.sh``.

    Parts are balanced by utterance count: contiguous C-sorted chunks, or with ``by_speaker``
    whole speakers (each speaker's utterances in one part). The split is deterministic and is
    not rewritten when ``split<nj>`` is up to date (same ``nj``, mode, and size and mtime of
    every source file); otherwise it is built under a temporary name and renamed into place.

    Args:
        path: Data directory.
        nj: Number of parts (>= 1).
        by_speaker: Keep each speaker in one part.

    Returns:
        The part directories, in job order (1..nj).

    Raises:
        ValueError: if ``nj`` < 1 or exceeds the number of utterances (or speakers with ``by_speaker``).
        DataDirError: if ``path`` cannot be loaded.
    """
    path = Path(path)
    if nj < 1:
        raise ValueError(f"nj must be >= 1, got {nj}")
    split_root = path / f"split{nj}"
    parts_dirs = [split_root / str(job) for job in range(1, nj + 1)]
    signature = _split_signature(path, nj, by_speaker)
    info = split_root / _SPLIT_INFO
    if info.is_file() and all(part.is_dir() for part in parts_dirs):
        try:
            up_to_date = json.loads(info.read_text(encoding="utf-8")) == signature
        except (OSError, json.JSONDecodeError):
            up_to_date = False
        if up_to_date:
            logger.info("split_data_dir: %s is up to date", split_root)
            return parts_dirs

    data = KaldiDataDir.load(path)
    if by_speaker:
        spk2utt = data.spk2utt
        if nj > len(spk2utt):
            raise ValueError(f"cannot split {len(spk2utt)} speakers of {path} into {nj} parts by speaker")
        parts = _split_by_speaker(spk2utt, nj)
    else:
        if nj > len(data.utt2spk):
            raise ValueError(f"cannot split {len(data.utt2spk)} utterances of {path} into {nj} parts")
        parts = split_contiguous(data.utts, nj)

    with atomic_dir(split_root) as tmp:
        for job, utts in enumerate(parts, start=1):
            data.subset(utts).save(tmp / str(job))
            _carry_records([Path(path)], tmp / str(job))
        (tmp / _SPLIT_INFO).write_text(json.dumps(signature, sort_keys=True), encoding="utf-8")
    sizes = [len(utts) for utts in parts]
    logger.info("split_data_dir %s into %d parts%s: %d utterances, %d..%d per part", path, nj,
                " by speaker" if by_speaker else "", sum(sizes), min(sizes), max(sizes))
    return parts_dirs
