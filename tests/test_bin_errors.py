"""Stage entry points report bad input as one logged line and an exit status, never a traceback."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from speakernet.bin import calibrate, cli, compute_metrics, extract, make_features, run_stage
from speakernet.bin import train as train_bin
from speakernet.config import ConfigError
from speakernet.data.kaldi_dir import DataDirError
from speakernet.features.make_features import FeatureExtractionError
from speakernet.utils.fileio import OutputError


def _one_error_line(capsys: pytest.CaptureFixture[str], *names: str, only_line: bool = True) -> str:
    # only_line: the error is all the stage printed (it failed before doing any work)
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err + captured.out
    lines = [line for line in captured.err.splitlines() if line.strip() and (only_line or " ERROR " in line)]
    assert len(lines) == 1, captured.err
    assert " ERROR " in lines[0]
    for name in names:
        assert name in lines[0], lines[0]
    return lines[0]


def _missing(tmp_path: Path) -> Path:
    return tmp_path / "does-not-exist"


CASES = {
    "compute_metrics": lambda missing, out: compute_metrics.main(
        ["--scores", str(missing / "vox1_O.score"), "--out", str(out / "results")]),
    "extract": lambda missing, out: extract.main(
        ["--exp-dir", str(missing), "--data-dir", str(missing), "--out-dir", str(out / "embeddings"),
         "--device", "cpu"]),
    "make_features": lambda missing, out: make_features.main(
        ["--data-dir", str(missing), "--feat-dir", str(out / "fbank")]),
    "make_features --job": lambda missing, out: make_features.main(["--feat-dir", str(missing), "--job", "1"]),
    "cli embed": lambda missing, out: cli.main(
        ["embed", "--exp-dir", str(missing), "a.wav", "--out-dir", str(out / "embeds")]),
    "cli compare": lambda missing, out: cli.main(["compare", "--exp-dir", str(missing), "a.wav", "b.wav"]),
    "cli verify": lambda missing, out: cli.main(["verify", "--exp-dir", str(missing), "a.wav", "b.wav", "--far",
                                                 "0.01"]),
    "calibrate": lambda missing, out: calibrate.main(
        ["--trials", str(missing / "trials"), "--scp", str(missing / "xvector.scp"), "--mean-vec",
         str(missing / "mean.vec"), "--out", str(out / "cosine_calibration.json")]),
}


@pytest.mark.parametrize("stage", list(CASES))
def test_missing_input_is_one_line_and_status_1(stage: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                                ) -> None:
    missing = _missing(tmp_path)
    out = tmp_path / "out"
    assert CASES[stage](missing, out) == 1
    _one_error_line(capsys, str(missing))
    assert not out.exists()


def test_train_missing_data_dir_is_status_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    conf = tmp_path / "conf.yaml"
    conf.write_text("training: {epochs: 1, num_threads: 1}\n")
    missing = _missing(tmp_path)
    code = train_bin.main(["--conf", str(conf), "--data-dir", str(missing), "--exp-dir", str(tmp_path / "exp"),
                           "--device", "cpu"])
    assert code == 1
    _one_error_line(capsys, str(missing / "utt2spk"), "does not exist")


def test_train_bad_config_is_status_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = _missing(tmp_path)
    args = ["--data-dir", str(tmp_path), "--exp-dir", str(tmp_path / "exp"), "--device", "cpu"]
    assert train_bin.main(["--conf", str(missing / "conf.yaml")] + args) == 2
    _one_error_line(capsys, f"cannot read config {missing / 'conf.yaml'}")
    conf = tmp_path / "conf.yaml"
    conf.write_text("training: {epochs: 1}\n")
    assert train_bin.main(["--conf", str(conf)] + args + ["training.epoch=3"]) == 2
    _one_error_line(capsys, "unknown config key 'training.epoch'")


def test_train_interrupted_is_status_130_with_a_resume_hint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    import speakernet.training.trainer as trainer

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(trainer, "train", interrupted)
    conf = tmp_path / "conf.yaml"
    conf.write_text("training: {epochs: 1}\n")
    exp = tmp_path / "exp"
    assert train_bin.main(["--conf", str(conf), "--data-dir", str(tmp_path), "--exp-dir", str(exp)]) == 130
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert len(lines) == 1 and " WARNING " in lines[0]
    assert "--resume" in lines[0] and f"{exp}/checkpoints" in lines[0]


def test_compute_metrics_unknown_threshold_row_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                                           ) -> None:
    scores = tmp_path / "cos"
    scores.write_text("a b 0.9 target\na c 0.5 nontarget\n")
    code = compute_metrics.main(["--scores", str(scores), "--out", str(tmp_path / "results"),
                                 "--threshold-out", str(tmp_path / "threshold"), "--threshold-of", "nope"])
    assert code == 1
    _one_error_line(capsys, "--threshold-of nope names no row (rows: cos)", only_line=False)
    assert not (tmp_path / "threshold").exists()


# --- run_stage itself ---


@pytest.mark.parametrize("error", [FileNotFoundError("x"), DataDirError("data/utt2spk", "bad"), ConfigError("c"),
                                   OutputError(30, "Read-only file system", "out/x")])
def test_run_stage_default_errors_give_1(error: BaseException, caplog: pytest.LogCaptureFixture) -> None:
    def fail() -> None:
        raise error

    with caplog.at_level(logging.ERROR):
        assert run_stage(fail) == 1
    assert [record.getMessage() for record in caplog.records] == [str(error)]


def test_run_stage_extra_errors_and_statuses() -> None:
    def fail(error: BaseException):
        def action() -> None:
            raise error
        return action

    assert run_stage(lambda: None) == 0
    assert run_stage(fail(FeatureExtractionError("2 utterances failed", [1], ["u1", "u2"])),
                     {FeatureExtractionError: 1}) == 1
    assert run_stage(fail(ConfigError("bad")), {ConfigError: 2}) == 2  # checked before ValueError
    assert run_stage(fail(ValueError("bad")), {ConfigError: 2}) == 1
    with pytest.raises(FeatureExtractionError):  # a RuntimeError is a bug unless the stage says otherwise
        run_stage(fail(FeatureExtractionError("x", [1], ["u1"])))
    with pytest.raises(TypeError):
        run_stage(fail(TypeError("a bug keeps its traceback")))
    with pytest.raises(KeyboardInterrupt):
        run_stage(fail(KeyboardInterrupt()))
    assert run_stage(fail(KeyboardInterrupt()), interrupted="stopped") == 130
