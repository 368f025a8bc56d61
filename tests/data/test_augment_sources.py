"""Noise and RIR source dirs: MUSAN, RIRS_NOISES, any noise folder, simulated RIRs; their entry points' errors."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import soundfile

from speakernet.bin import prepare_musan as prepare_musan_bin
from speakernet.bin import prepare_rirs as prepare_rirs_bin
from speakernet.bin import simulate_rirs as simulate_rirs_bin
from speakernet.data.kaldi_dir import read_utt2dur, read_utt2spk, read_wav_scp
from speakernet.data.prepare.musan import prepare_musan
from speakernet.data.prepare.noise_dir import prepare_noise_dir
from speakernet.data.prepare.rirs import prepare_rirs
from speakernet.utils.dropped import read_dropped

RATE = 8000


def _wav(path: Path, seconds: float = 0.1, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    samples = np.random.default_rng(seed).uniform(-0.5, 0.5, int(seconds * RATE))
    soundfile.write(path, samples, RATE, format="FLAC" if path.suffix == ".flac" else "WAV")
    return path


def _musan(root: Path, annotations: bool = True) -> Path:
    _wav(root / "music" / "fma" / "music-fma-0000.wav")
    _wav(root / "music" / "fma" / "music-fma-0001.wav", 0.2)
    _wav(root / "music" / "fma-western-art" / "music-fma-wa-0000.wav")
    _wav(root / "speech" / "librivox" / "speech-librivox-0000.wav")
    _wav(root / "noise" / "free-sound" / "noise-free-sound-0000.wav")
    _wav(root / "noise" / "misplaced.wav")
    (root / "README").write_text("MUSAN\n")
    if annotations:
        (root / "music" / "fma" / "ANNOTATIONS").write_text("music-fma-0000 pop Y Someone\nmusic-fma-0001 jazz N X\n")
    return root


def test_musan_three_dirs(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root = _musan(tmp_path / "musan")
    with caplog.at_level(logging.WARNING):
        summaries = prepare_musan(root, tmp_path / "data")
    assert set(summaries) == {"music", "speech", "noise"}
    music = tmp_path / "data" / "musan_music"
    assert read_utt2spk(music / "utt2spk") == {"fma-music-fma-0000": "fma", "fma-music-fma-0001": "fma",
                                               "fma_western_art-music-fma-wa-0000": "fma_western_art"}
    assert read_utt2dur(music / "utt2dur")["fma-music-fma-0001"] == pytest.approx(0.2)
    assert Path(read_wav_scp(music / "wav.scp")["fma-music-fma-0000"]).is_file()
    assert read_utt2spk(tmp_path / "data" / "musan_noise" / "utt2spk") == {
        "free_sound-noise-free-sound-0000": "free_sound"}
    assert "1 wav file(s) not at noise/<subset>/*.wav are left out" in caplog.text


def test_musan_exclude_vocals(tmp_path: Path) -> None:
    root = _musan(tmp_path / "musan")
    prepare_musan(root, tmp_path / "data", exclude_vocals=True)
    music = tmp_path / "data" / "musan_music"
    assert list(read_utt2spk(music / "utt2spk")) == ["fma-music-fma-0001"]
    dropped = read_dropped(music / "dropped.tsv")
    assert dropped["fma-music-fma-0000"].startswith("vocals ")
    assert dropped["fma_western_art-music-fma-wa-0000"].startswith("not_annotated ")


def test_musan_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"expected <root>/\{music,speech,noise\}/<subset>/\*\.wav, missing speech/"):
        prepare_musan(_wav(tmp_path / "m" / "music" / "a" / "x.wav").parents[2], tmp_path / "d")
    (tmp_path / "m" / "speech").mkdir()
    (tmp_path / "m" / "noise").mkdir()
    with pytest.raises(ValueError, match="needs music/<subset>/ANNOTATIONS"):
        prepare_musan(tmp_path / "m", tmp_path / "d", exclude_vocals=True)
    with pytest.raises(ValueError, match=r"speech: no usable <subset>/\*\.wav"):
        prepare_musan(tmp_path / "m", tmp_path / "d")
    with pytest.raises(FileNotFoundError, match="MUSAN directory does not exist"):
        prepare_musan(tmp_path / "nowhere", tmp_path / "d")


def _rirs(root: Path, with_list: bool = False) -> Path:
    for room_type in ("smallroom", "mediumroom"):
        for room in ("Room001", "Room002"):
            for index in (1, 2):
                _wav(root / "simulated_rirs" / room_type / room / f"{room}-{index:05d}.wav", 0.05)
    real = root / "real_rirs_isotropic_noises"
    _wav(real / "RWCP_type1_rir_circle_ane_imp050.wav", 0.05)
    _wav(real / "air_type1_air_binaural_aula_carolina_1_1_3_1.wav", 0.05)
    _wav(real / "RVB2014_type1_noise_largeroom1_1.wav", 0.2)
    if with_list:
        (root / "simulated_rirs" / "smallroom" / "rir_list").write_text(
            "--rir-id smallroom-Room001-00001 --room-id smallroom-Room001 "
            "RIRS_NOISES/simulated_rirs/smallroom/Room001/Room001-00001.wav\n"
            "--rir-id smallroom-Room009-00001 --room-id smallroom-Room009 "
            "RIRS_NOISES/simulated_rirs/smallroom/Room009/Room009-00001.wav\n")
    return root


def test_rirs_dirs(tmp_path: Path) -> None:
    summaries = prepare_rirs(_rirs(tmp_path / "RIRS_NOISES"), tmp_path / "data")
    assert set(summaries) == {"rirs_smallroom", "rirs_mediumroom", "rirs_real", "noise_isotropic"}
    small = read_utt2spk(tmp_path / "data" / "rirs_smallroom" / "utt2spk")
    assert small["smallroom_Room002-00001"] == "smallroom_Room002" and len(small) == 4
    assert read_utt2spk(tmp_path / "data" / "rirs_real" / "utt2spk") == {
        "RWCP-RWCP_type1_rir_circle_ane_imp050": "RWCP", "air-air_type1_air_binaural_aula_carolina_1_1_3_1": "air"}
    assert list(read_utt2spk(tmp_path / "data" / "noise_isotropic" / "utt2spk")) == [
        "RVB2014-RVB2014_type1_noise_largeroom1_1"]


def test_rirs_list_decides(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root = _rirs(tmp_path / "RIRS_NOISES", with_list=True)
    with caplog.at_level(logging.WARNING):
        prepare_rirs(root, tmp_path / "data", room_types=["smallroom"], real=False)
    assert list(read_utt2spk(tmp_path / "data" / "rirs_smallroom" / "utt2spk")) == ["smallroom_Room001-00001"]
    dropped = read_dropped(tmp_path / "data" / "rirs_smallroom" / "dropped.tsv")
    assert dropped["smallroom_Room009-00001"].startswith("missing_file ")
    assert sum(reason.startswith("not_in_list ") for reason in dropped.values()) == 3
    assert "1 file(s) listed in" in caplog.text and "3 file(s) are not listed" in caplog.text
    assert not (tmp_path / "data" / "rirs_mediumroom").exists()


def test_rirs_errors(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="not a RIRS_NOISES root: expected <root>/simulated_rirs/"):
        prepare_rirs(tmp_path / "empty", tmp_path / "data")
    root = _rirs(tmp_path / "RIRS_NOISES")
    with pytest.raises(ValueError, match="unknown room type.*tinyroom; valid: smallroom, mediumroom, largeroom"):
        prepare_rirs(root, tmp_path / "data", room_types=["tinyroom"])
    with pytest.raises(ValueError, match="missing simulated_rirs/largeroom/"):
        prepare_rirs(root, tmp_path / "data", room_types=["largeroom"])
    with pytest.raises(ValueError, match="would replace the audio"):
        prepare_rirs(root, tmp_path)


def test_noise_dir_categories_and_unreadable(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root = tmp_path / "bg"
    _wav(root / "hum.flac")
    _wav(root / "street" / "day 1" / "cars.wav")
    (root / "broken.wav").write_bytes(b"not audio")
    (root / "notes.txt").write_text("x")
    with caplog.at_level(logging.WARNING):
        summary = prepare_noise_dir(root, tmp_path / "data", name="background")
    assert read_utt2spk(tmp_path / "data" / "utt2spk") == {"background-hum": "background",
                                                          "street-day_1-cars": "street"}
    assert summary.num_files == 2
    assert list(read_dropped(tmp_path / "data" / "dropped.tsv")) == ["background-broken"]
    assert "1 file(s) have no readable audio header" in caplog.text and "1 .txt" in caplog.text
    (tmp_path / "none").mkdir()
    with pytest.raises(ValueError, match=r"no \.wav/\.flac files at any depth"):
        prepare_noise_dir(tmp_path / "none", tmp_path / "d2")


def test_simulated_rirs_deterministic(tmp_path: Path) -> None:
    pytest.importorskip("pyroomacoustics")
    from speakernet.data.augment.simulate import RoomConfig, simulate_rirs

    config = RoomConfig(num_rooms=2, rirs_per_room=2, max_seconds=0.2, max_order=6)

    def run(name: str, seed: int) -> dict[str, bytes]:
        simulate_rirs(tmp_path / name, tmp_path / f"{name}_data", room_types=["smallroom"], seed=seed, config=config)
        base = tmp_path / name / "simulated_rirs" / "smallroom"
        return {str(path.relative_to(base)): path.read_bytes() for path in sorted(base.rglob("*")) if path.is_file()}

    first, again, other = run("a", 3), run("b", 3), run("c", 4)
    assert first == again
    assert first != other
    assert sorted(name for name in first if name.endswith(".wav")) == [
        "Room001/Room001-00001.wav", "Room001/Room001-00002.wav", "Room002/Room002-00001.wav",
        "Room002/Room002-00002.wav"]
    rir, rate = soundfile.read(tmp_path / "a" / "simulated_rirs" / "smallroom" / "Room001" / "Room001-00001.wav")
    assert rate == 16000 and np.max(np.abs(rir)) == pytest.approx(0.99, abs=1e-3)
    assert len(read_utt2spk(tmp_path / "a_data" / "rirs_smallroom" / "utt2spk")) == 4


def test_entry_points_one_line_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "empty").mkdir()
    assert prepare_musan_bin.main(["--root", str(tmp_path / "empty"), "--out-dir", str(tmp_path / "d")]) == 1
    assert prepare_rirs_bin.main(["--root", str(tmp_path / "empty"), "--out-dir", str(tmp_path / "d")]) == 1
    assert simulate_rirs_bin.main(["--out-dir", str(tmp_path / "r"), "--data-dir", str(tmp_path / "d"),
                                   "--room-types", "hugeroom"]) == 1
    errors = [line for line in capsys.readouterr().err.splitlines() if " ERROR " in line]
    assert len(errors) == 3 and "Traceback" not in "".join(errors)
    assert "not a MUSAN root" in errors[0] and "not a RIRS_NOISES root" in errors[1] and "hugeroom" in errors[2]
