"""MUSAN (openslr 17) -> three source dirs, ``musan_music``, ``musan_speech`` and ``musan_noise``.

Layout: ``<root>/{music,speech,noise}/<subset>/*.wav`` (e.g. ``music/fma/music-fma-0000.wav``),
as Kaldi's ``steps/data/make_musan.py`` reads it. The category ("speaker") of a file is its
subset (``fma``, ``fma_western_art``, ``librivox``, ``free_sound``, ...), the utterance id
``<subset>-<file stem>``; see :mod:`speakernet.data.prepare.noise_dir` for the files written.

Music with vocals: each ``music/<subset>/ANNOTATIONS`` has a line ``<file id> <genres> <Y|N>
<artist> ...`` per file, the third field saying whether it has vocals. Kaldi's VoxCeleb recipe
keeps them (``use_vocals=true``), and so does the default here; ``exclude_vocals=True`` leaves out
the music files annotated ``Y`` and those no ANNOTATIONS file names (whether they have vocals is
unknown), listing both in ``musan_music/dropped.tsv``.

Nothing is dropped silently: wav files at another depth than ``<type>/<subset>/``, other files
(the corpus's README, LICENSE and ANNOTATIONS files are expected and only logged) and unreadable
files are counted in the log, and the files left out are listed in each dir's ``dropped.tsv``.
"""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

from speakernet.data.prepare import iter_list_fields, scan_audio_tree
from speakernet.data.prepare.noise_dir import (
    SourceEntry,
    SourceSummary,
    check_out_dir,
    listed,
    log_skipped,
    relative,
    source_token,
    source_utt_id,
    write_source_dir,
)
from speakernet.utils.fileio import PathLike

logger = logging.getLogger(__name__)

#: MUSAN's three parts, each written to ``musan_<part>``.
MUSAN_PARTS = ("music", "speech", "noise")
_EXPECTED_OTHER_FILES = ("", ".txt")  # README, LICENSE, ANNOTATIONS (no extension) and *.txt notes


def read_vocals(music_dir: Path) -> dict[str, bool] | None:
    """File id -> has vocals, from every ``<music_dir>/<subset>/ANNOTATIONS``; None if there is none.

    Raises:
        DataDirError: on a line with fewer than 3 fields or a vocals field other than ``Y``/``N``.
    """
    files = sorted(music_dir.glob("*/ANNOTATIONS"))
    if not files:
        return None
    vocals: dict[str, bool] = {}
    for path in files:
        for number, fields in iter_list_fields(path, None, "<file id> <genres> <Y|N> ..."):
            if len(fields) < 3 or fields[2] not in ("Y", "N"):
                raise ValueError(f"{path}:{number}: expected '<file id> <genres> <Y|N> <artist> ...', "
                                 f"got '{' '.join(fields)}'")
            vocals[fields[0]] = fields[2] == "Y"
    return vocals


def prepare_musan(root: PathLike, out_dir: PathLike, exclude_vocals: bool = False) -> dict[str, SourceSummary]:
    """Writes ``<out_dir>/musan_{music,speech,noise}`` from a MUSAN tree (see the module docstring).

    Args:
        root: MUSAN root, holding ``music/``, ``speech/`` and ``noise/``.
        out_dir: Parent of the three data dirs (each replaced as a whole).
        exclude_vocals: Leave out music annotated with vocals (needs the ANNOTATIONS files).

    Returns:
        Part name (``music``) -> what was written.

    Raises:
        FileNotFoundError: if ``root`` is not a directory.
        ValueError: if a part folder is missing or holds no ``<subset>/*.wav``, ``exclude_vocals``
            is asked without ANNOTATIONS files, or ``out_dir`` would replace ``root``.
    """
    root = Path(root).resolve()
    out_dir = Path(out_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: MUSAN directory does not exist")
    check_out_dir(root, out_dir)
    missing = [part for part in MUSAN_PARTS if not (root / part).is_dir()]
    if missing:
        raise ValueError(f"{root}: not a MUSAN root: expected <root>/{{music,speech,noise}}/<subset>/*.wav, "
                         f"missing {', '.join(f'{part}/' for part in missing)}")
    vocals = read_vocals(root / "music")
    if exclude_vocals and vocals is None:
        raise ValueError(f"{root / 'music'}: exclude_vocals needs music/<subset>/ANNOTATIONS files, found none")
    plans: dict[str, tuple[list[SourceEntry], dict[str, str]]] = {}
    for part in MUSAN_PARTS:
        skipped: Counter[str] = Counter()
        files = scan_audio_tree(root / part, depth=None, extensions=(".wav",), skipped=skipped)
        misplaced = [relative(scanned.path, root) for scanned in files if len(scanned.dirs) != 1]
        if misplaced:
            logger.warning("%s: %d wav file(s) not at %s/<subset>/*.wav are left out: %s", root, len(misplaced), part,
                           listed(misplaced))
        entries, dropped = [], {}
        for scanned in files:
            if len(scanned.dirs) != 1:
                continue
            category = source_token(scanned.dirs[0])
            utt = source_utt_id(category, scanned.stem)
            if part == "music" and exclude_vocals:
                has_vocals = vocals.get(scanned.stem) if vocals is not None else None
                if has_vocals is None or has_vocals:
                    reason = "not_annotated" if has_vocals is None else "vocals"
                    dropped[utt] = f"{reason} {scanned.path}"
                    continue
            entries.append(SourceEntry(utt, category, scanned.path))
        if not entries:
            raise ValueError(f"{root / part}: no usable <subset>/*.wav files (expected e.g. "
                             f"{part}/<subset>/{part}-<subset>-0000.wav; {len(files)} wav file(s) at any depth)")
        if dropped:
            counts = Counter(reason.split(" ", 1)[0] for reason in dropped.values())
            logger.warning("%s: %d music file(s) left out by exclude_vocals (%s)", root, len(dropped),
                           ", ".join(f"{count} {token}" for token, count in sorted(counts.items())))
        log_skipped(str(root / part), skipped, expected=_EXPECTED_OTHER_FILES)
        plans[part] = (entries, dropped)
    return {part: write_source_dir(out_dir / f"musan_{part}", entries, f"MUSAN {part}", dropped)
            for part, (entries, dropped) in plans.items()}
