"""Fixtures for data-dir tests: small Kaldi data dirs written line by line, so line numbers are known."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

# Three speakers, five utterances; ids are speaker-prefixed, every file C-sorted.
UTT2SPK = {
    "spkA-u1": "spkA",
    "spkA-u2": "spkA",
    "spkB-u1": "spkB",
    "spkB-u2": "spkB",
    "spkC-u1": "spkC",
}
NUM_FRAMES = {"spkA-u1": 300, "spkA-u2": 150, "spkB-u1": 90, "spkB-u2": 400, "spkC-u1": 250}


def valid_files() -> dict[str, str]:
    """File name -> text of a valid data dir with features, VAD, durations and trials."""
    utts = list(UTT2SPK)
    return {
        "wav.scp": "".join(f"{utt} audio/{utt}.wav\n" for utt in utts),
        "utt2spk": "".join(f"{utt} {spk}\n" for utt, spk in UTT2SPK.items()),
        "spk2utt": "spkA spkA-u1 spkA-u2\nspkB spkB-u1 spkB-u2\nspkC spkC-u1\n",
        "feats.scp": "".join(f"{utt} feats/fbank.1.ark:{100 * i + 9}\n" for i, utt in enumerate(utts)),
        "vad.scp": "".join(f"{utt} feats/vad.1.ark:{100 * i + 9}\n" for i, utt in enumerate(utts)),
        "utt2num_frames": "".join(f"{utt} {NUM_FRAMES[utt]}\n" for utt in utts),
        "utt2dur": "".join(f"{utt} {NUM_FRAMES[utt] / 100 + 0.015}\n" for utt in utts),
        "trials": "spkA-u1 spkB-u1 nontarget\nspkA-u1 spkA-u2 target\nspkB spkB-u2 target\n",
    }


@pytest.fixture
def make_dir(tmp_path: Path) -> Callable[..., Path]:
    """Factory ``make_dir(name, files=None, **overrides)``: writes a data dir under tmp_path.

    ``files`` defaults to :func:`valid_files`; keyword overrides replace a file's text
    (``wav_scp=...`` for wav.scp, ``feats_scp=...``), and ``None`` leaves the file out.
    """

    def make(name: str = "data", files: dict[str, str] | None = None, **overrides: str | None) -> Path:
        contents = dict(valid_files() if files is None else files)
        for key, text in overrides.items():
            file_name = key.replace("_scp", ".scp")
            if text is None:
                contents.pop(file_name, None)
            else:
                contents[file_name] = text
        path = tmp_path / name
        path.mkdir(parents=True)
        for file_name, text in contents.items():
            (path / file_name).write_text(text, encoding="utf-8")
        return path

    return make
