"""Offline augmentation (augment_data_dir): ids, speakers, lengths, SNRs, determinism, subsets, errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile

from speakernet.bin.augment_data_dir import main as augment_main
from speakernet.data.augment import ops
from speakernet.data.augment.offline import KINDS, augment_data_dir, make_config
from speakernet.data.kaldi_dir import read_scp, read_utt2dur, read_utt2spk, utt2spk_to_spk2utt, write_scp
from speakernet.data.prepare.noise_dir import prepare_noise_dir
from speakernet.utils.dropped import read_dropped

RATE = 16000


def _signal(seed: int, length: int, peak: float) -> np.ndarray:
    samples = np.random.default_rng(seed).normal(0, 1, length)
    return (peak * samples / np.abs(samples).max()).astype(np.float32)


@pytest.fixture
def corpus(tmp_path: Path) -> dict[str, Path]:
    """A data dir of 6 quiet utterances (3 speakers, 0.5-0.9 s) and noise, speech and RIR source dirs."""
    wav_dir, data_dir = tmp_path / "wav", tmp_path / "data"
    wav_dir.mkdir()
    data_dir.mkdir()
    utt2spk, wav_scp = {}, {}
    for index in range(6):
        spk = f"spk{index % 3}"
        utt = f"{spk}-utt{index}"
        path = wav_dir / f"{utt}.wav"
        soundfile.write(path, _signal(index, int(RATE * (0.5 + 0.08 * index)), 0.1), RATE, subtype="PCM_16")
        utt2spk[utt], wav_scp[utt] = spk, str(path)
    write_scp(data_dir / "wav.scp", wav_scp)
    write_scp(data_dir / "utt2spk", utt2spk)
    write_scp(data_dir / "spk2utt", utt2spk_to_spk2utt(utt2spk))
    dirs = {"data": data_dir}
    # noise longer than any utterance: one foreground noise covers it, so its SNR is the utterance's
    for name, count, length in (("noise", 2, 2 * RATE), ("speech", 4, RATE // 2), ("rirs", 2, 800)):
        root = tmp_path / f"{name}_audio"
        root.mkdir()
        for index in range(count):
            samples = _signal(100 + 10 * index + len(name), length, 0.5)
            if name == "rirs":
                samples = (samples * np.exp(-np.arange(length) / 80)).astype(np.float32)
            soundfile.write(root / f"{name}{index}.wav", samples, RATE, subtype="FLOAT")
        prepare_noise_dir(root, tmp_path / name)
        dirs[name] = tmp_path / name
    return dirs


def _run(corpus: dict[str, Path], out: Path, kind: str, sources: str, **options: object) -> None:
    augment_data_dir(corpus["data"], out, make_config(kind, [corpus[sources]], seed=3), **options)


@pytest.mark.parametrize("kind, sources", [("noise", "noise"), ("music", "noise"), ("babble", "speech"),
                                           ("reverb", "rirs")])
def test_copy_has_ids_speakers_and_lengths(corpus: dict[str, Path], tmp_path: Path, kind: str, sources: str) -> None:
    out = tmp_path / f"aug_{kind}"
    _run(corpus, out, kind, sources)
    clean = read_utt2spk(corpus["data"] / "utt2spk")
    utt2spk = read_utt2spk(out / "utt2spk")
    assert utt2spk == {f"{utt}-{kind}": spk for utt, spk in clean.items()}
    assert set(read_scp(out / "spk2utt")) == set(clean.values())
    clean_wavs, wav_scp, utt2dur = read_scp(corpus["data"] / "wav.scp"), read_scp(out / "wav.scp"), \
        read_utt2dur(out / "utt2dur")
    for utt in clean:
        path = Path(wav_scp[f"{utt}-{kind}"])
        assert path.is_file() and path.parent == out / "audio"
        info, clean_info = soundfile.info(path), soundfile.info(clean_wavs[utt])
        assert info.frames == clean_info.frames and info.subtype == "PCM_16"
        assert utt2dur[f"{utt}-{kind}"] == pytest.approx(clean_info.frames / RATE)
        written, original = soundfile.read(path)[0], soundfile.read(clean_wavs[utt])[0]
        assert not np.allclose(written, original, atol=1e-3)
    assert read_dropped(out / "dropped.tsv") == {}


@pytest.mark.parametrize("kind, sources", [("noise", "noise"), ("music", "noise")])
def test_snr_is_one_of_the_allowed(corpus: dict[str, Path], tmp_path: Path, kind: str, sources: str) -> None:
    out = tmp_path / "aug"
    _run(corpus, out, kind, sources)
    clean_wavs, wav_scp = read_scp(corpus["data"] / "wav.scp"), read_scp(out / "wav.scp")
    seen = set()
    for utt, spec in clean_wavs.items():
        clean = soundfile.read(spec)[0]
        noisy = soundfile.read(wav_scp[f"{utt}-{kind}"])[0]
        snr = ops.snr_db(clean, noisy - clean)
        nearest = min(KINDS[kind].snrs, key=lambda allowed: abs(allowed - snr))
        assert abs(snr - nearest) < 0.1, (utt, snr)
        seen.add(nearest)
    assert len(seen) > 1  # the SNR is drawn per utterance


def test_deterministic_across_jobs_and_subset(corpus: dict[str, Path], tmp_path: Path) -> None:
    _run(corpus, tmp_path / "nj1", "babble", "speech", nj=1)
    _run(corpus, tmp_path / "nj2", "babble", "speech", nj=2)
    _run(corpus, tmp_path / "sub", "babble", "speech", subset=4)
    files = sorted(path.name for path in (tmp_path / "nj1" / "audio").iterdir())
    assert len(files) == 6
    for name in files:
        assert (tmp_path / "nj1" / "audio" / name).read_bytes() == (tmp_path / "nj2" / "audio" / name).read_bytes()
    subset = read_utt2spk(tmp_path / "sub" / "utt2spk")
    assert len(subset) == 4
    for utt in subset:  # the subset's files are the full copy's
        assert (tmp_path / "sub" / "audio" / f"{utt}.wav").read_bytes() == \
            (tmp_path / "nj1" / "audio" / f"{utt}.wav").read_bytes()
    other = tmp_path / "seed4"
    augment_data_dir(corpus["data"], other, make_config("babble", [corpus["speech"]], seed=4))
    assert (other / "audio" / files[0]).read_bytes() != (tmp_path / "nj1" / "audio" / files[0]).read_bytes()


def test_unreadable_audio_is_dropped_and_listed(corpus: dict[str, Path], tmp_path: Path) -> None:
    wav_scp = read_scp(corpus["data"] / "wav.scp")
    Path(wav_scp["spk1-utt1"]).write_bytes(b"not audio")
    out = tmp_path / "aug"
    _run(corpus, out, "reverb", "rirs", audio_dir=tmp_path / "elsewhere")
    assert "spk1-utt1-reverb" not in read_utt2spk(out / "utt2spk")
    dropped = read_dropped(out / "dropped.tsv")
    assert list(dropped) == ["spk1-utt1-reverb"] and dropped["spk1-utt1-reverb"].startswith("unreadable_audio")
    assert all(Path(path).parent == tmp_path / "elsewhere" for path in read_scp(out / "wav.scp").values())


def test_segments_are_cut_first(corpus: dict[str, Path], tmp_path: Path) -> None:
    data = tmp_path / "seg"
    data.mkdir()
    recording = read_scp(corpus["data"] / "wav.scp")["spk0-utt0"]
    write_scp(data / "wav.scp", {"spk0-rec": recording})
    (data / "segments").write_text("spk0-a spk0-rec 0.00 0.20\nspk0-b spk0-rec 0.20 0.45\n", encoding="utf-8")
    write_scp(data / "utt2spk", {"spk0-a": "spk0", "spk0-b": "spk0"})
    write_scp(data / "spk2utt", {"spk0": ["spk0-a", "spk0-b"]})
    augment_data_dir(data, tmp_path / "out", make_config("noise", [corpus["noise"]]))
    lengths = {utt: soundfile.info(path).frames for utt, path in read_scp(tmp_path / "out" / "wav.scp").items()}
    assert lengths == {"spk0-a-noise": 3200, "spk0-b-noise": 4000}


def test_errors_are_one_line(corpus: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    base = ["--data-dir", str(corpus["data"]), "--out-dir", str(tmp_path / "out")]
    assert augment_main([*base, "--kind", "wind", "--sources", str(corpus["noise"])]) == 1
    assert "unknown kind 'wind'; valid: reverb, noise, music, babble" in capsys.readouterr().err
    assert augment_main([*base, "--kind", "noise", "--sources", str(tmp_path / "nowhere")]) == 1
    assert "has no wav.scp" in capsys.readouterr().err
    assert augment_main([*base, "--kind", "reverb", "--sources", str(corpus["rirs"]), "--snrs", "5"]) == 1
    assert "reverb takes no SNRs" in capsys.readouterr().err
    assert augment_main(["--data-dir", str(tmp_path / "missing"), "--out-dir", str(tmp_path / "out"),
                         "--kind", "noise", "--sources", str(corpus["noise"])]) == 1
    assert "does not exist" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
    assert augment_main([*base, "--kind", "music", "--sources", str(corpus["noise"]), "--snrs", "3",
                         "--subset", "2", "--nj", "2"]) == 0
    assert len(read_utt2spk(tmp_path / "out" / "utt2spk")) == 2


def test_unreadable_source_file_drops_the_utterances_that_draw_it(corpus: dict[str, Path], tmp_path: Path) -> None:
    bad = Path(read_scp(corpus["noise"] / "wav.scp")["noise_audio-noise0"])
    bad.write_bytes(b"not audio")
    out = tmp_path / "aug"
    _run(corpus, out, "music", "noise")
    dropped = read_dropped(out / "dropped.tsv")
    assert dropped and all(reason.startswith("unreadable_source") for reason in dropped.values())
    assert len(read_utt2spk(out / "utt2spk")) + len(dropped) == 6
