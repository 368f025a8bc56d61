"""Tests of the synthetic corpus: layout, Kaldi files, determinism, audio sanity, .done logic, speaker cues."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from speakernet.data.kaldi_dir import c_sort_key, read_scp, read_trials
from speakernet.data.synth import SessionChannel, sample_session, sample_speaker, synthesize_utterance
from speakernet.data.synth_corpus import generate_corpus, make_trials

TINY = {
    "num_train_speakers": 3,
    "num_test_speakers": 3,
    "utts_per_speaker": 4,
    "test_utts_per_speaker": 4,
    "sessions_per_speaker": 2,
    "duration_range_s": (0.5, 1.0),
    "trials_per_utt": 2,
    "seed": 7,
}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "corpus"
    generate_corpus(out, nj=1, **TINY)
    return out


def _digest(root: Path) -> dict[str, str]:
    """Relative path -> sha256 of every file, with the corpus root masked in text files."""
    digests = {}
    for path in sorted(root.rglob("*")):
        if path.is_file() and path.name != ".done":
            data = path.read_bytes()
            if path.parent.parent.name == "data":
                data = data.replace(str(root.resolve()).encode(), b"ROOT")
            digests[str(path.relative_to(root))] = hashlib.sha256(data).hexdigest()
    return digests


def _check_sorted(path: Path) -> list[str]:
    keys = [line.split()[0] for line in path.read_text(encoding="utf-8").splitlines()]
    assert keys == sorted(keys, key=c_sort_key), f"{path} is not C-sorted"
    return keys


def test_layout_and_kaldi_files(corpus: Path) -> None:
    speakers = {}
    for subset, prefix in (("train", "tr"), ("test", "te")):
        data = corpus / "data" / subset
        for name in ("wav.scp", "utt2spk", "spk2utt", "utt2dur"):
            _check_sorted(data / name)
        wav_scp = read_scp(data / "wav.scp")
        utt2spk = read_scp(data / "utt2spk")
        # the lists exactly as written (a reader that sorts them would hide an unsorted file)
        spk2utt = {key: value.split() for key, value in read_scp(data / "spk2utt").items()}
        utt2dur = read_scp(data / "utt2dur")
        num_speakers = TINY[f"num_{subset}_speakers"]
        per_speaker = TINY["utts_per_speaker" if subset == "train" else "test_utts_per_speaker"]
        assert len(wav_scp) == num_speakers * per_speaker
        assert set(wav_scp) == set(utt2spk) == set(utt2dur)
        assert len(spk2utt) == num_speakers
        for spk, utts in spk2utt.items():
            assert spk.startswith(prefix)
            assert utts == sorted(utts, key=c_sort_key)
            assert all(utt2spk[utt] == spk and utt.startswith(spk + "-") for utt in utts)
        for utt, path in wav_scp.items():
            assert Path(path).is_absolute() and Path(path).is_file()
            assert Path(path) == corpus.resolve() / "wav" / utt2spk[utt] / f"{utt}.wav"
            assert float(utt2dur[utt]) == pytest.approx(sf.info(path).frames / 16000, abs=1e-6)
        speakers[subset] = set(spk2utt)
    assert not speakers["train"] & speakers["test"]

    test_utt2spk = read_scp(corpus / "data" / "test" / "utt2spk")
    trials = read_trials(corpus / "data" / "test" / "trials")
    labels = {label for _, _, label in trials}
    assert labels == {"target", "nontarget"}
    seen = set()
    for enroll, test, label in trials:
        assert enroll in test_utt2spk and test in test_utt2spk and enroll != test
        assert (test_utt2spk[enroll] == test_utt2spk[test]) == (label == "target")
        pair = frozenset((enroll, test))
        assert pair not in seen
        seen.add(pair)


def test_audio_sanity(corpus: Path) -> None:
    low, high = TINY["duration_range_s"]
    for subset in ("train", "test"):
        for path in read_scp(corpus / "data" / subset / "wav.scp").values():
            info = sf.info(path)
            assert info.samplerate == 16000 and info.channels == 1 and info.subtype == "PCM_16"
            wave, _ = sf.read(path, dtype="float64")
            assert np.all(np.isfinite(wave))
            assert low <= len(wave) / 16000 <= high
            assert np.max(np.abs(wave)) < 0.99  # never at full scale: no clipping
            assert np.sqrt(np.mean(wave**2)) > 1e-3  # not silent (levels are -38..-16 dBFS)


def test_deterministic_across_runs_and_jobs(corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           caplog: pytest.LogCaptureFixture) -> None:
    from speakernet.data import synth_corpus

    again = tmp_path / "again"
    parallel = tmp_path / "parallel"
    with caplog.at_level("INFO"):
        generate_corpus(again, nj=2, **TINY)  # a second run; 24 utterances are not worth a second worker
    assert "24 utterances: 1 job(s) instead of 2" in caplog.text
    monkeypatch.setattr(synth_corpus, "MIN_UTTS_PER_WORKER", 1)
    generate_corpus(parallel, nj=2, **TINY)
    reference = _digest(corpus)
    assert len(reference) == 3 * 4 * 2 + 9  # 24 wavs, 4 + 5 data files
    assert _digest(again) == reference
    assert _digest(parallel) == reference


def test_done_marker_skips_and_regenerates(tmp_path: Path) -> None:
    out = tmp_path / "corpus"
    first = generate_corpus(out, **TINY)
    assert first["skipped"] is False
    assert first["train"]["num_utts"] == 12 and first["test"]["num_trials"] > 0
    wav = next((out / "wav").rglob("*.wav"))
    stamp = wav.stat().st_mtime_ns
    second = generate_corpus(out, **TINY)
    assert second["skipped"] is True and second["test"] == first["test"]
    assert wav.stat().st_mtime_ns == stamp

    before = _digest(out)
    third = generate_corpus(out, **{**TINY, "seed": 8})
    assert third["skipped"] is False
    assert json.loads((out / ".done").read_text())["args"]["seed"] == 8
    after = _digest(out)
    assert set(after) == set(before) and after != before

    # A corpus whose files were removed is regenerated even though .done matches.
    (out / "data" / "test" / "trials").unlink()
    assert generate_corpus(out, **{**TINY, "seed": 8})["skipped"] is False
    assert (out / "data" / "test" / "trials").is_file()


def test_refuses_to_replace_foreign_dir_and_bad_sizes(tmp_path: Path) -> None:
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    with pytest.raises(ValueError, match="not a synthetic corpus"):
        generate_corpus(out, **TINY)
    assert (out / "notes.txt").read_text() == "keep me"
    with pytest.raises(ValueError, match="duration_range_s"):
        generate_corpus(tmp_path / "a", **{**TINY, "duration_range_s": (2.0, 1.0)})
    with pytest.raises(ValueError, match="num_train_speakers"):
        generate_corpus(tmp_path / "b", **{**TINY, "num_train_speakers": 0})
    with pytest.raises(ValueError, match="at least 0.2 s"):
        synthesize_utterance(sample_speaker(np.random.default_rng(0)), SessionChannel.clean(),
                             np.random.default_rng(0), 100)


def test_trials_prefer_cross_session_targets() -> None:
    utt2spk = {f"{spk}-s{s}-{n}": spk for spk in ("a", "b") for s in (1, 2) for n in (1, 2)}
    utt2session = {utt: utt.rsplit("-", 1)[0] for utt in utt2spk}
    trials = make_trials(utt2spk, utt2session, targets_per_utt=2, nontargets_per_utt=2, seed=0)
    targets = [(e, t) for e, t, label in trials if label == "target"]
    assert targets and all(utt2session[e] != utt2session[t] for e, t in targets)
    assert make_trials(utt2spk, utt2session, 2, 2, seed=0) == trials


def _median_f0(wave: np.ndarray, sample_rate: int = 16000) -> float:
    """Median autocorrelation F0 (Hz) over the loudest 40 ms frames."""
    frame, hop = int(0.04 * sample_rate), int(0.01 * sample_rate)
    frames = np.stack([wave[i : i + frame] for i in range(0, len(wave) - frame, hop)])
    frames = frames - frames.mean(axis=1, keepdims=True)
    energy = np.sum(frames**2, axis=1)
    voiced = frames[energy > np.quantile(energy, 0.6)]
    min_lag, max_lag = sample_rate // 400, sample_rate // 60
    estimates = []
    for x in voiced * np.hanning(frame):
        corr = np.correlate(x, x, mode="full")[frame - 1 :]
        corr /= corr[0]
        estimates.append(sample_rate / (min_lag + int(np.argmax(corr[min_lag:max_lag]))))
    return float(np.median(estimates))


def test_configured_pitch_is_measurable() -> None:
    base = sample_speaker(np.random.default_rng(3))
    measured = {}
    for f0 in (110.0, 220.0):
        speaker = dataclasses.replace(base, f0_mean_hz=f0, f0_range_st=2.0, breathiness_db=-40.0)
        waves = [synthesize_utterance(speaker, SessionChannel.clean(), np.random.default_rng(i), 32000)
                 for i in range(3)]
        measured[f0] = _median_f0(np.concatenate(waves))
    for f0, estimate in measured.items():
        assert abs(12 * np.log2(estimate / f0)) < 2.0, measured  # within 2 semitones
    assert measured[220.0] / measured[110.0] > 1.6


def test_sampled_speakers_and_sessions_differ() -> None:
    rng = np.random.default_rng(0)
    speakers = [sample_speaker(rng) for _ in range(20)]
    f0s = np.array([s.f0_mean_hz for s in speakers])
    assert f0s.min() < 150 < f0s.max()
    assert all(np.all(np.diff(s.formants_hz, axis=1) > 0) for s in speakers)
    sessions = [sample_session(rng) for _ in range(20)]
    assert len({round(s.snr_db, 3) for s in sessions}) == 20
    assert any(s.rt60_s > 0 for s in sessions) and any(s.rt60_s == 0 for s in sessions)
