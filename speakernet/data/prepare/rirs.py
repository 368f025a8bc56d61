"""RIRS_NOISES (openslr 28) -> source dirs of room impulse responses and of isotropic noises.

Layout read (``<root>`` is the ``RIRS_NOISES`` folder; either part may be absent, not both):

* ``<root>/simulated_rirs/{smallroom,mediumroom,largeroom}/Room<N>/Room<N>-<M>.wav`` ->
  ``rirs_<room type>``: category ("speaker") ``<type>_Room<N>`` (one room), utterance
  ``<type>_Room<N>-<M>`` (Kaldi's ``--rir-id`` with ``_`` after the type). When
  ``simulated_rirs/<type>/rir_list`` exists (``--rir-id ... --room-id ... <path>`` lines), it
  decides which files are taken: listed files that are missing, and files it does not list, are
  counted in a warning and listed in ``dropped.tsv``.
* ``<root>/real_rirs_isotropic_noises/*.wav`` -> ``rirs_real`` (the measured RIRs) and
  ``noise_isotropic`` (the isotropic noises, a noise source of their own): category the
  database, the file name's first ``_`` field (``RWCP``, ``air``, ``RVB2014``). Which file is a
  noise comes from ``noise_list`` (else ``rir_list``, else the name: ``_noise_`` in it). Multi-channel
  files are kept as they are; the loaders take the first channel.

``pointsource_noises/`` is not read (Kaldi's VoxCeleb recipe uses no point-source noise); it is
named in the log. See :mod:`speakernet.data.prepare.noise_dir` for the files written.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Sequence
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

#: Simulated room types of RIRS_NOISES, by size.
ROOM_TYPES = ("smallroom", "mediumroom", "largeroom")
SIMULATED = "simulated_rirs"
REAL = "real_rirs_isotropic_noises"
_LAYOUT = (f"<root>/{SIMULATED}/{{{','.join(ROOM_TYPES)}}}/Room*/Room*-*.wav and/or <root>/{REAL}/*.wav")


def read_list_paths(list_file: Path, root: Path, part: str) -> list[Path]:
    """The audio paths (last field) of a Kaldi ``rir_list`` / ``noise_list``, resolved under ``root``.

    A listed path is ``RIRS_NOISES/<part>/...`` (relative to the corpus's parent); it is taken
    from its ``<part>`` component on, below ``root``.

    Raises:
        ValueError: on a line whose path does not contain ``<part>``.
    """
    paths = []
    for number, fields in iter_list_fields(list_file, None, "--option value ... <path>"):
        parts = Path(fields[-1]).parts
        if part not in parts:
            raise ValueError(f"{list_file}:{number}: expected a path through {part}/, got '{fields[-1]}'")
        paths.append(root.joinpath(*parts[parts.index(part):]))
    return paths


def _apply_list(
    list_file: Path, root: Path, part: str, found: dict[Path, str], dropped: dict[str, str], what: str,
    utt_of: Callable[[Path], str],
) -> set[Path]:
    """The files a list takes; listed-but-missing and found-but-unlisted files go to ``dropped``."""
    listed_paths = read_list_paths(list_file, root, part)
    wanted = set(listed_paths)
    missing = [path for path in listed_paths if path not in found]
    unlisted = [utt for path, utt in found.items() if path not in wanted]
    for path in missing:
        dropped[utt_of(path)] = f"missing_file {path}"
    for path, utt in found.items():
        if path not in wanted:
            dropped[utt] = f"not_in_list {path}"
    if missing:
        logger.warning("%s: %d file(s) listed in %s do not exist: %s", what, len(missing), list_file,
                       listed([relative(str(path), root) for path in missing]))
    if unlisted:
        logger.warning("%s: %d file(s) are not listed in %s and are left out: %s", what, len(unlisted), list_file,
                       listed(unlisted))
    return wanted


def _simulated(root: Path, room_type: str) -> tuple[list[SourceEntry], dict[str, str]]:
    type_dir = root / SIMULATED / room_type
    skipped: Counter[str] = Counter()
    files = scan_audio_tree(type_dir, depth=None, extensions=(".wav",), skipped=skipped)
    misplaced = [relative(scanned.path, root) for scanned in files if len(scanned.dirs) != 1]
    if misplaced:
        logger.warning("%s: %d wav file(s) not at %s/%s/Room*/*.wav are left out: %s", root, len(misplaced),
                       SIMULATED, room_type, listed(misplaced))

    def entry(path: Path) -> SourceEntry:
        room, stem = path.parent.name, path.stem
        category = source_token(f"{room_type}_{room}")
        utt = category + stem[len(room):] if stem.startswith(f"{room}-") else source_utt_id(category, stem)
        return SourceEntry(utt, category, str(path))

    entries = {Path(scanned.path): entry(Path(scanned.path)) for scanned in files if len(scanned.dirs) == 1}
    dropped: dict[str, str] = {}
    list_file = type_dir / "rir_list"
    if list_file.is_file():
        wanted = _apply_list(list_file, root, SIMULATED, {path: item.utt for path, item in entries.items()},
                             dropped, f"{root}: {room_type}", lambda path: entry(path).utt)
        entries = {path: entry for path, entry in entries.items() if path in wanted}
    log_skipped(str(type_dir), skipped, expected=("", ".tsv"))
    if not entries:
        raise ValueError(f"{type_dir}: no usable RIRs (expected {SIMULATED}/{room_type}/Room*/Room*-*.wav)")
    return list(entries.values()), dropped


def _real(root: Path) -> dict[str, tuple[list[SourceEntry], dict[str, str]]]:
    real_dir = root / REAL
    skipped: Counter[str] = Counter()
    files = scan_audio_tree(real_dir, depth=0, extensions=(".wav",), skipped=skipped)
    by_path = {Path(scanned.path): scanned for scanned in files}

    def entry(path: Path) -> SourceEntry:
        category = source_token(path.stem.split("_", 1)[0])
        return SourceEntry(source_utt_id(category, path.stem), category, str(path))

    noise_list, rir_list = real_dir / "noise_list", real_dir / "rir_list"
    if noise_list.is_file():
        noises = set(read_list_paths(noise_list, root, REAL))
    elif rir_list.is_file():
        noises = set(by_path) - set(read_list_paths(rir_list, root, REAL))
    else:
        noises = {path for path in by_path if "_noise_" in path.stem}
    result: dict[str, tuple[list[SourceEntry], dict[str, str]]] = {}
    for name, paths, list_file in (("rirs_real", set(by_path) - noises, rir_list),
                                   ("noise_isotropic", noises, noise_list)):
        found = {path: entry(path).utt for path in by_path if path in paths}
        dropped: dict[str, str] = {}
        if list_file.is_file():
            wanted = _apply_list(list_file, root, REAL, found, dropped, f"{root}: {name}", lambda path: entry(path).utt)
            found = {path: utt for path, utt in found.items() if path in wanted}
        if found:
            result[name] = ([entry(path) for path in sorted(found)], dropped)
        else:
            logger.warning("%s: no %s files, %s is not written", real_dir, "noise" if "noise" in name else "RIR", name)
    log_skipped(str(real_dir), skipped, expected=("", ".txt"))
    return result


def prepare_rirs(
    root: PathLike, out_dir: PathLike, room_types: Sequence[str] | None = None, real: bool = True
) -> dict[str, SourceSummary]:
    """Writes the RIR and isotropic-noise source dirs of a RIRS_NOISES tree (see the module docstring).

    Args:
        root: The ``RIRS_NOISES`` folder.
        out_dir: Parent of the data dirs written (``rirs_smallroom``, ..., ``rirs_real``, ``noise_isotropic``).
        room_types: Simulated room types to take (each must exist); None: those present.
        real: Whether to read ``real_rirs_isotropic_noises/`` when present.

    Returns:
        Data dir name -> what was written.

    Raises:
        FileNotFoundError: if ``root`` is not a directory.
        ValueError: on a tree with neither part, an unknown or missing room type, a room type
            without RIRs, a malformed list file, or an ``out_dir`` that would replace ``root``.
    """
    root = Path(root).resolve()
    out_dir = Path(out_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: RIRS_NOISES directory does not exist")
    check_out_dir(root, out_dir)
    if room_types is None:
        chosen = [kind for kind in ROOM_TYPES if (root / SIMULATED / kind).is_dir()]
    else:
        unknown = [kind for kind in room_types if kind not in ROOM_TYPES]
        if unknown:
            raise ValueError(f"unknown room type(s) {', '.join(unknown)}; valid: {', '.join(ROOM_TYPES)}")
        absent = [kind for kind in room_types if not (root / SIMULATED / kind).is_dir()]
        if absent:
            raise ValueError(f"{root}: missing {', '.join(f'{SIMULATED}/{kind}/' for kind in absent)} "
                             f"(expected {_LAYOUT})")
        chosen = list(room_types)
    use_real = real and (root / REAL).is_dir()
    if not chosen and not use_real:
        raise ValueError(f"{root}: not a RIRS_NOISES root: expected {_LAYOUT}")
    if (root / "pointsource_noises").is_dir():
        logger.info("%s: pointsource_noises/ is not read (no point-source noise, as in Kaldi's VoxCeleb recipe)", root)
    plans = {f"rirs_{kind}": _simulated(root, kind) for kind in chosen}
    if use_real:
        plans.update(_real(root))
    return {name: write_source_dir(out_dir / name, entries, f"RIRS_NOISES {name}", dropped)
            for name, (entries, dropped) in plans.items()}
