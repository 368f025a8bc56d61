"""End-to-end tests of the parallel feature-extraction stage on tiny generated data dirs."""

from __future__ import annotations

import io
import re
from pathlib import Path

import kaldiio
import numpy as np
import pytest
import soundfile

from speakernet.bin.make_features import main as make_features_main
from speakernet.data.audio import iter_data_dir_audio
from speakernet.data.datadir_ops import split_contiguous
from speakernet.data.kaldi_dir import read_scp
from speakernet.features.fbank import compute_fbank_and_energy
from speakernet.features.make_features import FeatureExtractionError, make_features
from speakernet.features.vad import compute_vad


def _audio(seconds: float, rate: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    speech = 0.3 * np.sin(2 * np.pi * (150 + 50 * seed) * t) * (np.sin(2 * np.pi * 2 * t) > 0)  # on/off bursts
    return (speech + 0.003 * rng.standard_normal(t.size)).astype(np.float32)


def _matrix_headers(scp: Path) -> dict[str, bytes]:
    """Utterance -> the Kaldi matrix type of its archive entry (``FM`` float, ``CM``/``CM2``/``CM3`` compressed)."""
    headers = {}
    for utt, value in read_scp(scp).items():
        ark, offset = value.rsplit(":", 1)
        with open(ark, "rb") as handle:
            handle.seek(int(offset))
            start = handle.read(6)
        assert start[:2] == b"\0B", f"{utt}: not a binary Kaldi entry: {start!r}"
        headers[utt] = start[2:].split(b" ")[0]
    return headers


def _kaldi_compressed(matrix: np.ndarray) -> np.ndarray:
    """``matrix`` after a round trip through Kaldi's kSpeechFeature compression (kaldiio's)."""
    buffer = io.BytesIO()
    kaldiio.save_ark(buffer, {"x": matrix}, compression_method=2)
    buffer.seek(0)
    return dict(kaldiio.load_ark(buffer))["x"]


def _write_dir(data: Path, wav_scp: dict[str, str], segments: dict[str, str] | None = None) -> None:
    data.mkdir(parents=True, exist_ok=True)
    utts = sorted(segments or wav_scp)
    (data / "wav.scp").write_text("".join(f"{k} {wav_scp[k]}\n" for k in sorted(wav_scp)))
    if segments:
        (data / "segments").write_text("".join(f"{k} {segments[k]}\n" for k in utts))
    (data / "utt2spk").write_text("".join(f"{u} {u.split('-')[0]}\n" for u in utts))
    spk2utt: dict[str, list[str]] = {}
    for utt in utts:
        spk2utt.setdefault(utt.split("-")[0], []).append(utt)
    (data / "spk2utt").write_text("".join(f"{s} {' '.join(us)}\n" for s, us in sorted(spk2utt.items())))


@pytest.fixture
def mixed_dir(tmp_path):
    """16 kHz wav, flac, 8 kHz wav and a `cat x.wav |` pipe; returns (data dir, 16 kHz sample counts)."""
    audio = tmp_path / "audio"
    audio.mkdir()
    soundfile.write(audio / "a.wav", _audio(1.30, 16000, 1), 16000, subtype="PCM_16")
    soundfile.write(audio / "b.flac", _audio(0.87, 16000, 2), 16000)
    soundfile.write(audio / "c.wav", _audio(1.00, 8000, 3), 8000, subtype="PCM_16")
    soundfile.write(audio / "d.wav", _audio(2.01, 16000, 4), 16000, subtype="PCM_16")
    data = tmp_path / "data"
    _write_dir(data, {"spk1-a": str(audio / "a.wav"), "spk1-b": str(audio / "b.flac"),
                      "spk2-c": str(audio / "c.wav"), "spk2-d": f"cat {audio / 'd.wav'} |"})
    return data, {"spk1-a": 20800, "spk1-b": 13920, "spk2-c": 16000, "spk2-d": 32160}


def test_split_contiguous():
    assert split_contiguous(list("abcdefg"), 3) == [list("abc"), list("de"), list("fg")]
    assert sum(split_contiguous(list("ab"), 2), []) == ["a", "b"]


def test_mixed_dir_with_two_jobs(mixed_dir, tmp_path):
    data, samples = mixed_dir
    feat_dir = tmp_path / "fbank"
    make_features(data, feat_dir, nj=2)
    feats_scp = (data / "feats.scp").read_text().splitlines()
    assert [line.split()[0] for line in feats_scp] == sorted(samples)  # C-sorted, no duplicates
    num_frames = {k: int(v) for k, v in read_scp(data / "utt2num_frames").items()}
    assert num_frames == {utt: 1 + (n - 400) // 160 for utt, n in samples.items()}
    assert {Path(v.rsplit(":", 1)[0]).name for v in read_scp(data / "feats.scp").values()} == {"fbank.1.ark",
                                                                                               "fbank.2.ark"}
    assert set(_matrix_headers(data / "feats.scp").values()) == {b"FM"}  # uncompressed unless asked for
    feats = kaldiio.load_scp(str(data / "feats.scp"))
    vads = kaldiio.load_scp(str(data / "vad.scp"))
    # Round trip: what the archive holds is bit-identical to computing the features directly.
    for utt, waveform, _ in iter_data_dir_audio(data):
        fbank, log_energy = compute_fbank_and_energy(waveform)
        stored = feats[utt]
        assert stored.dtype == np.float32 and stored.shape == (num_frames[utt], 80)
        np.testing.assert_array_equal(stored, fbank)
        np.testing.assert_array_equal(vads[utt], compute_vad(log_energy))
        assert set(np.unique(vads[utt])) <= {0.0, 1.0} and 0 < vads[utt].sum() < len(vads[utt])
    assert (feat_dir / "log" / "make_fbank.1.log").is_file() and (feat_dir / "log" / "make_fbank.2.log").is_file()
    assert "real time" in (feat_dir / "log" / "make_fbank.2.log").read_text()

    # A re-run with fewer jobs overwrites cleanly: same content, no stale job archives, and none
    # of the half-written archives a killed run (with more jobs) left behind.
    before = {utt: feats[utt].copy() for utt in samples}
    for leftover in (".fbank.3.ark.tmp", ".vad.3.scp.tmp", ".fbank.1.ark.tmp"):
        (feat_dir / leftover).write_bytes(b"half an archive")
    assert make_features_main(["--data-dir", str(data), "--feat-dir", str(feat_dir), "--nj", "1"]) == 0
    assert len((data / "feats.scp").read_text().splitlines()) == len(samples)
    assert not (feat_dir / "fbank.2.ark").exists() and not list(feat_dir.glob(".*.tmp"))
    feats = kaldiio.load_scp(str(data / "feats.scp"))
    for utt in samples:
        np.testing.assert_array_equal(feats[utt], before[utt])


def test_compress_option_stores_kaldi_compressed_features(mixed_dir, tmp_path):
    data, samples = mixed_dir
    assert make_features_main(["--data-dir", str(data), "--feat-dir", str(tmp_path / "fbank"), "--compress"]) == 0
    # every feature entry is a Kaldi compressed matrix (kSpeechFeature: "CM"); VAD stays exact
    assert _matrix_headers(data / "feats.scp") == {utt: b"CM" for utt in samples}
    assert set(_matrix_headers(data / "vad.scp").values()) == {b"FV"}
    feats = kaldiio.load_scp(str(data / "feats.scp"))
    for utt, waveform, _ in iter_data_dir_audio(data):
        exact = compute_fbank_and_energy(waveform)[0]
        stored = feats[utt]
        assert stored.shape == exact.shape and stored.dtype == np.float32
        # exactly Kaldi's lossy compression of the exact features: off by a little, never by much
        np.testing.assert_array_equal(stored, _kaldi_compressed(exact))
        error = np.abs(stored - exact)
        assert 1e-4 < error.max() < 0.15 and error.mean() < 0.02


def test_segments_dir(tmp_path):
    soundfile.write(tmp_path / "rec1.wav", _audio(3.0, 16000, 5), 16000, subtype="PCM_16")
    soundfile.write(tmp_path / "rec2.wav", _audio(2.0, 8000, 6), 8000, subtype="PCM_16")
    data = tmp_path / "data"
    segments = {"spkA-rec1-000": "rec1 0.0 1.0", "spkA-rec1-001": "rec1 1.0 2.5", "spkB-rec1-002": "rec1 2.5 -1",
                "spkB-rec2-000": "rec2 0.25 1.75"}
    _write_dir(data, {"rec1": str(tmp_path / "rec1.wav"), "rec2": str(tmp_path / "rec2.wav")}, segments)
    make_features(data, tmp_path / "fbank", nj=2)
    samples = {"spkA-rec1-000": 16000, "spkA-rec1-001": 24000, "spkB-rec1-002": 8000, "spkB-rec2-000": 24000}
    num_frames = {k: int(v) for k, v in read_scp(data / "utt2num_frames").items()}
    assert num_frames == {utt: 1 + (n - 400) // 160 for utt, n in samples.items()}
    assert {utt: m.shape for utt, m in kaldiio.load_scp(str(data / "feats.scp")).items()} == {
        utt: (n, 80) for utt, n in num_frames.items()}


def test_bad_audio_fails_naming_every_key_then_rerun_works(mixed_dir, tmp_path):
    data, samples = mixed_dir
    feat_dir = tmp_path / "fbank"
    make_features(data, feat_dir, nj=2)  # an earlier good run: its feats.scp must not survive a failure
    audio = tmp_path / "audio"
    (audio / "bad.wav").write_bytes(b"RIFF this is not a wav file at all" * 20)
    nan = _audio(0.5, 16000, 9)
    nan[100:110] = np.nan
    soundfile.write(audio / "nan.wav", nan, 16000, subtype="FLOAT")
    wav_scp = {utt: value for utt, value in read_scp(data / "wav.scp").items()}
    wav_scp.update({"spk1-bad": str(audio / "bad.wav"), "spk2-nan": str(audio / "nan.wav")})
    _write_dir(data, wav_scp)

    with pytest.raises(FeatureExtractionError) as info:
        make_features(data, feat_dir, nj=2)
    assert set(info.value.failed_utts) == {"spk1-bad", "spk2-nan"}
    assert "spk1-bad" in str(info.value) and "spk2-nan" in str(info.value)
    # the one line says why, with the file: the first bad utterance's error from its job's log
    assert re.search(r"; the first: utterance 'spk\d-(bad|nan)' \(wav.scp value '[^']*(bad|nan).wav'\): ",
                     str(info.value))
    assert not (data / "feats.scp").exists() and not (data / "vad.scp").exists()
    assert not (data / "utt2num_frames").exists()
    logs = "".join(p.read_text() for p in (feat_dir / "log").glob("make_fbank.*.log"))
    assert "spk1-bad" in logs and "NaN" in logs
    assert make_features_main(["--data-dir", str(data), "--feat-dir", str(feat_dir), "--nj", "2"]) == 1

    # Repair the audio and re-run: everything comes out.
    soundfile.write(audio / "bad.wav", _audio(0.5, 16000, 10), 16000, subtype="PCM_16")
    soundfile.write(audio / "nan.wav", _audio(0.5, 16000, 11), 16000, subtype="PCM_16")
    make_features(data, feat_dir, nj=2)
    assert sorted(read_scp(data / "feats.scp")) == sorted(list(samples) + ["spk1-bad", "spk2-nan"])
    assert int(read_scp(data / "utt2num_frames")["spk2-nan"]) == 1 + (8000 - 400) // 160
    assert not list((feat_dir / "log").glob("*.failed"))


def test_data_dir_and_feat_dir_checks(mixed_dir, tmp_path):
    data, _ = mixed_dir
    from speakernet.data.kaldi_dir import DataDirError

    with pytest.raises(DataDirError, match="does not exist"):
        make_features(tmp_path / "nowhere", tmp_path / "f")
    (data / "utt2spk").write_text("spk1-a spk1\n")
    with pytest.raises(DataDirError, match="utt2spk"):
        make_features(data, tmp_path / "f")
    other = tmp_path / "other"
    _write_dir(other, {"x-1": "cat /dev/null |"})
    (tmp_path / "f").mkdir()
    (tmp_path / "f" / "data_dir").write_text(str(data.resolve()) + "\n")
    with pytest.raises(ValueError, match="another data dir|already holds"):
        make_features(other, tmp_path / "f")


def test_frontend_record_travels_and_mismatches_are_refused(tmp_path: Path) -> None:
    from speakernet.features.fbank import FbankConfig
    from speakernet.features.frontend import check_same_frontend, load_frontend, save_frontend
    from speakernet.features.vad import VadConfig

    save_frontend(tmp_path / "model", FbankConfig(num_mel_bins=80), VadConfig())
    save_frontend(tmp_path / "same", FbankConfig(num_mel_bins=80), VadConfig())
    save_frontend(tmp_path / "other", FbankConfig(num_mel_bins=40), VadConfig())
    assert load_frontend(tmp_path / "model") == (FbankConfig(num_mel_bins=80), VadConfig())
    assert load_frontend(tmp_path / "none") is None
    check_same_frontend(tmp_path / "model", tmp_path / "same")
    check_same_frontend(tmp_path / "model", tmp_path / "none")  # no record: accepted
    with pytest.raises(ValueError, match="fbank.num_mel_bins = 40.*trained on 80"):
        check_same_frontend(tmp_path / "model", tmp_path / "other")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "frontend.json").write_text('{"fbank": {"num_mel_bins": 1}, "vad": {}}')
    with pytest.raises(ValueError, match="frontend.json is not a valid front-end record"):
        load_frontend(tmp_path / "bad")


def _alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie, killed but not yet reaped, counts as gone)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs Linux /proc to find the job processes")
def test_jobs_die_with_a_killed_stage_and_a_rerun_completes(tmp_path: Path) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time

    soundfile.write(tmp_path / "a.wav", _audio(1.0, 16000, 1), 16000, subtype="PCM_16")
    data, feats = tmp_path / "data", tmp_path / "feats"
    _write_dir(data, {f"spk{i}-u": f"sleep 2; cat {tmp_path / 'a.wav'} |" for i in range(2)})  # jobs wait in a pipe
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    stage = subprocess.Popen([sys.executable, "-m", "speakernet.bin.make_features", "--data-dir", str(data),
                              "--feat-dir", str(feats), "--nj", "2"], env=env, stderr=subprocess.DEVNULL)
    children = Path(f"/proc/{stage.pid}/task/{stage.pid}/children")
    deadline = time.monotonic() + 60
    jobs: list[int] = []
    while len(jobs) < 2 and time.monotonic() < deadline:
        jobs = [int(pid) for pid in children.read_text().split()] if children.exists() else []
        time.sleep(0.05)
    assert len(jobs) == 2, "the stage did not start its two jobs"
    os.kill(stage.pid, signal.SIGKILL)  # as a killed recipe would be: no cleanup runs
    stage.wait()
    deadline = time.monotonic() + 1.5  # before the jobs' pipes (sleep 2) would even deliver their audio
    while any(_alive(pid) for pid in jobs) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(_alive(pid) for pid in jobs), "orphaned feature jobs outlived their stage"
    make_features(data, feats, nj=2)  # the re-run is not raced by the old jobs
    assert sorted(read_scp(data / "feats.scp")) == ["spk0-u", "spk1-u"]
    assert sorted(read_scp(data / "vad.scp")) == ["spk0-u", "spk1-u"]


def test_local_launcher_with_a_failing_job_then_a_fixed_rerun(mixed_dir, tmp_path, capfd) -> None:
    data, samples = mixed_dir
    feat_dir = tmp_path / "fbank"
    audio = tmp_path / "audio"
    (audio / "c.wav").write_bytes(b"RIFF not a wav")  # spk2-c: the third of four utterances, job 2 of 2
    args = ["--data-dir", str(data), "--feat-dir", str(feat_dir), "--nj", "2", "--cmd", "run.pl --max-jobs-run 1"]
    assert make_features_main(args) == 1
    stderr = capfd.readouterr().err
    assert "1 of 2 feature jobs failed" in stderr and "spk2-c" in stderr
    assert f"see {feat_dir.resolve() / 'log' / 'make_fbank.2.log'}" in stderr
    assert "# ended (exit code 1)" in (feat_dir / "log" / "make_fbank.2.log").read_text()
    assert not (data / "feats.scp").exists()
    soundfile.write(audio / "c.wav", _audio(1.00, 8000, 3), 8000, subtype="PCM_16")
    assert make_features_main(args) == 0
    assert sorted(read_scp(data / "feats.scp")) == sorted(samples)


def test_slurm_launcher_runs_the_jobs_as_one_array(mixed_dir, tmp_path, monkeypatch) -> None:
    from fake_slurm import install_fake_slurm, sbatch_calls

    from speakernet.utils.launch import SlurmLauncher

    data, samples = mixed_dir
    make_features(data, tmp_path / "local", nj=2)
    expected = kaldiio.load_scp(str(data / "feats.scp"))
    expected = {utt: expected[utt].copy() for utt in samples}
    record = install_fake_slurm(tmp_path / "bin", monkeypatch)
    feat_dir = tmp_path / "fbank"
    assert make_features_main(["--data-dir", str(data), "--feat-dir", str(feat_dir), "--nj", "2", "--cmd",
                               "slurm.pl --partition cpu --time 0:30:00 --mem 2G --max-jobs-run 1"]) == 0
    (call,) = sbatch_calls(record)
    assert call[0] == "--array=1-2%1" and "--wait" in call
    assert {"--partition=cpu", "--time=0:30:00", "--mem=2G", "--job-name=make_fbank"} <= set(call)
    assert call[-1] == str(feat_dir.resolve() / "log" / "q" / "make_fbank.sh")
    feats = kaldiio.load_scp(str(data / "feats.scp"))
    for utt in samples:
        np.testing.assert_array_equal(feats[utt], expected[utt])
    assert "real time" in (feat_dir / "log" / "make_fbank.2.log").read_text()

    # A failing task fails the stage, naming its job, its log and its bad utterance.
    (tmp_path / "audio" / "a.wav").write_bytes(b"RIFF not a wav")  # spk1-a, job 1
    with pytest.raises(FeatureExtractionError, match=r"1 of 2 feature jobs failed .*spk1-a.*make_fbank\.1\.log"):
        make_features(data, feat_dir, nj=2, launcher="slurm.pl --partition cpu")
    assert not (data / "feats.scp").exists()
    # A task Slurm lost (it wrote no status) fails it too.
    soundfile.write(tmp_path / "audio" / "a.wav", _audio(1.30, 16000, 1), 16000, subtype="PCM_16")
    monkeypatch.setenv("FAKE_SBATCH_LOSE_TASK", "2")
    with pytest.raises(FeatureExtractionError, match="job 2: sbatch exited with status 137") as info:
        make_features(data, feat_dir, nj=2, launcher=SlurmLauncher(status_grace_s=0.1))
    assert info.value.failed_jobs == [2]
