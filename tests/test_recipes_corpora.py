"""The VoxCeleb, CN-Celeb and pooled recipes, end to end on tiny fake corpora in their upstream layouts.

The trees hold real (synthetic) audio so that every stage up to the results table runs: data
preparation, features, a few training steps, embeddings, scoring with the corpus' own trial lists.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import soundfile
from speakernet.data.synth import sample_session, sample_speaker, synthesize_utterance

ROOT = Path(__file__).resolve().parents[1]
# (one torch thread per training process: see tests/test_recipe_mini.py)
TRAIN_OVERRIDES = (
    "training.epochs=1 data.batch_size=4 data.min_frames=50 data.crop_frames=100 data.num_workers=0 "
    "model_args.channels=16 model_args.embed_dim=16 training.log_interval=1 training.num_threads=1"
)


def _write_audio(path: Path, speaker_seed: int, utt_seed: int, seconds: float = 1.2) -> None:
    speaker = sample_speaker(np.random.default_rng(speaker_seed))
    channel = sample_session(np.random.default_rng(utt_seed + 1000))
    audio = synthesize_utterance(speaker, channel, np.random.default_rng(utt_seed), int(seconds * 16000))
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(path, audio, 16000)


def _run_recipe(recipe: str, work: Path, *options: str, conf: str = "conf/ecapa_c512.yaml",
                ) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    # Up to the results table: the report stage (9) is the mini recipe test's, and costs seconds here.
    command = [str(ROOT / "egs" / recipe / "v1" / "run.sh"), "--data", str(work / "data"),
               "--exp", str(work / "exp" / "model"), "--conf", conf, "--nj", "2", "--stop-stage", "8",
               "--train-overrides", TRAIN_OVERRIDES, *options]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)


def _results(work: Path) -> dict[str, list[str]]:
    lines = (work / "exp" / "model" / "results").read_text().splitlines()[1:]
    return {line.split()[0]: line.split() for line in lines}


def test_voxceleb_recipe_on_a_fake_tree(tmp_path: Path) -> None:
    vox1 = tmp_path / "VoxCeleb1"
    utts = {spk: [f"{spk}/v{v}/0000{n}.wav" for v in range(2) for n in range(1, 3)] for spk in ("id10270", "id10271")}
    for s, (spk, files) in enumerate(utts.items()):
        for u, relative in enumerate(files):
            _write_audio(vox1 / "wav" / relative, s, 100 * s + u)
    (vox1 / "veri_test2.txt").write_text(
        "1 id10270/v0/00001.wav id10270/v1/00001.wav\n0 id10270/v0/00001.wav id10271/v0/00001.wav\n"
        "1 id10271/v0/00002.wav id10271/v1/00002.wav\n0 id10271/v1/00001.wav id10270/v1/00002.wav\n"
    )
    vox2 = tmp_path / "VoxCeleb2"
    for s in range(4):  # already converted to wav: no ffmpeg needed
        for u in range(3):
            _write_audio(vox2 / "dev" / "aac" / f"id0000{s}" / f"vid{u % 2}" / f"0000{u}.wav", 10 + s, 500 + 10 * s + u)
    # Back-ends chosen by option, and an in-domain adapt dir (here the labelled test set itself:
    # a speaker cohort that leaves out each trial side's own speaker) for the *-adapt rows.
    result = _run_recipe("voxceleb", tmp_path, "--vox1-root", str(vox1), "--vox2-root", str(vox2),
                         "--average-num", "0", "--backends", "cosine asnorm",
                         "--adapt-data", str(tmp_path / "data" / "vox1_all"))
    assert result.returncode == 0, result.stderr[-4000:]
    assert (tmp_path / "data" / "vox2_dev" / "utt2spk").read_text().splitlines()[0] == "id00000-vid0-00000 id00000"
    assert set(_results(tmp_path)) == {f"{model}:{backend}:trials_vox1_O" for model in ("untrained", "trained")
                                       for backend in ("cosine", "cosine-adapt", "asnorm", "asnorm-adapt")}
    adapt_log = tmp_path / "exp" / "model" / "log" / "score.asnorm-adapt.latest.trials_vox1_O.log"
    assert "of 2 speaker cohort members" in adapt_log.read_text()  # the 2 test speakers, not the 4 of vox2
    assert all(row[1] == "4" for row in _results(tmp_path).values())


def test_cnceleb_recipe_with_averaged_enrolment(tmp_path: Path) -> None:
    cnc = tmp_path / "CN-Celeb_flac"
    speakers = ["id00001", "id00002", "id00003", "id00800", "id00801"]
    for s, spk in enumerate(speakers):
        for u, genre in enumerate(["interview-01-001", "speech-01-002", "vlog-02-001"]):
            _write_audio(cnc / "data" / spk / f"{genre}.flac", s, 10 * s + u)
    for s, spk in enumerate(speakers[3:], start=3):
        _write_audio(cnc / "eval" / "enroll" / f"{spk}-enroll.flac", s, 900 + s, seconds=2.0)
        _write_audio(cnc / "eval" / "test" / f"{spk}-drama-01-001.flac", s, 950 + s)
    lists = cnc / "eval" / "lists"
    lists.mkdir(parents=True)
    (lists / "enroll.lst").write_text(
        "id00800-enroll enroll/id00800-enroll.wav\nid00801-enroll enroll/id00801-enroll.wav\n")
    (lists / "enroll.map").write_text(
        "id00800-enroll id00800/interview-01-001.wav id00800/speech-01-002.wav\n"
        "id00801-enroll id00801/interview-01-001.wav id00801/vlog-02-001.wav\n")
    (lists / "trials.lst").write_text(
        "id00800-enroll test/id00800-drama-01-001.wav 1\nid00800-enroll test/id00801-drama-01-001.wav 0\n"
        "id00801-enroll test/id00801-drama-01-001.wav 1\nid00801-enroll test/id00800-drama-01-001.wav 0\n")
    # one epoch: "average" the last 1 epoch, which exercises the averaging stage end to end
    # AS-norm and PLDA of averaged enrolments (durations and utterance counts per enrol id from its
    # spk2utt); QMF is covered by the mini recipe's test.
    result = _run_recipe("cnceleb", tmp_path, "--cnceleb1-root", str(cnc), "--enroll", "average", "--average-num", "1",
                         "--backends", "cosine asnorm plda")
    assert result.returncode == 0, result.stderr[-4000:]
    assert set(_results(tmp_path)) == {f"{model}:{backend}:trials" for model in ("untrained", "trained-avg1")
                                       for backend in ("cosine", "asnorm", "plda")}
    plda_log = (tmp_path / "exp" / "model" / "log" / "score.plda.avg1.trials.log").read_text()
    assert "--enroll-spk2utt" in plda_log.splitlines()[0]
    # averaged enrolment: one embedding per enrol id, the mean of its enroll.map utterances
    spk_scp = tmp_path / "exp" / "model" / "embeddings" / "avg1" / "eval_enroll_map" / "spk_xvector.scp"
    assert [line.split()[0] for line in spk_scp.read_text().splitlines()] == ["id00800-enroll", "id00801-enroll"]
    bad = _run_recipe("cnceleb", tmp_path, "--cnceleb1-root", str(cnc), "--enroll", "mean")
    assert bad.returncode != 0 and "--enroll must be concat or average" in bad.stderr


def test_pooled_recipe_on_fake_trees_of_the_four_corpora(tmp_path: Path) -> None:
    # Nine speakers per corpus in its upstream layout, two recordings each (3 held out, 1 of them for adapt).
    seed = iter(range(10_000))
    for s in range(9):
        for u in range(2):
            _write_audio(tmp_path / "LibriSpeech" / f"{19 + s}" / "198" / f"{19 + s}-198-000{u}.flac", s, next(seed),
                         seconds=3.2)
            _write_audio(tmp_path / "speech_commands" / ("yes", "no")[u] / f"{s:04d}abcd_nohash_0.flac", 10 + s,
                         next(seed), seconds=1.0)
            _write_audio(tmp_path / "arabic" / ("up", "down")[u] / f"0000000{s}_NO_01.flac", 20 + s, next(seed),
                         seconds=1.0)
            _write_audio(tmp_path / "fsdd" / "recordings" / f"{u}_spk{s}_0.wav", 30 + s, next(seed), seconds=1.0)
    result = _run_recipe("pooled", tmp_path, "--librispeech-root", str(tmp_path / "LibriSpeech"),
                         "--speech-commands-root", str(tmp_path / "speech_commands"),
                         "--arabic-root", str(tmp_path / "arabic"), "--fsdd-root", str(tmp_path / "fsdd"),
                         "--backends", "cosine", conf="conf/ecapa_small.yaml")
    assert result.returncode == 0, result.stderr[-4000:]
    rows = _results(tmp_path)
    # one row per trial list (all pairs, and each corpus' own), with the held-out adapt speakers'
    # cosine-adapt rows by default
    lists = ["trials"] + [f"trials_{corpus}" for corpus in ("arabic", "fsdd", "librispeech", "speech_commands")]
    assert set(rows) == {f"{model}:{backend}:{name}" for model in ("untrained", "trained")
                         for backend in ("cosine", "cosine-adapt") for name in lists}
    for name in lists:
        trials = (tmp_path / "data" / "test" / name).read_text().splitlines()
        assert all(int(row[1]) == len(trials) > 0 for key, row in rows.items() if key.endswith(f":{name}"))
    utt2spk = (tmp_path / "data" / "train" / "utt2spk").read_text().splitlines()
    assert len({line.split()[1].split("-")[0] for line in utt2spk}) == 4  # every corpus gives training speakers
