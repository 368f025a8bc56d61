"""copy_data_dir: a validated copy without someone else's features; the source is never written."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from speakernet.data.copy_data_dir import copy_data_dir
from speakernet.data.kaldi_dir import DataDirError


def _snapshot(path: Path) -> dict[str, bytes]:
    return {str(item.relative_to(path)): item.read_bytes() for item in sorted(path.rglob("*")) if item.is_file()}


def test_copy_keeps_the_kaldi_files_and_leaves_out_features(make_dir, tmp_path):
    src = make_dir("src", spk2gender="spkA m\nspkB f\nspkC m\n")
    (src / "split2").mkdir()
    (src / "split2" / "utt2spk").write_text("x y\n")
    before = _snapshot(src)
    copied = copy_data_dir(src, tmp_path / "dst")
    assert copied == ["spk2gender", "spk2utt", "trials", "utt2dur", "utt2spk", "wav.scp"]
    assert sorted(p.name for p in (tmp_path / "dst").iterdir()) == copied
    for name in copied:
        assert (tmp_path / "dst" / name).read_bytes() == (src / name).read_bytes()
    assert _snapshot(src) == before


def test_a_given_trial_list_replaces_the_dirs_own(make_dir, tmp_path):
    src = make_dir("src")
    trials = tmp_path / "mine.trials"
    trials.write_text("spkB-u1 spkB-u2 target\n")
    copy_data_dir(src, tmp_path / "dst", trials=trials)
    assert (tmp_path / "dst" / "trials").read_text() == "spkB-u1 spkB-u2 target\n"
    assert (src / "trials").read_text().startswith("spkA-u1 spkB-u1 nontarget")


def test_bad_sources_are_one_line_errors(make_dir, tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        copy_data_dir(tmp_path / "nowhere", tmp_path / "dst")
    src = make_dir("src")
    with pytest.raises(ValueError, match="inside the original"):
        copy_data_dir(src, src / "copy")
    unsorted = make_dir("unsorted", utt2spk="spkB-u1 spkB\nspkA-u1 spkA\n", spk2utt="spkA spkA-u1\nspkB spkB-u1\n",
                        wav_scp="spkA-u1 a.wav\nspkB-u1 b.wav\n", feats_scp=None, vad_scp=None,
                        utt2num_frames=None, utt2dur=None, trials=None)
    with pytest.raises(DataDirError, match="utt2spk"):
        copy_data_dir(unsorted, tmp_path / "dst")
    bad_trials = tmp_path / "bad.trials"
    bad_trials.write_text("spkA-u1 spkB-u1 maybe\n")
    with pytest.raises(DataDirError, match=r"bad\.trials:1 .*maybe"):
        copy_data_dir(src, tmp_path / "dst", trials=bad_trials)
    assert not (tmp_path / "dst").exists()
    result = subprocess.run([sys.executable, "-m", "speakernet.bin.copy_data_dir", str(tmp_path / "nowhere"),
                             str(tmp_path / "dst")], capture_output=True, text=True)
    assert result.returncode == 1 and "Traceback" not in result.stderr and "does not exist" in result.stderr


def test_relative_audio_paths_become_absolute_from_the_users_directory(make_dir, tmp_path):
    work, elsewhere = tmp_path / "work", tmp_path / "elsewhere" / "a2.wav"  # an absolute path stays as it is
    src = make_dir("src", wav_scp=f"spkA-u1 audio/a1.wav\nspkA-u2 {elsewhere}\nspkB-u1 sox b1.wav -t wav - |\n"
                   "spkB-u2 audio/b2.wav\nspkC-u1 ../c1.wav\n")
    with pytest.raises(FileNotFoundError, match=r"relative audio paths are not there from .*work \(e\.g\. "
                       r"'audio/a1.wav' of 'spkA-u1'\); run from the directory"):
        copy_data_dir(src, tmp_path / "dst", relative_to=work)
    (work / "audio").mkdir(parents=True)
    (work / "audio" / "a1.wav").write_bytes(b"")  # one of them there: the right directory
    copy_data_dir(src, tmp_path / "dst", relative_to=work)
    assert (tmp_path / "dst" / "wav.scp").read_text().splitlines() == [
        f"spkA-u1 {work / 'audio' / 'a1.wav'}", f"spkA-u2 {elsewhere}", "spkB-u1 sox b1.wav -t wav - |",
        f"spkB-u2 {work / 'audio' / 'b2.wav'}", f"spkC-u1 {tmp_path / 'c1.wav'}"]
    copy_data_dir(src, tmp_path / "same")
    assert (tmp_path / "same" / "wav.scp").read_bytes() == (src / "wav.scp").read_bytes()
