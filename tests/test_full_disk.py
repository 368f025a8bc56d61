"""A full disk and a read-only file system, for real: a small tmpfs mounted for the test.

Mounting needs root (CI runs as root in a container); elsewhere the tests are skipped with the
reason. Every stage must then fail with one line naming the output path and the cause, keep
the previous version of its output, and leave no temporary file behind.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest

from speakernet.backend.embeddings import write_embeddings
from speakernet.bin import compute_metrics as compute_metrics_bin
from speakernet.bin import make_features as make_features_bin
from speakernet.bin import score as score_bin
from speakernet.data.kaldi_dir import write_trials
from speakernet.utils.logging import setup_logging


@pytest.fixture
def mount(tmp_path: Path):
    """``mount(size_kib, read_only=False)`` -> a fresh tmpfs dir, unmounted at the end."""
    mounted: list[Path] = []

    def make(size_kib: int, read_only: bool = False) -> Path:
        point = tmp_path / f"mnt{len(mounted)}"
        point.mkdir()
        result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kib}k", "tmpfs", str(point)],
                                capture_output=True, text=True)
        if result.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here (needs root): {result.stderr.strip() or result.returncode}")
        mounted.append(point)
        return point

    yield make
    for point in reversed(mounted):
        subprocess.run(["umount", "-l", str(point)], capture_output=True)


def _remount_read_only(point: Path) -> None:
    subprocess.run(["mount", "-o", "remount,ro", str(point)], check=True, capture_output=True)


def _embeddings_and_trials(root: Path, num_trials: int) -> tuple[Path, Path]:
    rng = np.random.default_rng(0)
    keys = [f"u{index:03d}" for index in range(100)]
    write_embeddings(root / "x.ark", root / "x.scp", keys, rng.normal(size=(100, 16)).astype(np.float32))
    write_trials(root / "trials", [(keys[i % 100], keys[(7 * i + 1) % 100], "target" if i % 2 else "nontarget")
                                   for i in range(num_trials)])
    return root / "x.scp", root / "trials"


def _one_error_line(capsys: pytest.CaptureFixture[str], *names: str) -> str:
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err + captured.out
    errors = [line for line in captured.err.splitlines() if " ERROR " in line]
    assert len(errors) == 1, captured.err
    for name in names:
        assert name in errors[0], errors[0]
    return errors[0]


def test_a_full_disk_is_one_line_naming_the_output_and_keeps_the_old_one(
    mount, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    setup_logging()  # to this test's captured stderr, not to the one a previous test closed
    disk = mount(64)  # KiB: room for a small score file, not for 8,000 lines
    scp, _ = _embeddings_and_trials(tmp_path, 10)
    out = disk / "scores" / "trials.score"
    small = tmp_path / "small_trials"
    (tmp_path / "trials").rename(small)
    assert score_bin.main(["--trials", str(small), "--enroll-scp", str(scp), "--test-scp", str(scp),
                           "--out", str(out)]) == 0
    before = out.read_bytes()
    _, big = _embeddings_and_trials(tmp_path, 8000)
    capsys.readouterr()
    status = score_bin.main(["--trials", str(big), "--enroll-scp", str(scp), "--test-scp", str(scp),
                             "--out", str(out)])
    assert status == 1
    _one_error_line(capsys, f"{out}: cannot write it (No space left on device)")
    assert out.read_bytes() == before
    assert sorted(path.name for path in out.parent.iterdir()) == ["trials.score"]  # no temporary left


def test_read_only_file_system_is_one_line_per_stage(mount, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    setup_logging()
    disk = mount(64)
    _remount_read_only(disk)
    scp, trials = _embeddings_and_trials(tmp_path, 10)
    out = disk / "scores" / "trials.score"
    assert score_bin.main(["--trials", str(trials), "--enroll-scp", str(scp), "--test-scp", str(scp),
                           "--out", str(out)]) == 1
    _one_error_line(capsys, str(disk / "scores"), "Read-only file system")
    data = tmp_path / "data"
    data.mkdir()
    (data / "wav.scp").write_text("u1 cat /dev/null |\n")
    (data / "utt2spk").write_text("u1 s1\n")
    (data / "spk2utt").write_text("s1 u1\n")
    assert make_features_bin.main(["--data-dir", str(data), "--feat-dir", str(disk / "fbank")]) == 1
    _one_error_line(capsys, str(disk / "fbank"), "Read-only file system")
    good = tmp_path / "good.score"
    assert score_bin.main(["--trials", str(trials), "--enroll-scp", str(scp), "--test-scp", str(scp),
                           "--out", str(good)]) == 0
    capsys.readouterr()
    assert compute_metrics_bin.main(["--scores", str(good), "--out", str(disk / "results")]) == 1
    _one_error_line(capsys, str(disk / "results"), "Read-only file system")


def _audio_data_dir(root: Path, seconds: list[float]) -> Path:
    """A data dir of noise WAVs, one speaker per file (16 kHz)."""
    import soundfile as sf

    data = root / "data"
    (root / "wav").mkdir(parents=True)
    rng = np.random.default_rng(0)
    lines = []
    for index, duration in enumerate(seconds):
        path = root / "wav" / f"u{index}.wav"
        sf.write(path, (0.1 * rng.standard_normal(int(duration * 16000))).astype(np.float32), 16000)
        lines.append((f"s{index}-u{index}", f"s{index}", str(path)))
    data.mkdir()
    (data / "wav.scp").write_text("".join(f"{utt} {path}\n" for utt, _, path in lines))
    (data / "utt2spk").write_text("".join(f"{utt} {spk}\n" for utt, spk, _ in lines))
    (data / "spk2utt").write_text("".join(f"{spk} {utt}\n" for utt, spk, _ in lines))
    return data


def test_features_on_a_full_disk_name_the_archive_and_a_rerun_needs_no_double_space(
    mount, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    setup_logging()
    data = _audio_data_dir(tmp_path, [4.0, 4.0])  # 800 frames x 80 bins x 4 bytes: 256 KB of fbank
    disk = mount(400)  # room for one copy of the archives, not for two
    features = ["--data-dir", str(data), "--feat-dir", str(disk / "fbank")]
    assert make_features_bin.main(features) == 0
    first = sorted(path.name for path in (disk / "fbank").iterdir())
    # a re-run (e.g. after the data dir changed) replaces the job's archives instead of adding a copy
    assert make_features_bin.main(features) == 0
    assert sorted(path.name for path in (disk / "fbank").iterdir()) == first
    assert (data / "feats.scp").is_file()

    small = mount(64)
    capsys.readouterr()
    assert make_features_bin.main(["--data-dir", str(data), "--feat-dir", str(small / "fbank")]) == 1
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    last = captured.err.strip().splitlines()[-1]
    assert " ERROR " in last and "1 of 1 feature jobs failed (job 1: " in last, last
    assert f"{small / 'fbank' / 'fbank.1.ark'}: cannot write it (No space left on device)" in last, last
    assert not (data / "feats.scp").exists()  # removed first: it would point into the failed archives
    assert not [path for path in (small / "fbank").iterdir() if path.name.endswith(".tmp")]


def test_features_of_a_read_only_data_dir_fail_before_any_work(mount, tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    setup_logging()
    disk = mount(4096)
    data = _audio_data_dir(disk, [1.0])
    _remount_read_only(disk)
    capsys.readouterr()
    assert make_features_bin.main(["--data-dir", str(data), "--feat-dir", str(tmp_path / "fbank")]) == 1
    line = _one_error_line(capsys, f"{data}: cannot write it (Read-only file system; feats.scp",
                           "writable copy (python -m speakernet.bin.combine_data COPY")
    assert "job" not in line and not (tmp_path / "fbank" / "fbank.1.ark").exists()


def test_extraction_into_a_read_only_dir_fails_before_the_first_embedding(mount, tmp_path: Path) -> None:
    import kaldiio
    import torch

    from speakernet.backend.extract import extract_embeddings
    from speakernet.utils.fileio import OutputError

    data = tmp_path / "data"
    data.mkdir()
    with kaldiio.WriteHelper(f"ark,scp:{data / 'feats.ark'},{data / 'feats.scp'}") as writer:
        writer("u1", np.zeros((60, 4), dtype=np.float32))
    calls = []

    class Mean(torch.nn.Module):
        def forward(self, feats: torch.Tensor) -> torch.Tensor:
            calls.append(feats.shape)
            return feats.mean(dim=1)

    disk = mount(64)
    _remount_read_only(disk)
    with pytest.raises(OutputError, match=rf"^{disk / 'emb'}: cannot write it \(Read-only file system\)$"):
        extract_embeddings(Mean(), data, disk / "emb", use_vad=False)
    assert calls == []
    with pytest.raises(ValueError, match="extraction: batch_size must be >= 1, got 0"):
        extract_embeddings(Mean(), data, tmp_path / "emb", use_vad=False, batch_size=0)


def test_corpus_synthesis_on_a_full_disk_names_the_corpus_dir(mount, capsys: pytest.CaptureFixture[str],
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from speakernet.bin import make_synthetic_corpus
    from speakernet.data import synth_corpus

    monkeypatch.setattr(synth_corpus, "MIN_UTTS_PER_WORKER", 1)  # the error crosses the worker pool
    setup_logging()
    disk = mount(256)
    capsys.readouterr()
    status = make_synthetic_corpus.main(["--out-dir", str(disk / "corpus"), "--num-train-speakers", "4",
                                         "--num-test-speakers", "2", "--utts-per-speaker", "4",
                                         "--test-utts-per-speaker", "2", "--nj", "2"])
    assert status == 1
    _one_error_line(capsys, f"{disk / 'corpus'}: cannot write it (No space left on device; the corpus needs about")
    assert list(disk.iterdir()) == []  # the half-made corpus is gone
