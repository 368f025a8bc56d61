"""The generic speaker-per-folder preparer on tiny trees of real audio files."""

from __future__ import annotations

import logging
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile

from speakernet.bin import prepare_folder as prepare_folder_bin
from speakernet.data.audio import load_audio
from speakernet.data.kaldi_dir import read_scp, read_utt2dur, read_utt2spk
from speakernet.utils.dropped import read_dropped
from speakernet.data.prepare.folder import parse_extensions, prepare_folder
from speakernet.data.validate import validate_data_dir

RATE = 16000
# relative path -> (soundfile format, seconds)
TREE = {
    "alice/a.wav": ("WAV", 0.25),
    "alice/day 2/take1/b.flac": ("FLAC", 0.5),
    "alice/day 2/c.ogg": ("OGG", 0.3),
    "bob/x.wav": ("WAV", 0.125),
    "bob/sub/y.flac": ("FLAC", 0.2),
    "carol lee/z.wav": ("WAV", 0.1),
}


def _write(path: Path, fmt: str, seconds: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tone = 0.3 * np.sin(2 * np.pi * 300 * np.arange(int(seconds * RATE)) / RATE)
    soundfile.write(path, tone.astype(np.float32), RATE, format=fmt)


def _make_tree(root: Path, tree: dict[str, tuple[str, float]] = TREE) -> Path:
    for relative, (fmt, seconds) in tree.items():
        _write(root / relative, fmt, seconds)
    return root


def test_nested_tree_gives_a_valid_sorted_data_dir(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root = _make_tree(tmp_path / "corpus")
    (root / "bob" / "notes.txt").write_text("not audio")
    (root / "bob" / ".hidden.wav").write_bytes(b"")
    (root / "nobody").mkdir()
    (root / "README").write_text("about")
    out = tmp_path / "data"
    with caplog.at_level(logging.WARNING):
        summary = prepare_folder(root, out, extensions=("wav", "flac", "ogg"))
    validate_data_dir(out, check_files_exist=True)
    utt2spk = read_utt2spk(out / "utt2spk")
    assert utt2spk == {
        "alice-a": "alice", "alice-day_2-c": "alice", "alice-day_2-take1-b": "alice",
        "bob-sub-y": "bob", "bob-x": "bob", "carol_lee-z": "carol_lee",
    }
    assert list(utt2spk) == sorted(utt2spk, key=lambda key: key.encode())
    assert (out / "spk2utt").read_text() == "alice alice-a alice-day_2-c alice-day_2-take1-b\nbob bob-sub-y bob-x\n" \
        "carol_lee carol_lee-z\n"
    wav_scp = read_scp(out / "wav.scp")
    assert wav_scp["bob-x"] == str(root / "bob" / "x.wav")
    assert wav_scp["alice-day_2-c"] == f"cat '{root / 'alice' / 'day 2' / 'c.ogg'}' |"  # path with a space
    durations = read_utt2dur(out / "utt2dur")
    assert durations["alice-day_2-take1-b"] == pytest.approx(0.5) and durations["bob-x"] == pytest.approx(0.125)
    waveform, rate = load_audio(wav_scp["alice-day_2-c"], RATE)
    assert rate == RATE and waveform.shape[0] == pytest.approx(0.3 * RATE, abs=10)
    assert (summary.num_speakers, summary.num_utts, summary.has_utt2dur) == (3, 6, True)
    assert summary.skipped == {".txt": 1, "hidden": 1, "": 1}
    assert summary.empty_speakers == ["nobody"]
    messages = " | ".join(record.getMessage() for record in caplog.records)
    assert "skipped 3 entries" in messages and "1 .txt" in messages and "nobody" in messages


def test_same_tree_same_bytes_and_extension_filter(tmp_path: Path) -> None:
    root = _make_tree(tmp_path / "corpus")
    prepare_folder(root, tmp_path / "one")
    prepare_folder(root, tmp_path / "two")
    for name in ("wav.scp", "utt2spk", "spk2utt", "utt2dur"):
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes()
    summary = prepare_folder(root, tmp_path / "wav_only", extensions=parse_extensions("WAV"))
    assert summary.num_utts == 3 and summary.skipped[".flac"] == 2 and summary.skipped[".ogg"] == 1
    assert set(read_utt2spk(tmp_path / "wav_only" / "utt2spk")) == {"alice-a", "bob-x", "carol_lee-z"}


def test_mp3_is_read_directly(tmp_path: Path) -> None:
    root = tmp_path / "corpus"
    _write(root / "dan" / "m.mp3", "MP3", 0.5)
    _write(root / "dan" / "n.wav", "WAV", 0.2)
    prepare_folder(root, tmp_path / "data")
    assert read_scp(tmp_path / "data" / "wav.scp")["dan-m"] == str(root / "dan" / "m.mp3")
    assert read_utt2dur(tmp_path / "data" / "utt2dur")["dan-m"] > 0.4


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg is not installed")
def test_m4a_goes_through_an_ffmpeg_pipe(tmp_path: Path) -> None:
    root = _make_tree(tmp_path / "corpus", {"erin/w.wav": ("WAV", 0.2)})
    m4a = root / "erin" / "clips" / "v.m4a"
    m4a.parent.mkdir()
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-f", "lavfi", "-i", "sine=frequency=300:duration=0.4",
                    "-ar", "22050", str(m4a)], check=True)
    out = tmp_path / "data"
    summary = prepare_folder(root, out, sample_rate=8000)
    validate_data_dir(out)
    value = read_scp(out / "wav.scp")["erin-clips-v"]
    assert value.startswith("ffmpeg ") and "-ar 8000" in value and value.endswith("|")
    waveform, rate = load_audio(value, None)
    assert rate == 8000 and waveform.shape[0] == pytest.approx(0.4 * 8000, rel=0.1)
    assert not summary.has_utt2dur and not (out / "utt2dur").exists()  # no header to read for the m4a


@pytest.mark.parametrize(("tree", "message"), [
    ({}, "no .wav/.flac/.mp3/.m4a/.ogg files under any speaker folder"),
    ({"loose.wav": ("WAV", 0.1), "spk/a.wav": ("WAV", 0.1)}, "1 audio file(s) directly under the root, e.g. "
                                                            "'loose.wav'"),
    ({"spk/a.wav": ("WAV", 0.1), "spk/a.flac": ("FLAC", 0.1)}, "'spk/a.flac' and 'spk/a.wav' both give utterance "
                                                              "id 'spk-a'"),
    ({"spk/x/y.wav": ("WAV", 0.1), "spk/x-y.wav": ("WAV", 0.1)}, "both give utterance id 'spk-x-y'"),
    ({"a b/u.wav": ("WAV", 0.1), "a_b/u.wav": ("WAV", 0.1)}, "'a b' and 'a_b' both give speaker id 'a_b'"),
    ({"ann/u.wav": ("WAV", 0.1), "ann-b/u.wav": ("WAV", 0.1)}, "'ann' and 'ann-b' give utterance ids that do not "
                                                             "sort with their speakers"),
])
def test_bad_trees_are_one_line_errors(tmp_path: Path, tree: dict[str, tuple[str, float]], message: str) -> None:
    root = _make_tree(tmp_path / "corpus", tree)
    root.mkdir(exist_ok=True)
    (root / "notes.txt").write_text("x")
    with pytest.raises(ValueError) as info:
        prepare_folder(root, tmp_path / "data")
    assert message in str(info.value) and "\n" not in str(info.value)
    assert not (tmp_path / "data").exists()


def test_unreadable_file_is_left_out_and_counted(tmp_path: Path) -> None:
    root = _make_tree(tmp_path / "corpus", {"fay/good.wav": ("WAV", 0.1), "fay/other.wav": ("WAV", 0.1)})
    (root / "fay" / "broken.flac").write_bytes(b"not a flac file")
    summary = prepare_folder(root, tmp_path / "data")
    assert summary.unreadable == ["fay/broken.flac"] and summary.num_utts == 2
    assert set(read_utt2spk(tmp_path / "data" / "utt2spk")) == {"fay-good", "fay-other"}
    assert read_dropped(tmp_path / "data" / "dropped.tsv") == {"fay-broken": "unreadable_audio fay/broken.flac"}
    (root / "fay" / "broken.flac").unlink()
    prepare_folder(root, tmp_path / "data")
    assert (tmp_path / "data" / "dropped.tsv").read_text() == ""  # nothing left out: an empty list


def test_out_dir_must_not_replace_the_corpus(tmp_path: Path) -> None:
    root = _make_tree(tmp_path / "corpus", {"gus/a.wav": ("WAV", 0.1)})
    for out in (root, tmp_path):
        with pytest.raises(ValueError, match="would replace the audio"):
            prepare_folder(root, out)
    assert (root / "gus" / "a.wav").is_file()


def test_entry_point(tmp_path: Path) -> None:
    root = _make_tree(tmp_path / "corpus")
    out = tmp_path / "data"
    assert prepare_folder_bin.main(["--root", str(root), "--out-dir", str(out), "--extensions", "wav,flac"]) == 0
    assert len(read_utt2spk(out / "utt2spk")) == 5
    assert prepare_folder_bin.main(["--root", str(tmp_path / "missing"), "--out-dir", str(out)]) == 1
    (root / "stray.wav").write_bytes(b"")
    assert prepare_folder_bin.main(["--root", str(root), "--out-dir", str(out)]) == 1
