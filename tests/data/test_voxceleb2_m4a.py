"""VoxCeleb2's m4a audio through the ffmpeg pipe that data preparation writes into wav.scp."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile

from speakernet.data.kaldi_dir import read_scp
from speakernet.data.prepare.voxceleb import prepare_voxceleb2_dev
from speakernet.features.make_features import make_features


def _require_ffmpeg() -> None:
    # .ci/run sets SPEAKERNET_REQUIRE_FFMPEG=1 where apt-get can install ffmpeg, so there a
    # missing ffmpeg fails the test instead of silently skipping the only m4a test.
    if shutil.which("ffmpeg") is None:
        if os.environ.get("SPEAKERNET_REQUIRE_FFMPEG") == "1":
            pytest.fail("ffmpeg is not on PATH but SPEAKERNET_REQUIRE_FFMPEG=1: apt-get install ffmpeg")
        pytest.skip("needs ffmpeg (apt-get install ffmpeg)")


def test_m4a_tree_to_features(tmp_path: Path) -> None:
    _require_ffmpeg()
    rng = np.random.default_rng(0)
    root = tmp_path / "VoxCeleb2"
    seconds = {"id00001/vidA/00001.m4a": 1.5, "id00001/vidB/00002.m4a": 2.0, "id00002/vidC/00001.m4a": 1.0}
    for relative, duration in seconds.items():
        wav = tmp_path / "tmp.wav"
        soundfile.write(wav, (0.1 * rng.standard_normal(int(duration * 16000))).astype(np.float32), 16000)
        target = root / "dev" / "aac" / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["ffmpeg", "-y", "-v", "error", "-i", str(wav), "-c:a", "aac", str(target)], check=True)
    data = prepare_voxceleb2_dev(root, tmp_path / "data")
    wav_scp = read_scp(data / "wav.scp")
    assert list(wav_scp) == ["id00001-vidA-00001", "id00001-vidB-00002", "id00002-vidC-00001"]
    assert all(value.startswith("ffmpeg ") and value.endswith(" |") for value in wav_scp.values())
    make_features(data, tmp_path / "fbank", nj=2)
    frames = {utt: int(n) for utt, n in read_scp(data / "utt2num_frames").items()}
    # AAC adds encoder priming samples: allow a few frames more than the source duration
    for (relative, duration), utt in zip(seconds.items(), wav_scp):
        expected = 1 + (int(duration * 16000) - 400) // 160
        assert expected <= frames[utt] <= expected + 8, (utt, frames[utt], expected)
