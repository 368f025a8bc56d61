"""Data-dir validation in the spirit of Kaldi's ``utils/validate_data_dir.sh``.

Every check runs and every problem is collected (file, line and key), then reported at once as
a :class:`~speakernet.data.kaldi_dir.DataDirValidationError`.
"""

from __future__ import annotations

import itertools
import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from speakernet.data.datadir import DATA_DIR_FILES
from speakernet.data.kaldi_dir import DataDirValidationError, _parse_trials, c_sort_key, is_pipe, read_scp
from speakernet.data.kaldi_lines import (
    DataDirError,
    _as_duration,
    _as_gender,
    _as_num_frames,
    _as_segment,
    _as_text,
    _as_token,
    _as_tokens,
    _Entry,
    _parse_entries,
    _scan,
)
from speakernet.utils.fileio import PathLike

logger = logging.getLogger(__name__)



@dataclass
class _Table:
    path: Path
    values: dict
    lines: dict[str, int]

    def line(self, key: str) -> int | None:
        return self.lines.get(key)


_ARK_OFFSET = re.compile(r"^(?P<file>.+?):\d+(\[[^\]]*\])?$")


def _rxspecifier_file(value: str) -> str | None:
    """The file an ``<ark>:<offset>`` rxspecifier points into (None for pipes)."""
    if is_pipe(value):
        return None
    match = _ARK_OFFSET.match(value)
    return match.group("file") if match else value


class _Validator:
    """Runs every check on one data dir and collects the problems."""

    def __init__(self, data_dir: Path):
        self.data_dir = data_dir
        self.problems: list[DataDirError] = []

    def report(self, error: DataDirError) -> None:
        self.problems.append(error)

    def load(self, name: str, parse_value: Callable[[str], object], required: str | None = None) -> _Table | None:
        """Scans one file strictly: format, C-sort order, duplicates, values. None if absent."""
        path = self.data_dir / name
        if not path.is_file():
            if required:
                self.report(DataDirError(path, f"required file is missing ({required})"))
            return None
        entries = _scan(path, self.report, strict=True)
        if not entries:
            self.report(DataDirError(path, "file is empty"))
        self.check_sorted(path, entries)
        values, lines = _parse_entries(path, entries, parse_value, self.report)
        return _Table(path, values, lines)

    def check_sorted(self, path: Path, entries: Sequence[_Entry]) -> None:
        for previous, entry in itertools.pairwise(entries):
            if c_sort_key(entry.key) < c_sort_key(previous.key):
                self.report(DataDirError(
                    path,
                    f"not sorted in C-locale order: '{entry.key}' comes after '{previous.key}' on line "
                    f"{previous.number} (sort with LC_ALL=C sort, or run python -m speakernet.bin.fix_data_dir DIR)",
                    entry.number, entry.key,
                ))
                return

    def check_keys_match(self, table: _Table, reference: _Table, what: str) -> None:
        """Both directions: every key of ``table`` is in ``reference`` and vice versa."""
        for key, line in table.lines.items():
            if key not in reference.values:
                self.report(DataDirError(table.path, f"{what} is not in {reference.path.name}", line, key))
        for key, line in reference.lines.items():
            if key not in table.values:
                self.report(DataDirError(reference.path, f"{what} has no entry in {table.path.name}", line, key))

    def check_utt2spk_speaker_order(self, utt2spk: _Table) -> None:
        items = sorted(utt2spk.lines.items(), key=lambda item: item[1])
        for (prev_utt, prev_line), (utt, line) in itertools.pairwise(items):
            prev_spk, spk = utt2spk.values[prev_utt], utt2spk.values[utt]
            if c_sort_key(spk) < c_sort_key(prev_spk):
                self.report(DataDirError(
                    utt2spk.path,
                    f"not sorted by speaker: '{utt}' (speaker '{spk}') follows '{prev_utt}' (speaker '{prev_spk}') "
                    f"on line {prev_line}; make speaker ids prefixes of utterance ids",
                    line, utt,
                ))
                return

    def check_spk2utt(self, utt2spk: _Table, spk2utt: _Table) -> None:
        listed: dict[str, str] = {}
        for spk, utts in spk2utt.values.items():
            line = spk2utt.line(spk)
            if list(utts) != sorted(utts, key=c_sort_key):
                self.report(DataDirError(spk2utt.path, "utterance list is not C-sorted", line, spk))
            for utt in utts:
                if utt in listed:
                    self.report(DataDirError(
                        spk2utt.path, f"utterance '{utt}' is also listed under speaker '{listed[utt]}'", line, spk))
                    continue
                listed[utt] = spk
                if utt not in utt2spk.values:
                    self.report(DataDirError(spk2utt.path, f"utterance '{utt}' is not in utt2spk", line, spk))
                elif utt2spk.values[utt] != spk:
                    self.report(DataDirError(
                        spk2utt.path, f"utterance '{utt}' belongs to speaker '{utt2spk.values[utt]}' in utt2spk",
                        line, spk))
        for utt, spk in utt2spk.values.items():
            if spk not in spk2utt.values:
                self.report(DataDirError(utt2spk.path, f"speaker '{spk}' has no entry in spk2utt",
                                         utt2spk.line(utt), utt))
            elif listed.get(utt) != spk:
                self.report(DataDirError(utt2spk.path, f"utterance is not listed under speaker '{spk}' in spk2utt",
                                         utt2spk.line(utt), utt))

    def check_segments(self, utt2spk: _Table, segments: _Table, wav: _Table | None) -> None:
        self.check_keys_match(segments, utt2spk, "utterance")
        if wav is None:
            self.report(DataDirError(segments.path, "segments exists but wav.scp does not"))
            return
        used = set()
        for utt, segment in segments.values.items():
            used.add(segment.recording)
            if segment.recording not in wav.values:
                self.report(DataDirError(
                    segments.path, f"recording '{segment.recording}' is not in wav.scp", segments.line(utt), utt))
        unused = [rec for rec in wav.values if rec not in used]
        if unused:
            logger.warning("%s: %d recording(s) are not used by any segment, e.g. '%s'",
                           wav.path, len(unused), unused[0])

    def check_files_exist(self, table: _Table, locate: Callable[[str], str | None]) -> None:
        missing: set[str] = set()
        for key, value in table.values.items():
            file = locate(value)
            if file is None or file in missing:
                continue
            if not Path(file).exists():
                missing.add(file)
                self.report(DataDirError(table.path, f"file '{file}' does not exist", table.line(key), key))

    def check_trials(self, trials_path: Path, utt2spk: _Table | None, check_references: bool,
                     enroll_utt2spk: dict[str, str] | None = None, enroll_dir: Path | None = None) -> None:
        entries = _scan(trials_path, self.report, strict=True)
        if not entries:
            self.report(DataDirError(trials_path, "file is empty"))
        trials = _parse_trials(trials_path, entries, self.report)
        if not check_references or utt2spk is None:
            return
        enroll_utts = utt2spk.values if enroll_utt2spk is None else enroll_utt2spk
        enroll_speakers = set(enroll_utts.values())
        enroll_where = "this dir" if enroll_dir is None else str(enroll_dir)
        for number, enroll, test, _ in trials:
            if test not in utt2spk.values:
                self.report(DataDirError(trials_path, f"test utterance '{test}' is not in utt2spk", number, enroll))
            if enroll not in enroll_utts and enroll not in enroll_speakers:
                self.report(DataDirError(
                    trials_path, f"enrolment '{enroll}' is neither an utterance nor a speaker of {enroll_where}",
                    number, enroll))


def validate_data_dir(
    path: PathLike,
    need_feats: bool = False,
    need_vad: bool = False,
    need_segments: bool = False,
    check_files_exist: bool = False,
    check_trials: bool = False,
    enroll_dir: PathLike | None = None,
    max_shown: int = 10,
    trials: PathLike | None = None,
) -> None:
    """Checks a data directory against the Kaldi contract (cf. Kaldi's ``utils/validate_data_dir.sh``).

    Checks: required files (``utt2spk``, ``spk2utt``, ``wav.scp`` or ``feats.scp``); each file
    non-empty, parseable, free of duplicate keys, blank lines, leading whitespace and CRs, and
    C-sorted; ``utt2spk`` also sorted by speaker; ``spk2utt`` consistent with ``utt2spk`` both
    ways; every utterance has audio (through ``segments`` when present, whose recordings must be
    in ``wav.scp``); ``feats.scp``, ``utt2dur`` cover exactly the utterances; ``utt2num_frames``
    and ``vad.scp`` cover exactly the ``feats.scp`` keys (or the utterances without features);
    ``trials`` parse; ``spk2gender`` (``m``/``f``) names exactly the speakers of ``spk2utt``. All
    problems are collected and raised together.

    Args:
        path: Data directory.
        need_feats: Require ``feats.scp``.
        need_vad: Require ``vad.scp``.
        need_segments: Require ``segments``.
        check_files_exist: Also check that audio files (not pipes) and feature/VAD archives exist.
        check_trials: Also check that every trial's test side is an utterance of this dir and its
            enrolment side an utterance or a speaker of it (off by default: enrolment often lives
            in another dir: give it as ``enroll_dir``).
        enroll_dir: With ``check_trials``, the data dir holding the enrolment side (its
            utterances or speakers), e.g. CN-Celeb's ``eval_enroll`` for ``eval_test/trials``.
        max_shown: How many problems the error message lists.
        trials: The trial list to check instead of ``path/trials`` (e.g. the user's own file that a
            recipe copied into its data dir, so that errors name the file the user can fix).

    Raises:
        DataDirValidationError: listing the problems; its path/line/key are those of the first.
        DataDirError: if ``path`` is not a directory.
    """
    data_dir = Path(path)
    if not data_dir.is_dir():
        raise DataDirError(data_dir, "data directory does not exist")
    check = _Validator(data_dir)

    utt2spk = check.load("utt2spk", _as_token, required="every data dir needs it")
    spk2utt = check.load("spk2utt", _as_tokens, required="make it from utt2spk with: "
                         "python -m speakernet.bin.fix_data_dir DIR (or tools/fix_data_dir.sh DIR)")
    wav = check.load("wav.scp", _as_text)
    segments = check.load("segments", _as_segment, required="need_segments" if need_segments else None)
    feats = check.load("feats.scp", _as_text, required="need_feats" if need_feats else None)
    vad = check.load("vad.scp", _as_text, required="need_vad" if need_vad else None)
    num_frames = check.load("utt2num_frames", _as_num_frames)
    utt2dur = check.load("utt2dur", _as_duration)
    spk2gender = check.load("spk2gender", _as_gender)
    if wav is None and feats is None:
        check.report(DataDirError(data_dir / "wav.scp", "neither wav.scp nor feats.scp exists"))

    if utt2spk is not None:
        check.check_utt2spk_speaker_order(utt2spk)
        if spk2utt is not None:
            check.check_spk2utt(utt2spk, spk2utt)
        if segments is not None:
            check.check_segments(utt2spk, segments, wav)
        elif wav is not None:
            check.check_keys_match(wav, utt2spk, "utterance")
        if feats is not None:
            check.check_keys_match(feats, utt2spk, "utterance")
        frames_reference = feats if feats is not None else utt2spk
        if num_frames is not None:
            check.check_keys_match(num_frames, frames_reference, "utterance")
        if vad is not None:
            check.check_keys_match(vad, frames_reference, "utterance")
        if utt2dur is not None:
            check.check_keys_match(utt2dur, utt2spk, "utterance")
    if spk2gender is not None and spk2utt is not None:
        check.check_keys_match(spk2gender, spk2utt, "speaker")

    if check_files_exist:
        if wav is not None:
            check.check_files_exist(wav, lambda value: None if is_pipe(value) or len(value.split()) > 1 else value)
        for table in (feats, vad):
            if table is not None:
                check.check_files_exist(table, _rxspecifier_file)

    trials_path = data_dir / "trials" if trials is None else Path(trials)
    if check_trials and not trials_path.is_file():
        check.report(DataDirError(trials_path, "file does not exist (trials were asked to be checked)"))
    if trials_path.is_file():
        enroll_utt2spk = read_scp(Path(enroll_dir) / "utt2spk") if check_trials and enroll_dir is not None else None
        check.check_trials(trials_path, utt2spk, check_trials, enroll_utt2spk,
                           Path(enroll_dir) if enroll_dir is not None else None)

    if check.problems:
        raise DataDirValidationError(data_dir, check.problems, max_shown)
    num_speakers = len(set(utt2spk.values.values())) if utt2spk else 0
    logger.info("validated data dir %s: %d utterances, %d speakers, files: %s", data_dir,
                len(utt2spk.values) if utt2spk else 0, num_speakers,
                " ".join(sorted(p.name for p in data_dir.iterdir() if p.name in DATA_DIR_FILES)))
