"""One stage per output dir at a time: a second training or features run stops with a named error."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from speakernet.bin import make_features as make_features_bin
from speakernet.config import load_config
from speakernet.training.trainer import train
from speakernet.utils.fileio import DirInUseError, OutputError, exclusive_lock


def test_second_holder_is_refused_with_the_pid_and_the_lock_is_released(tmp_path: Path) -> None:
    lock = tmp_path / "exp" / ".lock"
    with exclusive_lock(lock, "a training"):
        with pytest.raises(DirInUseError, match=rf"a training is already running there \(pid {os.getpid()}"):
            with exclusive_lock(lock, "a training"):
                pass
    with exclusive_lock(lock, "a training"):  # released on exit
        pass


def test_training_into_a_busy_exp_dir_writes_nothing(tmp_path: Path) -> None:
    exp = tmp_path / "exp"
    with exclusive_lock(exp / ".lock", "a training"):
        with pytest.raises(DirInUseError, match=str(exp)):
            train(load_config(None), tmp_path / "no-data", exp)
    assert sorted(path.name for path in exp.iterdir()) == [".lock"]


def test_features_into_a_busy_feature_dir_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    data, feats = tmp_path / "data", tmp_path / "fbank"
    data.mkdir()
    (data / "wav.scp").write_text("u1 cat /dev/null |\n")
    (data / "utt2spk").write_text("u1 s1\n")
    (data / "spk2utt").write_text("s1 u1\n")
    with exclusive_lock(feats / ".lock", "a features run"):
        status = make_features_bin.main(["--data-dir", str(data), "--feat-dir", str(feats)])
    assert status == 1 and "a features run is already running there" in capsys.readouterr().err


def test_read_only_dir_is_an_output_error(tmp_path: Path) -> None:
    tmp_path.chmod(0o500)
    try:
        if os.access(tmp_path, os.W_OK):
            pytest.skip("running as a user who can write into read-only dirs")
        with pytest.raises(OutputError, match="cannot write it"):
            with exclusive_lock(tmp_path / "exp" / ".lock", "a training"):
                pass
    finally:
        tmp_path.chmod(0o700)
