"""Smoke run of egs/mini/v1/run.sh through every stage on a tiny corpus, then the user CLI."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile

from speakernet.backend.embeddings import load_embeddings, read_vector
from speakernet.bin import cli
from speakernet.inference import evaluated_model_dir
from speakernet.training import checkpoint as ckpt
from speakernet.backend.metrics import compute_eer
from speakernet.backend.score_files import read_scores, trial_labels

ROOT = Path(__file__).resolve().parents[1]
RUN = ROOT / "egs" / "mini" / "v1" / "run.sh"

CORPUS_OPTS = (
    "--num-train-speakers 8 --num-test-speakers 4 --utts-per-speaker 4 --test-utts-per-speaker 3 "
    "--min-duration 1.5 --max-duration 2.0 --trials-per-utt 2"
)
# One torch thread per training process: the suite runs two test files at once on two cores, and
# the trainer's default (every core) makes their threads fight, costing several times the CPU.
TRAIN_OVERRIDES = (
    "training.epochs=2 data.batch_size=8 data.min_frames=50 data.crop_frames=100 "
    "model_args.channels=16 model_args.embed_dim=16 training.log_interval=1 training.num_threads=1"
)


def _run(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHON": sys.executable}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    return subprocess.run(list(args), cwd=cwd, capture_output=True, text=True, env=env, timeout=600)


@pytest.fixture(scope="module")
def recipe(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    work = tmp_path_factory.mktemp("mini")
    paths = {"corpus": work / "corpus", "exp": work / "exp" / "ecapa"}
    result = _run(str(RUN), "--corpus", str(paths["corpus"]), "--exp", str(paths["exp"]),
                  "--corpus-opts", CORPUS_OPTS, "--train-overrides", TRAIN_OVERRIDES)
    assert result.returncode == 0, result.stderr[-4000:]
    paths["stderr"] = work / "stderr.txt"
    paths["stderr"].write_text(result.stderr)
    return paths


def test_every_stage_ran_and_results_show_untrained_and_trained(recipe: dict[str, Path]) -> None:
    log = recipe["stderr"].read_text()
    for stage in range(5):
        assert f"Stage {stage}:" in log
    exp = recipe["exp"]
    data = recipe["corpus"] / "data"
    assert (data / "train" / "feats.scp").is_file() and (data / "test" / "vad.scp").is_file()
    assert len((data / "train" / "feats.scp").read_text().splitlines()) == 32
    # the training features' front-end travels with the model (the CLI rebuilds it from there)
    assert (exp / "frontend.json").read_text() == (data / "train" / "frontend.json").read_text()
    lines = (exp / "results").read_text().splitlines()
    rows = {line.split()[0]: line.split() for line in lines[1:]}
    backends = ["cosine", "asnorm", "asnorm+qmf", "plda"]
    assert set(rows) == {f"{model}:{backend}:trials" for model in ("untrained", "trained") for backend in backends}
    assert lines[0].split()[-1] == "Cllr"
    num_trials = len((data / "test" / "trials").read_text().splitlines())
    # results.json holds the same rows; calibrated back-ends are LLRs with actDCF and Cllr shown
    records = json.loads((exp / "results.json").read_text())["rows"]
    assert [record["name"] for record in records] == [line.split()[0] for line in lines[1:]]
    for record in records:
        row = rows[record["name"]]
        assert int(row[1]) == record["num_trials"] == num_trials
        assert float(row[2]) == pytest.approx(record["eer"] * 100, abs=5e-4)
        assert record["llr"] == (record["backend"] in ("asnorm+qmf", "plda"))
        assert (row[-1] == "-") != record["llr"]
        trials, scores = read_scores(record["scores"])
        assert record["eer"] == pytest.approx(compute_eer(scores, trial_labels(trials))[0], abs=1e-12)
    # every back-end stage left its own log, and the report page embeds its figures
    for name in ("qmf.train.latest.log", "plda.train.latest.log", "score.asnorm.latest.trials.log", "report.log"):
        assert (exp / "log" / name).is_file(), name
    page = (exp / "report.html").read_text()
    images = re.findall(r'<img [^>]*src="([^"]*)"', page)
    assert len(images) >= 5 and all(src.startswith("data:image/png;base64,") for src in images)
    # the CLI's default threshold is the trained model's EER threshold on these trials: the
    # lowest score at which the misses reach the false alarms (counted here by brute force)
    trials, scores = read_scores(exp / "scores" / "latest" / "cosine" / "trials.score")
    labels = trial_labels(trials)
    threshold = float((exp / "threshold").read_text().split()[0])
    crossing = [t for t in sorted(set(scores.tolist()))
                if np.mean(scores[labels] < t) >= np.mean(scores[~labels] >= t)]
    assert threshold == pytest.approx(crossing[0], abs=1e-5)
    assert "x real time" in log and "trials/s" in log and "utts/s" in log


def test_rerun_skips_finished_stages_and_changes_nothing(recipe: dict[str, Path]) -> None:
    exp = recipe["exp"]
    before = {p: p.read_bytes() for p in [exp / "results", recipe["corpus"] / "data" / "train" / "feats.scp"]}
    result = _run(str(RUN), "--corpus", str(recipe["corpus"]), "--exp", str(exp), "--corpus-opts", CORPUS_OPTS,
                  "--train-overrides", TRAIN_OVERRIDES, "--stage", "1", "--stop-stage", "8")  # (stage 9 always redoes)
    assert result.returncode == 0, result.stderr[-4000:]
    assert "skip:" in result.stderr
    for path, content in before.items():
        assert path.read_bytes() == content, f"{path} changed on a re-run"


def test_regenerated_corpus_is_not_answered_with_stale_features(recipe: dict[str, Path], tmp_path: Path) -> None:
    # a user changes the corpus size and re-runs: features and embeddings must be redone
    # (the trained model is kept: its .train.done marker says so)
    bigger = CORPUS_OPTS.replace("--test-utts-per-speaker 3", "--test-utts-per-speaker 4")
    # (cosine only, no report: the back-end stages follow the same freshness rule, and the suite stays fast)
    result = _run(str(RUN), "--corpus", str(recipe["corpus"]), "--exp", str(recipe["exp"]), "--corpus-opts", bigger,
                  "--train-overrides", TRAIN_OVERRIDES, "--backends", "cosine", "--stop-stage", "8")
    assert result.returncode == 0, result.stderr[-4000:]
    assert "WARNING" in result.stderr and "trained on earlier data" in result.stderr
    test_dir = recipe["corpus"] / "data" / "test"
    assert len((test_dir / "feats.scp").read_text().splitlines()) == 16
    embedded = (recipe["exp"] / "embeddings" / "latest" / "test" / "xvector.scp").read_text().splitlines()
    assert len(embedded) == 16
    num_trials = len((test_dir / "trials").read_text().splitlines())
    for line in (recipe["exp"] / "results").read_text().splitlines()[1:]:
        assert int(line.split()[1]) == num_trials


def test_training_stage_under_torchrun_with_two_processes(recipe: dict[str, Path], tmp_path: Path) -> None:
    exp = tmp_path / "ddp"
    one_epoch = TRAIN_OVERRIDES.replace("training.epochs=2", "training.epochs=1")
    result = _run(str(RUN), "--corpus", str(recipe["corpus"]), "--exp", str(exp), "--stage", "2", "--stop-stage", "2",
                  "--nproc", "2", "--train-overrides", one_epoch)
    assert result.returncode == 0, result.stderr[-4000:]
    assert "on 2 process(es)" in result.stderr and (exp / ".train.done").is_file()
    log = next((exp / "log").glob("train.*.log")).read_text()
    # 32 utterances in batches of 8 per process: 2 batches per epoch on each of the 2 ranks
    assert "2 batches/epoch of 8 per process x 2 process(es)" in log
    assert "(1/2)" in log and "(0/2)" in log  # both ranks logged
    assert "DDP replicas in sync" in log
    final = ckpt.load_checkpoint(ckpt.resolve_checkpoint(exp, "latest"))
    assert (final["world_size"], final["step"]) == (2, 2)


def test_a_conf_training_from_shards_makes_them_in_stage_1_and_trains_on_them(recipe: dict[str, Path],
                                                                             tmp_path: Path) -> None:
    exp = tmp_path / "shards"
    overrides = (TRAIN_OVERRIDES.replace("training.epochs=2", "training.epochs=1")
                 + " data.source=shards data.use_vad=false data.shard_lanes=1 data.shuffle_buffer=8")
    # stages 1-2: the shards path (the later stages read the features and the model, as in every run)
    result = _run(str(RUN), "--corpus", str(recipe["corpus"]), "--exp", str(exp), "--stage", "1", "--stop-stage", "2",
                  "--train-overrides", overrides)
    assert result.returncode == 0, result.stderr[-4000:]
    train = recipe["corpus"] / "data" / "train"
    assert "Stage 1: tar shards of" in result.stderr and "wrote 1 shards and kept 0 unchanged" in result.stderr
    shards = (train / "shards.list").read_text().split()
    assert len(shards) == 1 and Path(shards[0]).parent.name == "train.shards"
    log = next((exp / "log").glob("train.*.log")).read_text()
    assert "32 utterances of 8 speakers in 1 shards for training" in log and "4 batches/epoch of 8" in log
    assert (exp / ".train.done").is_file()
    # a re-run finds the shards made
    result = _run(str(RUN), "--corpus", str(recipe["corpus"]), "--exp", str(exp), "--stage", "1", "--stop-stage", "1",
                  "--train-overrides", overrides)
    assert result.returncode == 0 and f"skip: {Path(shards[0]).parent} is complete" in result.stderr


def test_finetuning_stage_adds_its_own_model_and_rows(recipe: dict[str, Path], tmp_path: Path) -> None:
    exp = tmp_path / "ecapa"
    shutil.copytree(recipe["exp"], exp)  # (copy2: mtimes kept, so the main model's stages stay done)
    finetune = TRAIN_OVERRIDES.replace("training.epochs=2", "training.epochs=1").replace("crop_frames=100",
                                                                                         "crop_frames=150")
    result = _run(str(RUN), "--corpus", str(recipe["corpus"]), "--exp", str(exp), "--corpus-opts", CORPUS_OPTS,
                  "--train-overrides", TRAIN_OVERRIDES, "--stage", "2", "--stop-stage", "8", "--backends", "cosine",
                  "--finetune-conf", "conf/ecapa_mini_lm.yaml", "--finetune-overrides", finetune)
    assert result.returncode == 0, result.stderr[-4000:]
    assert f"skip: {exp} is trained" in result.stderr
    source = (exp / "checkpoints" / "latest").read_text().strip()
    assert f"from {exp}/checkpoints/{source} -> {exp}/lm" in result.stderr
    config = (exp / "lm" / "config.yaml").read_text()
    assert f"init_from: {exp}/checkpoints/{source}" in config and "margin: 0.5" in config
    rows = [line.split()[0] for line in (exp / "results").read_text().splitlines()[1:]]
    assert rows == ["untrained:cosine:trials", "trained:cosine:trials", "trained-lm:cosine:trials"]
    assert (exp / "embeddings" / "lm" / "test" / "xvector.scp").is_file()
    # the fine-tuned model's own "untrained" checkpoint is the model it started from
    assert (exp / "lm" / "checkpoints" / "init.pt").is_file()
    # the CLI's threshold stays the main model's
    assert (exp / "threshold").read_bytes() == (recipe["exp"] / "threshold").read_bytes()


def test_a_pretrained_model_is_evaluated_and_fine_tuned_without_a_training(
        recipe: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--pretrained: another model dir (here the recipe's own trained model) scored as it is, then fine-tuned."""
    before = {path: path.stat().st_mtime_ns for path in recipe["exp"].rglob("*")}
    exp = tmp_path / "eval"
    finetune = TRAIN_OVERRIDES.replace("training.epochs=2", "training.epochs=1")
    result = _run(str(RUN), "--corpus", str(recipe["corpus"]), "--exp", str(exp), "--corpus-opts", CORPUS_OPTS,
                  "--stage", "1", "--stop-stage", "8", "--backends", "cosine", "--pretrained", str(recipe["exp"]),
                  "--finetune-conf", "conf/ecapa_mini_lm.yaml", "--finetune-overrides", finetune)
    assert result.returncode == 0, result.stderr[-4000:]
    assert f"no training: evaluating the pretrained model of {recipe['exp']}" in result.stderr
    rows = [line.split()[0] for line in (exp / "results").read_text().splitlines()[1:]]
    assert rows == ["untrained:cosine:trials", "pretrained:cosine:trials", "trained-lm:cosine:trials"]
    # the same model, data and back-end as the recipe's own rows: the same scores, byte for byte
    for mine, theirs in (("init", "init"), ("latest", "latest")):
        assert (exp / "scores" / mine / "cosine" / "trials.score").read_bytes() == (
            recipe["exp"] / "scores" / theirs / "cosine" / "trials.score").read_bytes()
    source = (recipe["exp"] / "checkpoints" / "latest").read_text().strip()
    assert f"init_from: {recipe['exp']}/checkpoints/{source}" in (exp / "lm" / "config.yaml").read_text()
    # the pretrained model dir is read, never written
    assert {path: path.stat().st_mtime_ns for path in recipe["exp"].rglob("*")} == before
    # the evaluation's exp dir serves the CLI: the pretrained model (named in model_dir) with this run's
    # mean, threshold and calibration, which equal the recipe's own (same model, same data)
    assert (exp / "model_dir").read_text().strip() == str(recipe["exp"].resolve())
    wav_scp = dict(line.split(maxsplit=1) for line in
                   (recipe["corpus"] / "data" / "test" / "wav.scp").read_text().splitlines())
    first, second = sorted(wav_scp)[:2]
    verdicts = []
    for model in (exp, recipe["exp"]):
        status, stdout, err = _cli(capsys, "verify", "--exp-dir", str(model), wav_scp[first], wav_scp[second],
                                   "--far", "0.05", "--json")
        assert status == 0, err
        verdicts.append(json.loads(stdout))
    assert verdicts[0]["score"] == verdicts[1]["score"] and verdicts[0]["llr"] == verdicts[1]["llr"]
    assert str(exp / "calibration" / "trials") in verdicts[0]["threshold_source"]
    (tmp_path / "moved").mkdir()
    (tmp_path / "moved" / "model_dir").write_text(f"{tmp_path}/nowhere\n")
    with pytest.raises(FileNotFoundError, match=r"moved/model_dir: the evaluated model dir .*/nowhere does not exist"):
        evaluated_model_dir(tmp_path / "moved")
    assert evaluated_model_dir(recipe["exp"]) == recipe["exp"]  # a training's exp dir is its own model
    result = _run(str(RUN), "--corpus", str(recipe["corpus"]), "--exp", str(tmp_path / "bad"), "--stage", "1",
                  "--pretrained", str(tmp_path))
    assert result.returncode == 1 and "is not a model dir (config.yaml, checkpoints/latest)" in result.stderr


def _cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """``speakernet ARGS`` in this process (torch is imported once, not once per call): status, stdout, stderr."""
    capsys.readouterr()
    status = cli.main(list(args))
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_cli_embed_and_compare(recipe: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    wavs = sorted((recipe["corpus"] / "wav").glob("te*/*.wav"))
    same = [w for w in wavs if w.parent == wavs[0].parent]
    out = tmp_path / "emb"
    exp = str(recipe["exp"])
    status, _, err = _cli(capsys, "embed", "--exp-dir", exp, str(same[0]), str(same[1]), "--out-dir", str(out))
    assert status == 0, err
    # the CLI's embeddings are the recipe's own (same front-end, VAD and model), keyed by file stem
    cli_keys, cli_matrix = load_embeddings(out / "xvector.scp")
    recipe_table = dict(zip(*load_embeddings(recipe["exp"] / "embeddings" / "latest" / "test" / "xvector.scp")))
    utt_of_wav = {Path(line.split(maxsplit=1)[1]).stem: line.split()[0] for line in
                  (recipe["corpus"] / "data" / "test" / "wav.scp").read_text().splitlines()}
    assert cli_keys == [same[0].stem, same[1].stem]
    for key, vector in zip(cli_keys, cli_matrix):
        np.testing.assert_allclose(vector, recipe_table[utt_of_wav[key]], rtol=0, atol=2e-5)
    # once as a user runs it: its own process, through python -m
    result = _run(sys.executable, "-m", "speakernet.bin.cli", "compare", "--exp-dir", exp, str(same[0]), str(same[0]))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("same speaker: score 1.00000")
    status, stdout, _ = _cli(capsys, "compare", "--exp-dir", exp, str(same[0]), str(same[0]), "--json")
    verdict = json.loads(stdout)
    assert verdict["score"] == pytest.approx(1.0, abs=1e-5) and verdict["same_speaker"] is True
    # a trial of the recipe gets the same score from the CLI (same front-end, mean and model)
    trials, scores = read_scores(recipe["exp"] / "scores" / "latest" / "cosine" / "trials.score")
    (enroll, test, _), expected = trials[0], scores[0]
    wav_scp = dict(line.split(maxsplit=1) for line in
                   (recipe["corpus"] / "data" / "test" / "wav.scp").read_text().splitlines())
    status, stdout, err = _cli(capsys, "compare", "--exp-dir", exp, wav_scp[enroll], wav_scp[test], "--json")
    assert status == 0, err
    assert json.loads(stdout)["score"] == pytest.approx(expected, abs=2e-5)
    # --threshold decides: just above the score is "different", just below is "same"
    for offset, same_speaker in ((1e-3, False), (-1e-3, True)):
        _, stdout, _ = _cli(capsys, "compare", "--exp-dir", exp, wav_scp[enroll], wav_scp[test], "--json",
                            "--threshold", str(expected + offset))
        verdict = json.loads(stdout)
        assert verdict["same_speaker"] is same_speaker and verdict["threshold"] == pytest.approx(expected + offset)
    # silence, or a tenth of a second, gets no verdict: silence against silence scores near 1 under any model
    silence, blip = tmp_path / "silence.wav", tmp_path / "blip.wav"
    soundfile.write(silence, np.zeros(32000, dtype=np.float32), 16000)
    soundfile.write(blip, soundfile.read(same[0])[0][:1600], 16000)
    status, stdout, err = _cli(capsys, "compare", "--exp-dir", exp, str(silence), str(silence))
    assert status == 0 and "finds no speech" in err
    assert stdout.startswith(f"no verdict: {silence} has no speech")
    _, stdout, _ = _cli(capsys, "compare", "--exp-dir", exp, str(blip), str(same[0]), "--json")
    verdict = json.loads(stdout)
    assert verdict["same_speaker"] is None and verdict["reliable"] is False and str(blip) in verdict["reason"]
    status, _, err = _cli(capsys, "compare", "--exp-dir", exp, str(same[0]), str(tmp_path / "missing.wav"))
    assert status == 1 and "missing.wav" in err


def test_cli_verify_is_calibrated_on_the_recipes_calibration_trials(recipe: dict[str, Path],
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    exp = recipe["exp"]
    record = json.loads((exp / "cosine_calibration.json").read_text())
    trials = (exp / "calibration" / "trials").read_text().splitlines()
    assert record["trials"] == str(exp / "calibration" / "trials")
    assert record["num_targets"] + record["num_nontargets"] == len(trials) and record["num_targets"] > 0
    assert record["min_cllr"] <= record["cllr"] and record["scale"] > 0
    assert "calibration on" in (exp / "log" / "calibrate.log").read_text()
    # a calibration trial through the CLI: the score the stage fitted on, mapped by the stored line
    keys, matrix = load_embeddings(exp / "embeddings" / "latest" / "calibration" / "xvector.scp")
    table = dict(zip(keys, matrix - read_vector(exp / "mean.vec")))
    first, second, _ = next(line.split() for line in trials if line.endswith("nontarget"))
    expected = float(table[first] @ table[second] / np.linalg.norm(table[first]) / np.linalg.norm(table[second]))
    wav_scp = dict(line.split(maxsplit=1) for line in
                   (exp / "calibration" / "data" / "wav.scp").read_text().splitlines())
    status, stdout, err = _cli(capsys, "verify", "--exp-dir", str(exp), wav_scp[first], wav_scp[second],
                               "--far", "0.05", "--json")
    assert status == 0, err
    verdict = json.loads(stdout)
    assert verdict["score"] == pytest.approx(expected, abs=2e-5)
    assert verdict["llr"] == pytest.approx(record["scale"] * verdict["score"] + record["offset"], abs=1e-5)
    assert f"non-target calibration trials in {exp / 'calibration' / 'trials'}" in verdict["threshold_source"]
    # the stage's non-target scores are those cosine scores, so the FAR threshold is one of them (or just above)
    assert verdict["num_nontargets"] == record["num_nontargets"]
    assert verdict["false_accepts"] == sum(score >= verdict["threshold"] for score in record["nontarget_scores"])


def test_help_from_another_directory(tmp_path: Path) -> None:
    result = _run(str(RUN.relative_to(ROOT)), "--help")  # relative path, as the README runs it
    assert result.returncode == 0, result.stderr
    assert "Mini recipe" in result.stdout
    # every option is listed with its default
    for option, default in [("--conf", "conf/ecapa_mini.yaml"), ("--nj", "2"), ("--train-overrides", "(none)")]:
        assert any(line.split()[:2] == [option, default] for line in result.stdout.splitlines()), option


def test_wrong_option_is_reported() -> None:
    result = _run(str(RUN), "--no-such-option", "1")
    assert result.returncode != 0 and "no-such-option" in result.stderr
    for args, message in [(["--stage", "two"], "must be a stage number"), (["stray"], "unexpected argument 'stray'"),
                          (["--stage", "10"], "after --stop-stage 9"),
                          (["--backends", "cosine qmf"], "qmf calibrates AS-norm scores"),
                          (["--backends", "cosine lda"], "unknown back-end 'lda'")]:
        result = _run(str(RUN), *args)
        assert result.returncode == 1 and message in result.stderr, result.stderr


def test_a_python_without_the_dependencies_is_reported(tmp_path: Path) -> None:
    # the python of a shell whose venv is not activated: it sees no site-packages (-I -S)
    shim = tmp_path / "bin" / "python"
    shim.parent.mkdir()
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -I -S "$@"\n')
    shim.chmod(0o755)
    env = {**os.environ, "PATH": f"{shim.parent}{os.pathsep}{os.environ['PATH']}"}
    result = subprocess.run([str(RUN), "--stage", "2", "--stop-stage", "2"], capture_output=True, text=True, env=env,
                            timeout=60)
    assert result.returncode == 1 and "Stage" not in result.stderr
    assert f"{shim} cannot import speakernet's dependencies (numpy scipy torch" in result.stderr
    assert "run tools/install.sh" in result.stderr


def test_relative_paths_are_taken_from_the_callers_directory(tmp_path: Path) -> None:
    (tmp_path / "my.yaml").write_text("training: {epoch: 3}\n")  # a typo: the error must name this file
    args = [str(RUN), "--stage", "2", "--stop-stage", "2", "--conf", "my.yaml", "--exp", "exp", "--corpus", "corpus"]
    # "corpus" is also the default (relative to the recipe dir); given on the command line, it is the caller's.
    result = _run(*args, cwd=tmp_path)
    assert result.returncode == 1 and f"{tmp_path}/corpus/data/train is not a directory" in result.stderr
    for name in ["train", "test"]:
        (tmp_path / "corpus" / "data" / name).mkdir(parents=True)
    result = _run(*args, cwd=tmp_path)
    assert result.returncode != 0
    assert f"{tmp_path}/my.yaml" in result.stderr and "unknown config key 'training.epoch'" in result.stderr
