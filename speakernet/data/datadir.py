"""The data directory as one object: :class:`KaldiDataDir` loads, edits and writes a whole dir.

The per-file readers and writers it uses are in :mod:`speakernet.data.kaldi_dir`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from speakernet.data.kaldi_dir import (
    DataDirError,
    Segment,
    c_sort_key,
    read_feats_scp,
    read_segments,
    read_spk2gender,
    read_spk2utt,
    read_trials,
    read_utt2dur,
    read_utt2num_frames,
    read_utt2spk,
    read_vad_scp,
    read_wav_scp,
    spk2utt_to_utt2spk,
    utt2spk_to_spk2utt,
    write_scp,
    write_segments,
    write_spk2utt,
    write_trials,
    write_utt2dur,
    write_utt2num_frames,
)
from speakernet.utils.fileio import PathLike

T = TypeVar("T")


#: Files :class:`KaldiDataDir` reads and writes; anything else in a data dir is left alone.
DATA_DIR_FILES = (
    "wav.scp", "segments", "utt2spk", "spk2utt", "utt2num_frames", "utt2dur", "feats.scp", "vad.scp", "trials",
    "spk2gender",
)

#: Optional per-utterance files, by :class:`KaldiDataDir` attribute name and file name.
PER_UTT_FILES = {
    "feats_scp": "feats.scp", "vad_scp": "vad.scp", "utt2num_frames": "utt2num_frames", "utt2dur": "utt2dur",
}


@dataclass
class KaldiDataDir:
    """The contents of a Kaldi data directory; ``spk2utt`` is always derived from ``utt2spk``.

    Attributes:
        utt2spk: Utterance -> speaker.
        wav_scp: Recording (utterance, without segments) -> path or ``cmd |``; None if absent.
        segments: Utterance -> :class:`Segment`; None if absent.
        feats_scp: Utterance -> feature rxspecifier; None if absent.
        vad_scp: Utterance -> VAD rxspecifier; None if absent.
        utt2num_frames: Utterance -> frames; None if absent.
        utt2dur: Utterance -> seconds; None if absent.
        trials: ``(enroll, test, label)`` in file order; None if absent.
        spk2gender: Speaker -> ``"m"`` or ``"f"``; None if absent.
    """

    utt2spk: dict[str, str] = field(default_factory=dict)
    wav_scp: dict[str, str] | None = None
    segments: dict[str, Segment] | None = None
    feats_scp: dict[str, str] | None = None
    vad_scp: dict[str, str] | None = None
    utt2num_frames: dict[str, int] | None = None
    utt2dur: dict[str, float] | None = None
    trials: list[tuple[str, str, str]] | None = None
    spk2gender: dict[str, str] | None = None

    @classmethod
    def load(cls, path: PathLike) -> KaldiDataDir:
        """Reads whichever of :data:`DATA_DIR_FILES` exist in ``path``.

        Files need not be sorted (so that :func:`fix_data_dir` can load a broken dir), but
        every line must parse. ``utt2spk`` is derived from ``spk2utt`` if only the latter exists.

        Args:
            path: Data directory.

        Returns:
            The loaded directory.

        Raises:
            DataDirError: if the directory or both utt2spk and spk2utt are missing, or on a bad line.
        """
        path = Path(path)
        if not path.is_dir():
            raise DataDirError(path, "data directory does not exist")

        def optional(name: str, reader: Callable[[Path], T]) -> T | None:
            file = path / name
            return reader(file) if file.is_file() else None

        utt2spk = optional("utt2spk", read_utt2spk)
        if utt2spk is None:
            spk2utt = optional("spk2utt", read_spk2utt)
            if spk2utt is None:
                raise DataDirError(path / "utt2spk", "neither utt2spk nor spk2utt exists")
            utt2spk = spk2utt_to_utt2spk(spk2utt)
        return cls(
            utt2spk=utt2spk,
            wav_scp=optional("wav.scp", read_wav_scp),
            segments=optional("segments", read_segments),
            feats_scp=optional("feats.scp", read_feats_scp),
            vad_scp=optional("vad.scp", read_vad_scp),
            utt2num_frames=optional("utt2num_frames", read_utt2num_frames),
            utt2dur=optional("utt2dur", read_utt2dur),
            trials=optional("trials", read_trials),
            spk2gender=optional("spk2gender", read_spk2gender),
        )

    def save(self, path: PathLike) -> None:
        """Writes every present file into ``path``, each atomically and C-sorted (trials keep their order).

        Files of :data:`DATA_DIR_FILES` whose attribute is None are not touched.

        Args:
            path: Data directory (created if needed).
        """
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        write_scp(path / "utt2spk", self.utt2spk)
        write_spk2utt(path / "spk2utt", self.spk2utt)
        if self.wav_scp is not None:
            write_scp(path / "wav.scp", self.wav_scp)
        if self.segments is not None:
            write_segments(path / "segments", self.segments)
        if self.feats_scp is not None:
            write_scp(path / "feats.scp", self.feats_scp)
        if self.vad_scp is not None:
            write_scp(path / "vad.scp", self.vad_scp)
        if self.utt2num_frames is not None:
            write_utt2num_frames(path / "utt2num_frames", self.utt2num_frames)
        if self.utt2dur is not None:
            write_utt2dur(path / "utt2dur", self.utt2dur)
        if self.trials is not None:
            write_trials(path / "trials", self.trials)
        if self.spk2gender is not None:
            write_scp(path / "spk2gender", self.spk2gender)

    @property
    def spk2utt(self) -> dict[str, list[str]]:
        """Speaker -> C-sorted utterances, derived from ``utt2spk``."""
        return utt2spk_to_spk2utt(self.utt2spk)

    @property
    def utts(self) -> list[str]:
        """Utterance ids, C-sorted."""
        return sorted(self.utt2spk, key=c_sort_key)

    @property
    def speakers(self) -> list[str]:
        """Speaker ids, C-sorted."""
        return sorted(set(self.utt2spk.values()), key=c_sort_key)

    def present_files(self) -> list[str]:
        """Names of the files this object would write."""
        names = ["utt2spk", "spk2utt"]
        names += [name for attr, name in (("wav_scp", "wav.scp"), ("segments", "segments"), ("trials", "trials"),
                                                       ("spk2gender", "spk2gender"))
                  if getattr(self, attr) is not None]
        names += [name for attr, name in PER_UTT_FILES.items() if getattr(self, attr) is not None]
        return sorted(names)

    def subset(self, utts: Iterable[str], keep_trials: bool = False) -> KaldiDataDir:
        """A copy holding only ``utts`` (unknown ids are ignored).

        ``wav.scp`` keeps only the recordings the kept utterances use, ``spk2gender`` only the
        speakers left.

        Args:
            utts: Utterances to keep.
            keep_trials: Keep the trial list, minus trials that refer to an utterance or a
                speaker of this dir that the subset drops (ids from elsewhere, such as an
                enrolment dir, are kept); otherwise drop the trial list.

        Returns:
            The subset.
        """
        # Work in O(len(utts)) rather than O(size of the dir): split_data_dir calls this once per job.
        keep = sorted({utt for utt in utts if utt in self.utt2spk}, key=c_sort_key)

        def restrict(table: dict[str, T] | None) -> dict[str, T] | None:
            return None if table is None else {key: table[key] for key in keep if key in table}

        utt2spk = {utt: self.utt2spk[utt] for utt in keep}
        segments = restrict(self.segments)
        wav_scp = None
        if self.wav_scp is not None:
            recordings = {seg.recording for seg in segments.values()} if segments is not None else keep
            wav_scp = {rec: self.wav_scp[rec] for rec in recordings if rec in self.wav_scp}
        trials = None
        if keep_trials and self.trials is not None:
            gone = (set(self.utt2spk) - set(keep)) | (set(self.utt2spk.values()) - set(utt2spk.values()))
            trials = [trial for trial in self.trials if trial[0] not in gone and trial[1] not in gone]
        return KaldiDataDir(
            utt2spk=utt2spk,
            wav_scp=wav_scp,
            segments=segments,
            feats_scp=restrict(self.feats_scp),
            vad_scp=restrict(self.vad_scp),
            utt2num_frames=restrict(self.utt2num_frames),
            utt2dur=restrict(self.utt2dur),
            trials=trials,
            spk2gender=None if self.spk2gender is None else {
                spk: self.spk2gender[spk] for spk in set(utt2spk.values()) if spk in self.spk2gender},
        )
