"""egs/custom/v1 end to end on a user's own data: a folder-per-speaker tree to train on, Kaldi data dirs
and a tree to evaluate on; the user's files stay as they were, a re-run with one more set keeps the others."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import soundfile

from speakernet.data.datadir_ops import subset_data_dir
from speakernet.data.kaldi_dir import read_trials, read_utt2spk, read_wav_scp, write_trials

ROOT = Path(__file__).resolve().parents[1]
RUN = ROOT / "egs" / "custom" / "v1" / "run.sh"
CONF = ROOT / "egs" / "mini" / "v1" / "conf" / "ecapa_mini.yaml"
TRAIN_OVERRIDES = (
    "training.epochs=2 data.batch_size=8 data.min_frames=50 data.crop_frames=100 "
    "model_args.channels=16 model_args.embed_dim=16 training.log_interval=1 training.num_threads=1"
)


def _run(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    return subprocess.run([str(RUN), *args], cwd=ROOT, capture_output=True, text=True, env=env, timeout=600)


def _snapshot(path: Path) -> dict[str, tuple[bytes, int]]:
    return {str(item.relative_to(path)): (item.read_bytes(), item.stat().st_mtime_ns)
            for item in sorted(path.rglob("*")) if item.is_file()}


def _tree(data_dir: Path, root: Path, flac_every: int = 0) -> Path:
    """A folder-per-speaker tree <root>/<spk>/session/<utt>.wav|flac of a data dir's audio."""
    utt2spk, wav_scp = read_utt2spk(data_dir / "utt2spk"), read_wav_scp(data_dir / "wav.scp")
    for index, (utt, spk) in enumerate(sorted(utt2spk.items())):
        folder = root / spk / f"session{index % 2}"
        folder.mkdir(parents=True, exist_ok=True)
        if flac_every and index % flac_every == 0:
            audio, rate = soundfile.read(wav_scp[utt], dtype="int16")
            soundfile.write(folder / f"{utt}.flac", audio, rate)
        else:
            shutil.copyfile(wav_scp[utt], folder / f"{utt}.wav")
    return root


@pytest.fixture(scope="module")
def user(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The user's data: a training tree, two evaluation data dirs (one with its own trials), a third tree."""
    work = tmp_path_factory.mktemp("custom")
    corpus = work / "corpus"
    result = subprocess.run(
        [sys.executable, "-m", "speakernet.bin.make_synthetic_corpus", "--out-dir", str(corpus),
         "--num-train-speakers", "8", "--num-test-speakers", "9", "--utts-per-speaker", "4",
         "--test-utts-per-speaker", "3", "--min-duration", "1.5", "--max-duration", "2.0"],
        capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    mine = work / "mine"
    paths = {"train": _tree(corpus / "data" / "train", mine / "train_tree", flac_every=3), "work": work}
    test_speakers = sorted(set(read_utt2spk(corpus / "data" / "test" / "utt2spk").values()))
    for name, speakers in (("a", test_speakers[:3]), ("b", test_speakers[3:6]), ("c", test_speakers[6:])):
        subset = mine / "kaldi" / name
        subset_data_dir(corpus / "data" / "test", subset, spk_list=speakers)
        (subset / "trials").unlink(missing_ok=True)
        paths[name] = subset
    # set a brings its own trial list: every pair of its utterances
    utts = sorted(read_utt2spk(paths["a"] / "utt2spk").items())
    write_trials(paths["a"] / "trials", [(u, v, "target" if s == t else "nontarget")
                                         for i, (u, s) in enumerate(utts) for v, t in utts[i + 1:]])
    # set c is a tree with a trial list of its own (its ids are the tree's: <spk>-<folder>-<stem>)
    c_utts = sorted(read_utt2spk(paths["c"] / "utt2spk").items())
    ids = [(f"{spk}-session{index % 2}-{utt}", spk) for index, (utt, spk) in enumerate(c_utts)]
    write_trials(mine / "c.trials", [(u, v, "target" if s == t else "nontarget")
                                     for i, (u, s) in enumerate(sorted(ids)) for v, t in sorted(ids)[i + 1:]])
    paths["c"] = _tree(paths["c"], mine / "c_tree")
    paths["c_trials"] = mine / "c.trials"
    return paths


def _recipe(user: dict[str, Path], sets: str, *args: str) -> subprocess.CompletedProcess:
    work = user["work"]
    return _run("--train-root", str(user["train"]), "--eval", sets, "--data", str(work / "data"),
                "--exp", str(work / "exp"), "--conf", str(CONF), "--train-overrides", TRAIN_OVERRIDES,
                "--top-n", "5", "--num-targets", "30", *args)


def _rows(work: Path) -> list[str]:
    return [row["name"] for row in json.loads((work / "exp" / "results.json").read_text())["rows"]]


def test_custom_recipe_on_a_tree_and_data_dirs_then_one_more_set(user: dict[str, Path]) -> None:
    work = user["work"]
    mine = _snapshot(work / "mine")
    result = _recipe(user, f"a={user['a']} b={user['b']}")
    assert result.returncode == 0, result.stderr[-4000:]
    rows = _rows(work)
    for model in ("untrained", "trained"):
        for backend in ("cosine", "asnorm", "asnorm+qmf", "plda"):
            for name in ("a", "b"):
                assert f"{model}:{backend}:{name}" in rows, rows
    assert len(rows) == 16 and (work / "exp" / "report.html").is_file()
    # set a was scored on its own list, set b on one drawn from its speakers (30 targets at most, as many
    # non-targets), and the copies are the recipe's, not the user's
    assert read_trials(work / "data" / "a" / "trials") == read_trials(user["a"] / "trials")
    drawn = read_trials(work / "data" / "b" / "trials")
    labels = [label for *_, label in drawn]
    assert 0 < labels.count("target") <= 30 and labels.count("nontarget") == labels.count("target")
    scored = [line.split()[:2] for line in (work / "exp" / "scores" / "latest" / "cosine" / "b.score").read_text()
              .splitlines()]
    assert scored == [[enroll, test] for enroll, test, _ in drawn]
    assert _snapshot(work / "mine") == mine  # not one byte, not one timestamp of the user's files changed
    # every training utterance of the tree is in the recipe's train dir (wav and flac alike)
    assert len(read_utt2spk(work / "data" / "train" / "utt2spk")) == 32

    scores = {name: _snapshot(work / "exp" / "scores" / "latest" / backend)
              for name, backend in (("cosine", "cosine"), ("plda", "plda"), ("qmf", "asnorm+qmf"))}
    # one more set; and extraction threads, which change no embedding, so sets a and b stay as they are
    sets = f"a={user['a']} b={user['b']} c={user['c']},trials={user['c_trials']}"
    result = _recipe(user, sets, "--extract-threads", "1", "--stop-stage", "8")  # (the report: run 1)
    assert result.returncode == 0, result.stderr[-4000:]
    assert "skip: " in result.stderr and "Stage 2: training" in result.stderr
    jobs = (work / "exp" / "log" / "extract.jobs").read_text().splitlines()
    assert jobs and all("--num-threads 1 " in line and "/data/c " in line + " " for line in jobs), jobs
    assert not any("/data/a " in line + " " or "/data/b " in line + " " for line in jobs), jobs
    rows = _rows(work)
    assert len(rows) == 24 and "trained:plda:c" in rows and "untrained:asnorm+qmf:c" in rows
    for name, backend in (("cosine", "cosine"), ("plda", "plda"), ("qmf", "asnorm+qmf")):
        after = _snapshot(work / "exp" / "scores" / "latest" / backend)
        for key, value in scores[name].items():  # sets a and b: the same bytes, not even rewritten
            assert after[key] == value, key
        assert any(key.startswith("c.") for key in after)
    assert _snapshot(work / "mine") == mine
    assert read_trials(work / "data" / "c" / "trials") == read_trials(user["c_trials"])
    # stage 0 again: every copy, prepared tree and trial list as it was, not even rewritten
    data = _snapshot(work / "data")
    result = _recipe(user, sets, "--stop-stage", "0")
    assert result.returncode == 0, result.stderr[-3000:]
    assert _snapshot(work / "data") == data


def test_custom_recipe_reports_bad_evaluation_specs(user: dict[str, Path], tmp_path: Path) -> None:
    bad = tmp_path / "bad.trials"
    bad.write_text(f"{sorted(read_utt2spk(user['a'] / 'utt2spk'))[0]} no_such_utt target\n")
    cases = {
        f"a={tmp_path}/nowhere": f"{tmp_path}/nowhere is not a directory",
        f"a={user['a']},trials={bad}": f"{bad}:1 ",  # the user's file, not the recipe's copy of it
        f"train={user['a']}": "set name 'train'",
        f"a={user['a']},trials={tmp_path}/none": "trials=",
        f"a={user['a']} a={user['b']}": "two sets are called 'a'",
        f"a={user['a']},enrol={user['b']}": "unknown field 'enrol=",
    }
    for spec, message in cases.items():
        result = _run("--train-root", str(user["train"]), "--eval", spec, "--data", str(tmp_path / "d"))
        assert result.returncode == 1 and message in result.stderr and "Traceback" not in result.stderr, spec
    result = _run("--train-root", str(user["train"]), "--data", str(tmp_path / "d"))
    assert result.returncode == 1 and "no evaluation set" in result.stderr


def test_heldout_speakers_become_an_evaluation_set(user: dict[str, Path], tmp_path: Path) -> None:
    mine = _snapshot(user["work"] / "mine")
    result = _run("--train-root", str(user["train"]), "--heldout-speakers", "2", "--stop-stage", "0",
                  "--data", str(tmp_path / "d"), "--num-targets", "all")
    assert result.returncode == 0, result.stderr[-3000:]
    train = set(read_utt2spk(tmp_path / "d" / "train" / "utt2spk").values())
    heldout = read_utt2spk(tmp_path / "d" / "heldout" / "utt2spk")
    assert len(train) == 6 and len(set(heldout.values())) == 2 and not train & set(heldout.values())
    trials = read_trials(tmp_path / "d" / "heldout" / "trials")
    # every pair of one speaker's 4 utterances (2 x 6), as many non-targets, all of held-out utterances
    assert [label for *_, label in trials].count("target") == 12 and len(trials) == 24
    assert {utt for trial in trials for utt in trial[:2]} <= set(heldout)
    assert _snapshot(user["work"] / "mine") == mine
