"""What a recipe decides before its first stage runs (cheap: the runs here stop before any stage works)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
POOLED = ROOT / "egs" / "pooled" / "v1" / "run.sh"


def _pooled(data: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(POOLED), "--data", str(data), "--stage", "1", "--stop-stage", "1", *args],
                          capture_output=True, text=True, timeout=60)


def test_pooled_trial_lists_are_found_without_a_plain_trials_list(tmp_path: Path) -> None:
    (tmp_path / "test").mkdir()
    (tmp_path / "test" / "trials_librispeech").write_text("a b target\n")
    result = _pooled(tmp_path)
    # past the trial lists (was: exit 2 without a word, ls under pipefail), to the shared stages' own check
    assert result.returncode == 1 and f"--train-data {tmp_path}/train is not a directory" in result.stderr
    (tmp_path / "test" / "trials_librispeech").unlink()
    result = _pooled(tmp_path)
    assert result.returncode == 1 and f"no trial list in {tmp_path}/test (trials, trials_*)" in result.stderr


def test_corpus_recipes_check_their_augmentation_options_before_stage_0(tmp_path: Path) -> None:
    cases = {
        ("--offline-aug", "reverb noisy"): "unknown kind 'noisy' (choose from: reverb noise music babble)",
        ("--rirs-root", str(tmp_path), "--rir-rooms", "2"): "give --rirs-root (RIRS_NOISES) or --rir-rooms",
        ("--aug-per-kind", "1e6"): "--aug-per-kind must be a whole number, got '1e6'",
        ("--rir-rooms", "-1"): "--rir-rooms must be a whole number",
    }
    for recipe in ("voxceleb", "cnceleb"):
        for args, message in cases.items():
            command = [str(ROOT / "egs" / recipe / "v1" / "run.sh"), "--data", str(tmp_path / "d"), *args]
            result = subprocess.run(command, capture_output=True, text=True, timeout=60)
            assert result.returncode == 1 and message in result.stderr, (recipe, args, result.stderr)
            assert not (tmp_path / "d").exists()  # nothing was prepared


SV_STAGES = ROOT / "tools" / "sv_stages.sh"


def _sv_stages(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    # A PATH without tools/: the script must find its own helpers (parse_options.sh, path.sh).
    env = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "HOME": str(cwd)}
    return subprocess.run([str(SV_STAGES), *args], cwd=cwd, capture_output=True, text=True, timeout=60, env=env)


def _data_dir(path: Path, speakers: str = "a b") -> Path:
    path.mkdir(parents=True)
    utts = [f"{spk}-{i}" for spk in speakers.split() for i in (1, 2)]
    (path / "wav.scp").write_text("".join(f"{utt} /nowhere/{utt}.wav\n" for utt in utts))
    (path / "utt2spk").write_text("".join(f"{utt} {utt.split('-')[0]}\n" for utt in utts))
    (path / "spk2utt").write_text("".join(f"{spk} {spk}-1 {spk}-2\n" for spk in speakers.split()))
    (path / "trials").write_text(f"{utts[0]} {utts[1]} target\n{utts[0]} {utts[2]} nontarget\n")
    (path / "targets_only").write_text(f"{utts[0]} {utts[1]} target\n")
    return path


def test_sv_stages_help_lists_every_option_with_its_default_from_anywhere(tmp_path: Path) -> None:
    result = _sv_stages(tmp_path, "--help")
    assert result.returncode == 0, result.stderr
    options = [line.split()[0] for line in result.stdout.splitlines() if line.startswith("  --")]
    # every `name=default` line above help_message is listed, nothing else
    script = SV_STAGES.read_text().split("help_message=")[0]
    names = [line.split("=")[0] for line in script.splitlines() if line[:1].isalpha() and "=" in line.split()[0]]
    assert options == [f"--{name.replace('_', '-')}" for name in names] and "--eval-sets" in options
    line = next(line for line in result.stdout.splitlines() if line.startswith("  --top-n "))
    assert line.split()[1] == "300"


def test_sv_stages_asks_each_stage_only_for_its_inputs(tmp_path: Path) -> None:
    train = _data_dir(tmp_path / "train")
    # features only: no test set, no conf, no exp dir needed (it gets to make_features, which fails on the
    # missing audio: past every option check)
    result = _sv_stages(tmp_path, "--stop-stage", "1", "--train-data", str(train), "--feat-dir", str(tmp_path / "f"))
    assert "is required" not in result.stderr and "Stage 1: features (fbank + VAD) for: train" in result.stderr
    assert result.returncode == 1 and "/nowhere/a-1.wav" in result.stderr  # make_features' own error
    result = _sv_stages(tmp_path, "--stage", "2", "--stop-stage", "2", "--train-data", str(train))
    assert result.returncode == 1 and "--conf is required for stage 2 (training)" in result.stderr
    result = _sv_stages(tmp_path, "--stage", "4", "--train-data", str(train), "--exp-dir", str(tmp_path / "e"))
    assert result.returncode == 1 and "stages 4-9 score evaluation sets" in result.stderr
    result = _sv_stages(tmp_path, "--stop-stage", "1", "--train-data", str(train), "--feat-dir", str(tmp_path / "f"),
                        "--backend-data", str(tmp_path / "clean"))
    assert result.returncode == 1 and f"--backend-data {tmp_path}/clean is not a directory" in result.stderr
    # the back-ends' dir gets features too, beside the training's
    clean = _data_dir(tmp_path / "clean")
    result = _sv_stages(tmp_path, "--stop-stage", "1", "--train-data", str(train), "--feat-dir", str(tmp_path / "f"),
                        "--backend-data", str(clean))
    assert "Stage 1: features (fbank + VAD) for: train clean" in result.stderr, result.stderr


def test_sv_stages_rejects_bad_evaluation_sets(tmp_path: Path) -> None:
    train = _data_dir(tmp_path / "train")
    dev = _data_dir(tmp_path / "x" / "dev", "c d")
    other = _data_dir(tmp_path / "y" / "dev", "e f")
    base = ["--stage", "4", "--stop-stage", "4", "--train-data", str(train), "--exp-dir", str(tmp_path / "e")]
    cases = {
        f"dev={dev} dev={other}": "two evaluation sets are called 'dev'",
        f"dev:{dev}": "is not NAME=TEST_DIR",
        f"dev={dev},trial={dev}/trials": "unknown field 'trial=",
        f"dev={tmp_path}/none": f"{tmp_path}/none is not a directory",
        f"calibration={dev}": "'calibration'",
        f"train={dev}": "would both be called 'train'",
        f"dev={dev},trials={dev}/missing": f"trial list {dev}/missing does not exist",
        f"dev={dev},enroll_table=mean": "enroll_table must be auto, xvector or spk_xvector",
        f"dev={dev},trials={dev}/targets_only": "targets_only has no nontarget trial; EER and minDCF need both",
    }
    for spec, message in cases.items():
        result = _sv_stages(tmp_path, *base, "--eval-sets", spec)
        assert result.returncode == 1 and message in result.stderr, (spec, result.stderr)
    # two sets of one dir share its key (the first set's name); two dirs of one basename are two keys
    result = _sv_stages(tmp_path, *base, "--stop-stage", "1", "--stage", "1", "--feat-dir", str(tmp_path / "f"),
                        "--eval-sets", f"dev={dev} dev2={dev},trials={dev}/trials other={other}")
    assert "Stage 1: features (fbank + VAD) for: train dev other" in result.stderr, result.stderr


def test_sv_stages_checks_the_multi_machine_options(tmp_path: Path) -> None:
    train = _data_dir(tmp_path / "train")
    conf = tmp_path / "x.yaml"
    conf.write_text("model: ECAPA_TDNN\n")
    base = ["--stage", "2", "--stop-stage", "2", "--conf", str(conf), "--train-data", str(train),
            "--exp-dir", str(tmp_path / "e")]
    endpoint = ["--nnodes", "2", "--rdzv-endpoint", "node1:29400"]
    cases = [
        (["--nnodes", "2"], "--nnodes 2 needs --rdzv-endpoint HOST:PORT"),
        (["--nnodes", "2", "--rdzv-endpoint", "node1"], "needs --rdzv-endpoint HOST:PORT, the same on every machine"),
        (["--nnodes", "0"], "--nnodes must be a positive whole number, got '0'"),
        (["--rdzv-endpoint", "node1:29400"], "they need --nnodes > 1"),
        ([*endpoint, "--node-rank", "1"], "--node-rank is for --rdzv-backend static"),
        ([*endpoint, "--rdzv-backend", "static"], "static needs --node-rank 0..1"),
        ([*endpoint, "--rdzv-backend", "static", "--node-rank", "2"],
         "--node-rank 2 is not below --nnodes 2"),
        ([*endpoint, "--rdzv-backend", "etcd"], "must be c10d or static"),
        ([*endpoint, "--stop-stage", "3"], "run stage 2 alone on each machine"),
        (["--train-cmd", "slurm_train.sh --nodes 2", "--nproc", "4"], "launches the machines and processes itself"),
    ]
    for args, message in cases:
        result = _sv_stages(tmp_path, *base, *args)
        assert result.returncode == 1 and message in result.stderr, (args, result.stderr)
        assert "Stage 2" not in result.stderr  # refused before anything runs
