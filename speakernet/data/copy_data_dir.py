"""Copying a user's data dir into a recipe's own (Kaldi's ``utils/copy_data_dir.sh``).

A recipe writes into its data dirs (features, trial lists), so it works on copies: the user's
files are never modified.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from speakernet.data.kaldi_dir import is_pipe, read_trials, read_wav_scp, write_scp
from speakernet.data.validate import validate_data_dir
from speakernet.utils.fileio import PathLike, atomic_dir

logger = logging.getLogger(__name__)

#: Files that describe someone's features (archives the recipe does not own): not copied, since the
#: recipe computes its own from ``wav.scp``.
FEATURE_FILES = ("feats.scp", "vad.scp", "cmvn.scp", "utt2num_frames", "frame_shift")

#: Relative wav.scp paths checked for existence (none of them there: the wrong base directory).
MAX_CHECKED = 20


def copy_data_dir(src: PathLike, dst: PathLike, trials: PathLike | None = None,
                  relative_to: PathLike | None = None) -> list[str]:
    """Validates ``src`` and copies its top-level files, except :data:`FEATURE_FILES`, to ``dst``.

    Args:
        src: A Kaldi data dir (``wav.scp``, ``utt2spk``, ...).
        dst: The copy (replaced atomically if it exists); must not be ``src`` or inside it.
        trials: A trial list to copy in as ``dst/trials`` (replacing one ``src`` has).
        relative_to: The directory relative ``wav.scp`` paths are relative to (where the user runs
            their tools, Kaldi's convention); they become absolute in the copy, which is read from
            another directory. None: copied as they are.

    Returns:
        The names of the files copied.

    Raises:
        FileNotFoundError: if ``src`` or ``trials`` does not exist.
        ValueError: if ``dst`` is ``src`` or inside it.
        DataDirError: if ``src`` or ``trials`` is malformed (file, line and key named); whether the
            trials' ids are in the dirs is the caller's check (their enrol side may be another dir).
    """
    src, dst = Path(src), Path(dst)
    if not src.is_dir():
        raise FileNotFoundError(f"data dir {src} does not exist")
    if dst.resolve() == src.resolve() or src.resolve() in dst.resolve().parents:
        raise ValueError(f"cannot copy data dir {src} into {dst}: the copy would be inside the original")
    if trials is not None:
        if not Path(trials).is_file():
            raise FileNotFoundError(f"trial list {trials} does not exist")
        read_trials(trials)  # a malformed list fails here, naming its line
    if not (src / "wav.scp").is_file():
        raise FileNotFoundError(f"{src} has no wav.scp: a recipe needs the audio to compute its own features")
    # The trial list is checked against the dirs by the caller: its enrol side may be another dir.
    validate_data_dir(src)
    copied: list[str] = []
    skipped = sorted(path.name for path in src.iterdir() if path.name in FEATURE_FILES)
    with atomic_dir(dst) as tmp:
        for path in sorted(src.iterdir()):
            if not path.is_file() or path.name in FEATURE_FILES or path.name.startswith("."):
                continue
            if path.name == "trials" and trials is not None:
                continue
            if path.name == "wav.scp" and relative_to is not None:
                _absolute_wav_scp(path, tmp / path.name, Path(relative_to))
            else:
                shutil.copyfile(path, tmp / path.name)
            copied.append(path.name)
        if trials is not None:
            shutil.copyfile(trials, tmp / "trials")
            copied.append("trials")
    logger.info("copied data dir %s -> %s: %s%s", src, dst, " ".join(sorted(copied)),
                f" (not copied, the recipe makes its own features: {' '.join(skipped)})" if skipped else "")
    return sorted(copied)


def _absolute_wav_scp(src: Path, dst: Path, base: Path) -> None:
    """Copies ``wav.scp`` with its relative file paths made absolute from ``base`` (pipes as they are).

    Raises:
        FileNotFoundError: when none of the first :data:`MAX_CHECKED` of them is there from ``base``.
    """
    wav_scp = read_wav_scp(src)
    relative = {key: value for key, value in wav_scp.items() if not is_pipe(value) and not Path(value).is_absolute()}
    if not relative:
        shutil.copyfile(src, dst)
        return
    resolved = {key: str((base / value).resolve()) for key, value in relative.items()}
    if not any(Path(path).exists() for path in list(resolved.values())[:MAX_CHECKED]):
        key = next(iter(relative))
        raise FileNotFoundError(
            f"{src}: its relative audio paths are not there from {base} (e.g. '{relative[key]}' of '{key}'); "
            "run from the directory they are relative to, or make them absolute")
    logger.info("%s: %d relative audio paths taken from %s", src, len(relative), base)
    write_scp(dst, {**wav_scp, **resolved}, sort=False)
