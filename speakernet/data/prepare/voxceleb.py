"""VoxCeleb1 and VoxCeleb2 (official layouts) -> Kaldi data directories and trial lists.

VoxCeleb1: ``<root>/wav/<id1xxxx>/<video>/<nnnnn>.wav`` (dev and test archives unpack into the
same ``wav/``). Utterance ids are Kaldi's ``<spk>-<video>-<nnnnn>``, e.g.
``id10270-5r0dWxy17C8-00001``. The 40 verification test speakers are taken from
``vox1_meta.csv`` (column ``Set``) when present, otherwise from the speakers of the O trial list
(``veri_test2.txt`` or ``veri_test.txt``); ``iden_split.txt`` is the identification split (per
utterance, over all 1,251 speakers) and says nothing about the verification split, so it is
not used.

Trial lists ``1|0 <spk>/<video>/<utt>.wav <spk>/<video>/<utt>.wav`` become Kaldi trials
``<enroll-utt> <test-utt> target|nontarget``: O into ``vox1_test/trials_vox1_O``, E and H (which use
dev speakers) into ``vox1_all/trials_vox1_E`` and ``trials_vox1_H``. The cleaned lists
(``*2.txt``) are preferred over the original ones.

VoxCeleb2: ``<root>/dev/aac/<id0xxxx>/<video>/<n>.m4a``; ``wav.scp`` decodes each file through
an ``ffmpeg`` pipe (as Kaldi's ``make_voxceleb2.pl`` does). Files already converted to ``.wav``
(as WeSpeaker's ``m4a2wav.pl`` leaves them) are listed by path instead.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Container, Iterator, Sequence
from pathlib import Path

from speakernet.data.kaldi_dir import DataDirError
from speakernet.data.audio import ffmpeg_pipe
from speakernet.data.prepare import (
    ScannedFile,
    iter_list_fields,
    scan_audio_tree,
    scp_path,
    unique_by_key,
    write_data_dir,
)
from speakernet.utils.fileio import PathLike

logger = logging.getLogger(__name__)

# Condition -> file names, the cleaned list first.
VOX1_TRIAL_LISTS: dict[str, tuple[str, ...]] = {
    "O": ("veri_test2.txt", "veri_test.txt"),
    "E": ("list_test_all2.txt", "list_test_all.txt"),
    "H": ("list_test_hard2.txt", "list_test_hard.txt"),
}
VOX1_META = "vox1_meta.csv"


def vox_utt_id(speaker: str, video: str, stem: str) -> str:
    """Kaldi VoxCeleb utterance id ``<spk>-<video>-<stem>`` (speaker-prefixed, so sorting by utt sorts by spk)."""
    return f"{speaker}-{video}-{stem}"


def _audio_base(root: Path, candidates: Sequence[str]) -> Path:
    for candidate in candidates:
        if (root / candidate).is_dir():
            return root / candidate
    return root


def _find_file(names: Sequence[str], search_dirs: Sequence[Path]) -> Path | None:
    for name in names:
        for directory in search_dirs:
            if (directory / name).is_file():
                return directory / name
    return None


def read_vox1_meta(path: PathLike) -> dict[str, str]:
    """Reads VoxCeleb1's ``vox1_meta.csv`` (tab-separated, header with a ``Set`` column).

    Args:
        path: The meta file.

    Returns:
        Speaker id -> ``"dev"`` or ``"test"``.

    Raises:
        DataDirError: on a missing ``Set``/id column, a short row or an unknown set name.
    """
    path = Path(path)
    speaker_set: dict[str, str] = {}
    with open(path, encoding="utf-8") as handle:
        header = [column.strip() for column in handle.readline().rstrip("\n").split("\t")]
        if "Set" not in header:
            raise DataDirError(path, f"header has no 'Set' column: {header}", 1)
        set_column = header.index("Set")
        for number, line in enumerate(handle, start=2):
            fields = [field.strip() for field in line.rstrip("\n").split("\t")]
            if not any(fields):
                continue
            if len(fields) <= set_column:
                raise DataDirError(path, f"expected at least {set_column + 1} tab-separated fields", number, fields[0])
            speaker, which = fields[0], fields[set_column]
            if which not in ("dev", "test"):
                raise DataDirError(path, f"'Set' must be dev or test, got '{which}'", number, speaker)
            speaker_set[speaker] = which
    return speaker_set


def _trial_key(path: Path, number: int, field: str) -> str:
    parts = field.split("/")
    if len(parts) != 3 or not all(parts):
        raise DataDirError(path, f"expected '<spk>/<video>/<utt>.wav', got '{field}'", number, field)
    stem = parts[2].rsplit(".", 1)[0]
    return vox_utt_id(parts[0], parts[1], stem)


def _trial_lines(path: Path) -> Iterator[tuple[int, list[str]]]:
    # The first field is the label, not a key, so a field-count error names no key.
    return iter_list_fields(path, 3, "'1|0 <enroll wav> <test wav>'", key_field=None)


def read_voxceleb_trials(
    path: PathLike, known_utts: Container[str], allow_missing: bool = False
) -> list[tuple[str, str, str]]:
    """Converts an official VoxCeleb1 trial list into Kaldi trials.

    Args:
        path: List with lines ``1|0 <spk>/<video>/<utt>.wav <spk>/<video>/<utt>.wav``.
        known_utts: Utterance ids that exist in the data directory the trials belong to.
        allow_missing: Skip (and count in a warning) lines whose audio is not in ``known_utts``
            instead of failing.

    Returns:
        ``(enroll, test, "target"|"nontarget")`` in file order.

    Raises:
        DataDirError: on a malformed line, an unknown label, or (unless ``allow_missing``) a line
            referencing audio not in ``known_utts``, naming the list file, the line and the key.
    """
    path = Path(path)
    trials: list[tuple[str, str, str]] = []
    skipped = 0
    for number, fields in _trial_lines(path):
        if fields[0] not in ("0", "1"):
            raise DataDirError(path, f"label must be 1 or 0, got '{fields[0]}'", number, fields[1])
        enroll = _trial_key(path, number, fields[1])
        test = _trial_key(path, number, fields[2])
        missing = [(key, field) for key, field in ((enroll, fields[1]), (test, fields[2])) if key not in known_utts]
        if missing:
            if not allow_missing:
                key, field = missing[0]
                raise DataDirError(path, f"audio '{field}' is not in the prepared data (no such wav under the "
                                         "corpus root, or not a speaker of this set)", number, key)
            skipped += 1
            continue
        trials.append((enroll, test, "target" if fields[0] == "1" else "nontarget"))
    if skipped:
        logger.warning("%s: skipped %d trials whose audio is missing (--allow-missing)", path, skipped)
    return trials


def _test_speakers_from_trials(path: Path) -> set[str]:
    speakers: set[str] = set()
    for number, fields in _trial_lines(path):
        for field in fields[1:]:
            _trial_key(path, number, field)
            speakers.add(field.split("/")[0])
    return speakers


def _log_trials(name: str, trials: Sequence[tuple[str, str, str]]) -> None:
    targets = sum(1 for trial in trials if trial[2] == "target")
    logger.info("%s: %d trials (%d target, %d nontarget)", name, len(trials), targets, len(trials) - targets)


def prepare_voxceleb1(
    root: PathLike, out_dir: PathLike, trial_lists_dir: PathLike | None = None, allow_missing: bool = False
) -> dict[str, Path]:
    """Prepares ``vox1_dev``, ``vox1_test`` and ``vox1_all`` data directories with their trial lists.

    Args:
        root: VoxCeleb1 root holding ``wav/<id1xxxx>/<video>/<nnnnn>.wav`` (or ``root`` is ``wav/``).
        out_dir: Where the data directories are written.
        trial_lists_dir: Directory holding the official trial lists and ``vox1_meta.csv``;
            default: ``root``, then ``root/..``.
        allow_missing: Drop trials whose audio is missing instead of failing.

    Returns:
        Data directory name -> path, for the directories written (an empty dev or test part,
        e.g. when only the test archive was downloaded, is skipped with a warning).

    Raises:
        FileNotFoundError: if no audio is found, or neither ``vox1_meta.csv`` nor an O trial list
            is available to tell the test speakers.
        DataDirError: on a malformed meta file or trial list, or a trial referencing missing audio.
    """
    root = Path(root).resolve()
    out_dir = Path(out_dir)
    search_dirs = [Path(trial_lists_dir).resolve()] if trial_lists_dir is not None else [root, root.parent]
    files = scan_audio_tree(_audio_base(root, ["wav"]), depth=2, extensions=[".wav"])
    if not files:
        raise FileNotFoundError(f"{root}: no VoxCeleb1 audio found under wav/<spk>/<video>/*.wav")

    wav_scp: dict[str, str] = {}
    utt2spk: dict[str, str] = {}
    for scanned in files:
        speaker, video = scanned.dirs
        utt = vox_utt_id(speaker, video, scanned.stem)
        wav_scp[utt] = scp_path(scanned.path)
        utt2spk[utt] = speaker

    lists = {condition: _find_file(names, search_dirs) for condition, names in VOX1_TRIAL_LISTS.items()}
    for condition, found in lists.items():
        if found is None:
            logger.warning("VoxCeleb1-%s trial list (%s) not found in %s; skipped", condition,
                           " or ".join(VOX1_TRIAL_LISTS[condition]), ", ".join(str(d) for d in search_dirs))
        else:
            logger.info("VoxCeleb1-%s trial list: %s", condition, found)

    meta = _find_file([VOX1_META], search_dirs)
    if meta is not None:
        test_speakers = {spk for spk, which in read_vox1_meta(meta).items() if which == "test"}
        logger.info("Test speakers from %s: %d", meta, len(test_speakers))
    elif lists["O"] is not None:
        test_speakers = _test_speakers_from_trials(lists["O"])
        logger.info("Test speakers from the speakers of %s: %d", lists["O"], len(test_speakers))
    else:
        raise FileNotFoundError(f"cannot tell the VoxCeleb1 test speakers: none of {VOX1_META}, "
                                f"{', '.join(VOX1_TRIAL_LISTS['O'])} in {', '.join(str(d) for d in search_dirs)}")

    parts = {
        "vox1_dev": {utt for utt, spk in utt2spk.items() if spk not in test_speakers},
        "vox1_test": {utt for utt, spk in utt2spk.items() if spk in test_speakers},
        "vox1_all": set(utt2spk),
    }
    trials: dict[str, dict[str, list[tuple[str, str, str]]]] = {name: {} for name in parts}
    for condition, found in lists.items():
        if found is None:
            continue
        name = "vox1_test" if condition == "O" else "vox1_all"
        started = time.perf_counter()
        trial_list = read_voxceleb_trials(found, parts[name], allow_missing=allow_missing)
        logger.info("Converted %s in %.2f s", found, time.perf_counter() - started)
        _log_trials(f"{name}/trials_vox1_{condition}", trial_list)
        trials[name][f"trials_vox1_{condition}"] = trial_list

    written: dict[str, Path] = {}
    for name, utts in parts.items():
        if not utts:
            logger.warning("%s would be empty (no audio of its speakers under %s); not written", name, root)
            continue
        written[name] = write_data_dir(
            out_dir / name,
            {utt: wav_scp[utt] for utt in utts},
            {utt: utt2spk[utt] for utt in utts},
            trials=trials[name],
        )
    return written


def _vox2_scp_value(scanned: ScannedFile, sample_rate: int) -> str:
    return scp_path(scanned.path) if scanned.suffix == ".wav" else ffmpeg_pipe(scanned.path, sample_rate)


def prepare_voxceleb2_dev(
    root: PathLike, out_dir: PathLike, name: str = "vox2_dev", sample_rate: int = 16000
) -> Path:
    """Prepares the VoxCeleb2 dev data directory (5,994 speakers in the full corpus).

    Args:
        root: VoxCeleb2 root holding ``dev/aac/<id0xxxx>/<video>/<n>.m4a``; ``root`` may also be
            ``dev`` or ``dev/aac`` itself.
        out_dir: Where the data directory is written.
        name: Name of the data directory.
        sample_rate: Rate (Hz) the ffmpeg pipes decode to.

    Returns:
        The data directory ``out_dir/name``.

    Raises:
        FileNotFoundError: if no ``.m4a``/``.wav`` file is found.
    """
    root = Path(root).resolve()
    base = _audio_base(root, ["dev/aac", "aac"])
    files = scan_audio_tree(base, depth=2, extensions=[".m4a", ".wav"])
    if not files:
        raise FileNotFoundError(f"{base}: no VoxCeleb2 audio found under <spk>/<video>/*.m4a")
    chosen = unique_by_key(((vox_utt_id(*f.dirs, f.stem), f) for f in files), preference=[".wav", ".m4a"])
    if any(f.suffix == ".m4a" for f in chosen.values()) and shutil.which("ffmpeg") is None:
        logger.warning("ffmpeg is not on PATH; the wav.scp pipes of %s need it to decode .m4a", name)
    wav_scp = {utt: _vox2_scp_value(f, sample_rate) for utt, f in chosen.items()}
    utt2spk = {utt: f.dirs[0] for utt, f in chosen.items()}
    return write_data_dir(Path(out_dir) / name, wav_scp, utt2spk)
