"""The VoxCeleb, CN-Celeb and pooled recipes, end to end on tiny fake corpora in their upstream layouts.

The trees hold real (synthetic) audio so that every stage up to the results table runs: data
preparation, features, a few training steps, embeddings, scoring with the corpus' own trial lists.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
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
                overrides: str = "") -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    # Up to the results table: the report stage (9) is the mini recipe test's, and costs seconds here.
    command = [str(ROOT / "egs" / recipe / "v1" / "run.sh"), "--data", str(work / "data"),
               "--exp", str(work / "exp" / "model"), "--conf", conf, "--nj", "2", "--stop-stage", "8",
               "--train-overrides", TRAIN_OVERRIDES + overrides, *options]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)


def _results(work: Path, exp: str = "model") -> dict[str, list[str]]:
    lines = (work / "exp" / exp / "results").read_text().splitlines()[1:]
    return {line.split()[0]: line.split() for line in lines}


def _write_m4a(path: Path, speaker_seed: int, utt_seed: int, scratch: Path) -> None:
    wav = scratch / "tmp.wav"
    _write_audio(wav, speaker_seed, utt_seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["ffmpeg", "-nostdin", "-y", "-v", "error", "-i", str(wav), "-c:a", "aac", str(path)], check=True)


def _write_noise(path: Path, seed: int, seconds: float = 1.5, decay: float = 0.0) -> None:
    """Noise (decaying like a room impulse response when ``decay`` > 0, in 1/s)."""
    samples = np.random.default_rng(seed).standard_normal(int(seconds * 16000))
    if decay:
        samples *= np.exp(-decay * np.arange(samples.size) / 16000)
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(path, 0.1 * samples / np.abs(samples).max(), 16000)


@pytest.fixture(scope="module")
def augmentation_trees(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Tiny MUSAN and RIRS_NOISES trees in their official layouts."""
    root = tmp_path_factory.mktemp("augmentation")
    musan = root / "musan"
    for kind, subset in (("music", "fma"), ("speech", "librivox"), ("noise", "free-sound")):
        for n in range(2):
            _write_noise(musan / kind / subset / f"{kind}-{subset}-000{n}.wav", 10 * len(kind) + n)
    rirs = root / "RIRS_NOISES"
    for t, room_type in enumerate(("smallroom", "mediumroom")):
        for n in (1, 2):
            _write_noise(rirs / "simulated_rirs" / room_type / "Room001" / f"Room001-0000{n}.wav", 100 + 10 * t + n,
                         seconds=0.1, decay=60.0)
    real = rirs / "real_rirs_isotropic_noises"
    _write_noise(real / "RWCP_type1_rir_circle_ane_imp050.wav", 200, seconds=0.1, decay=60.0)
    _write_noise(real / "RVB2014_type1_noise_largeroom1_1.wav", 201)
    return musan, rirs


@pytest.fixture(scope="module")
def voxceleb_trees(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """VoxCeleb1 (wav, with the cleaned O, E and H lists) and VoxCeleb2 dev (m4a) trees."""
    if shutil.which("ffmpeg") is None:
        pytest.skip("VoxCeleb2's m4a needs ffmpeg (apt-get install ffmpeg)")
    root = tmp_path_factory.mktemp("voxceleb")
    vox1 = root / "VoxCeleb1"
    # id10270 and id10271 are the O list's (test) speakers; E and H use dev speakers as well
    speakers = ("id10270", "id10271", "id10001", "id10002")
    for s, spk in enumerate(speakers):
        for u, relative in enumerate(f"{spk}/v{v}/0000{n}.wav" for v in range(2) for n in range(1, 3)):
            _write_audio(vox1 / "wav" / relative, s, 100 * s + u)
    (vox1 / "veri_test2.txt").write_text(
        "1 id10270/v0/00001.wav id10270/v1/00001.wav\n0 id10270/v0/00001.wav id10271/v0/00001.wav\n"
        "1 id10271/v0/00002.wav id10271/v1/00002.wav\n0 id10271/v1/00001.wav id10270/v1/00002.wav\n"
    )
    (vox1 / "list_test_all2.txt").write_text(
        "1 id10001/v0/00001.wav id10001/v1/00001.wav\n0 id10001/v0/00001.wav id10270/v0/00002.wav\n"
        "1 id10002/v0/00002.wav id10002/v1/00002.wav\n0 id10002/v1/00001.wav id10271/v1/00002.wav\n"
        "1 id10270/v0/00002.wav id10270/v1/00002.wav\n"
    )
    (vox1 / "list_test_hard2.txt").write_text(
        "1 id10001/v0/00002.wav id10001/v1/00002.wav\n0 id10001/v0/00002.wav id10002/v0/00001.wav\n"
        "1 id10002/v0/00001.wav id10002/v1/00001.wav\n"
    )
    vox2 = root / "VoxCeleb2"
    for s in range(4):
        for u in range(3):
            _write_m4a(vox2 / "dev" / "aac" / f"id0000{s}" / f"vid{u % 2}" / f"0000{u}.m4a", 10 + s, 500 + 10 * s + u,
                       root)
    return vox1, vox2


def test_voxceleb_recipe_offline_augmented_features_then_online_from_shards(
    tmp_path: Path, voxceleb_trees: tuple[Path, Path], augmentation_trees: tuple[Path, Path]
) -> None:
    vox1, vox2 = voxceleb_trees
    musan, rirs = augmentation_trees
    data = tmp_path / "data"
    # (a) Kaldi's offline copies (two kinds, 6 utterances each; the CN-Celeb test runs the other two) + the
    # clean set, offline features;
    # back-ends chosen by option, and an in-domain adapt dir (here the labelled test set itself: a
    # speaker cohort that leaves out each trial side's own speaker) for the *-adapt rows.
    result = _run_recipe("voxceleb", tmp_path, "--vox1-root", str(vox1), "--vox2-root", str(vox2),
                         "--musan-root", str(musan), "--rirs-root", str(rirs),
                         "--offline-aug", "reverb noise", "--aug-per-kind", "6",
                         "--average-num", "0", "--backends", "cosine asnorm", "--adapt-data", str(data / "vox1_all"))
    assert result.returncode == 0, result.stderr[-4000:]
    utt2spk = (data / "vox2_dev_combined" / "utt2spk").read_text().splitlines()
    assert utt2spk[0] == "id00000-vid0-00000 id00000"
    assert len(utt2spk) == 12 + 2 * 6 and sum(line.split()[0].endswith("-reverb") for line in utt2spk) == 6
    assert all(" ffmpeg " in line for line in (data / "vox2_dev" / "wav.scp").read_text().splitlines())
    lists = [f"trials_vox1_{name}" for name in "OEH"]
    assert set(_results(tmp_path)) == {f"{model}:{backend}:{name}" for model in ("untrained", "trained")
                                       for backend in ("cosine", "cosine-adapt", "asnorm", "asnorm-adapt")
                                       for name in lists}
    counts = {"trials_vox1_O": "4", "trials_vox1_E": "5", "trials_vox1_H": "3"}
    assert all(row[1] == counts[key.rsplit(":", 1)[1]] for key, row in _results(tmp_path).items())
    # the back-ends learn from the clean set: its 4 speakers' embeddings, not the augmented copies'
    assert (tmp_path / "exp" / "model" / "embeddings" / "latest" / "vox2_dev" / "xvector.scp").is_file()
    assert not (tmp_path / "exp" / "model" / "embeddings" / "latest" / "vox2_dev_combined").exists()
    adapt_log = tmp_path / "exp" / "model" / "log" / "score.asnorm-adapt.latest.trials_vox1_O.log"
    assert "of 4 speaker cohort members" in adapt_log.read_text()  # the 4 VoxCeleb1 speakers, not vox2's

    # (b) the online-augmentation conf trained from tar shards of the audio (the m4a decoded into them), on the
    # same data dirs (training from the audio files themselves: tests/training/test_audio_training.py)
    result = _run_recipe("voxceleb", tmp_path, "--stage", "1", "--exp", str(tmp_path / "exp" / "online"),
                         "--average-num", "0", "--backends", "cosine", conf="conf/ecapa_c512_aug.yaml",
                         overrides=" data.source=shards data.shard_lanes=1"
                         " data.shuffle_buffer=8")
    assert result.returncode == 0, result.stderr[-4000:]
    assert "Stage 1: tar shards of" in result.stderr
    [shard] = (data / "vox2_dev" / "shards.list").read_text().split()
    assert Path(shard).is_file() and "12 utterances of 4 speakers in 1 shards for training" in \
        next((tmp_path / "exp" / "online" / "log").glob("train.*.log")).read_text()
    rows = _results(tmp_path, "online")
    assert set(rows) == {f"{model}:cosine:{name}" for model in ("untrained", "trained") for name in lists}
    train_log = next((tmp_path / "exp" / "online" / "log").glob("train.*.log")).read_text()
    assert "augment.reverb: 4 files" in train_log and "augment.music: 2 files" in train_log
    # the conf names its sources under the default --data: the recipe moved them under this run's
    assert f"{data}/sources/musan_music" in (tmp_path / "exp" / "online" / "config.yaml").read_text()


@pytest.fixture(scope="module")
def cnceleb_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """CN-Celeb1 with several short utterances per speaker and genre (to merge) and both enrolment lists."""
    cnc = tmp_path_factory.mktemp("cnceleb") / "CN-Celeb_flac"
    speakers = ["id00001", "id00002", "id00003", "id00800", "id00801"]
    for s, spk in enumerate(speakers):
        names = ["interview-01-001", "interview-01-002", "interview-02-001", "speech-01-002", "vlog-02-001"]
        for u, name in enumerate(names):
            _write_audio(cnc / "data" / spk / f"{name}.flac", s, 10 * s + u, seconds=1.6 if u < 3 else 2.6)
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
    return cnc


def test_cnceleb_recipe_both_enrolments_offline_augmented_then_online(
    tmp_path: Path, cnceleb_tree: Path, augmentation_trees: tuple[Path, Path]
) -> None:
    if shutil.which("ffmpeg") is None:
        pytest.skip("the merged short utterances are ffmpeg pipes (apt-get install ffmpeg)")
    musan, _ = augmentation_trees
    data = tmp_path / "data"
    # (a) short utterances merged to >= 5 s (the default), two offline kinds (sources: MUSAN, and
    # simulated rooms for the online run),
    # offline features; one epoch "averaged" over the last 1 epoch exercises the averaging stage.
    # AS-norm and PLDA of averaged enrolments (durations and utterance counts per enrol id from its
    # spk2utt); QMF is covered by the mini recipe's test.
    result = _run_recipe("cnceleb", tmp_path, "--cnceleb1-root", str(cnceleb_tree), "--musan-root", str(musan),
                         "--rir-rooms", "1", "--offline-aug", "music babble", "--average-num", "1",
                         "--backends", "cosine asnorm plda")
    assert result.returncode == 0, result.stderr[-4000:]
    train = (data / "cnceleb_train" / "utt2spk").read_text().split()[::2]
    # per speaker: the three 1.6 s interviews merge into one; speech and vlog stay alone (their own genres)
    assert train == [f"id0000{s}-{name}" for s in (1, 2, 3)
                     for name in ("interview-01-001-comb3", "speech-01-002", "vlog-02-001")]
    assert len((data / "cnceleb_train_combined" / "utt2spk").read_text().splitlines()) == 3 * 9
    sets = ("CNC-Eval-Avg", "CNC-Eval-Concat")
    assert set(_results(tmp_path)) == {f"{model}:{backend}:{name}" for model in ("untrained", "trained-avg1")
                                       for backend in ("cosine", "asnorm", "plda") for name in sets}
    plda_log = (tmp_path / "exp" / "model" / "log" / "score.plda.avg1.CNC-Eval-Avg.log").read_text()
    assert "--enroll-spk2utt" in plda_log.splitlines()[0]
    # averaged enrolment: one embedding per enrol id, the mean of its enroll.map utterances; concatenated:
    # the official enrolment file's
    embeddings = tmp_path / "exp" / "model" / "embeddings" / "avg1"
    for table in (embeddings / "CNC-Eval-Avg_enroll" / "spk_xvector.scp",
                  embeddings / "CNC-Eval-Concat_enroll" / "xvector.scp"):
        assert [line.split()[0] for line in table.read_text().splitlines()] == ["id00800-enroll", "id00801-enroll"]

    # (b) the online-augmentation conf trained from tar shards (the merged utterances decoded into them
    # through their pipes), on the same data dirs, with the concatenated enrolment only
    result = _run_recipe("cnceleb", tmp_path, "--stage", "1", "--exp", str(tmp_path / "exp" / "online"),
                         "--enroll", "concat", "--average-num", "0", "--backends", "cosine",
                         conf="conf/ecapa_c512_aug.yaml",
                         overrides=" data.source=shards data.shard_lanes=1 data.shuffle_buffer=8")
    assert result.returncode == 0, result.stderr[-4000:]
    assert "9 utterances of 3 speakers in 1 shards for training" in \
        next((tmp_path / "exp" / "online" / "log").glob("train.*.log")).read_text()
    assert set(_results(tmp_path, "online")) == {f"{m}:cosine:CNC-Eval-Concat" for m in ("untrained", "trained")}
    bad = _run_recipe("cnceleb", tmp_path, "--cnceleb1-root", str(cnceleb_tree), "--enroll", "mean")
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
