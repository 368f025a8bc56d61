"""CN-Celeb preparation on a tiny fake corpus: exact data dirs and trials, and list errors."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile

from speakernet.bin import prepare_cnceleb as prepare_cnceleb_bin
from speakernet.data.audio import load_audio
from speakernet.data.kaldi_dir import DataDirError
from speakernet.data.prepare.cnceleb import prepare_cnceleb
from speakernet.data.prepare.combine_short import group_consecutive

CNC1_FILES = [
    "data/id00001/interview-01-001.flac",
    "data/id00001/speech-02-001.flac",
    "data/id00002/singing-01-001.flac",
    "data/id00002/singing-01-001.wav",  # converted next to the flac: the wav is used
    "data/id00800/drama-01-001.flac",
    "data/id00800/singing-01-001.flac",
    "data/id00800/singing-01-002.flac",
    "data/id00801/vlog-01-001.flac",
    "data/id00801/vlog-01-002.flac",
    "eval/enroll/id00800-enroll.flac",
    "eval/enroll/id00801-enroll.flac",
    "eval/test/id00800-drama-01-002.flac",
    "eval/test/id00801-movie-01-001.flac",
    "eval/test/id00801-vlog-01-003.flac",
]
LISTS = {
    "dev/dev.lst": "id00001\nid00002\n",
    "eval/lists/enroll.lst": "id00800-enroll enroll/id00800-enroll.wav\nid00801-enroll enroll/id00801-enroll.wav\n",
    "eval/lists/enroll.map": (
        "id00800-enroll id00800/singing-01-001.wav id00800/singing-01-002.wav\n"
        "id00801-enroll id00801/vlog-01-001.wav id00801/vlog-01-002.wav\n"
    ),
    "eval/lists/trials.lst": (
        "id00800-enroll test/id00800-drama-01-002.wav 1\n"
        "id00800-enroll test/id00801-vlog-01-003.wav 0\n"
        "id00801-enroll test/id00801-movie-01-001.wav 1\n"
        "id00801-enroll test/id00800-drama-01-002.wav 0\n"
    ),
}


def make_cnceleb(tmp_path: Path, **replace: str) -> Path:
    """Writes CN-Celeb1 (empty audio files: only paths are read); ``replace`` swaps list texts by file name."""
    root = tmp_path / "CN-Celeb_flac"
    for relative in CNC1_FILES:
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).touch()
    for relative, text in LISTS.items():
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_text(replace.get(Path(relative).name.replace(".", "_"), text))
    return root


def make_cnceleb2(tmp_path: Path) -> Path:
    root = tmp_path / "CN-Celeb2_flac"
    for relative in ["data/id10001/recitation-01-001.flac", "data/id10001/vlog-03-002.flac",
                     "data/id10002/live_broadcast-01-001.flac"]:
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).touch()
    (root / "spk.lst").write_text("id10001\n")
    return root


def read(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def test_cnceleb_all_dirs_exact(tmp_path: Path) -> None:
    root = make_cnceleb(tmp_path)
    root2 = make_cnceleb2(tmp_path)
    out = tmp_path / "data"
    written = prepare_cnceleb(root, out, cnceleb2_root=root2)
    assert sorted(written) == ["cnceleb_train", "eval_enroll", "eval_enroll_map", "eval_test"]
    r1, r2 = root.resolve(), root2.resolve()

    assert read(out / "cnceleb_train" / "wav.scp") == (
        f"id00001-interview-01-001 {r1}/data/id00001/interview-01-001.flac\n"
        f"id00001-speech-02-001 {r1}/data/id00001/speech-02-001.flac\n"
        f"id00002-singing-01-001 {r1}/data/id00002/singing-01-001.wav\n"
        f"id10001-recitation-01-001 {r2}/data/id10001/recitation-01-001.flac\n"
        f"id10001-vlog-03-002 {r2}/data/id10001/vlog-03-002.flac\n"
    )
    assert read(out / "cnceleb_train" / "utt2spk") == (
        "id00001-interview-01-001 id00001\nid00001-speech-02-001 id00001\nid00002-singing-01-001 id00002\n"
        "id10001-recitation-01-001 id10001\nid10001-vlog-03-002 id10001\n"
    )
    assert read(out / "cnceleb_train" / "spk2utt") == (
        "id00001 id00001-interview-01-001 id00001-speech-02-001\nid00002 id00002-singing-01-001\n"
        "id10001 id10001-recitation-01-001 id10001-vlog-03-002\n"
    )

    # "concat": the official enrolment file, found as .flac although the list says .wav.
    assert read(out / "eval_enroll" / "wav.scp") == (
        f"id00800-enroll {r1}/eval/enroll/id00800-enroll.flac\nid00801-enroll {r1}/eval/enroll/id00801-enroll.flac\n"
    )
    assert read(out / "eval_enroll" / "utt2spk") == "id00800-enroll id00800-enroll\nid00801-enroll id00801-enroll\n"
    assert read(out / "eval_enroll" / "spk2utt") == "id00800-enroll id00800-enroll\nid00801-enroll id00801-enroll\n"

    # "average": every enroll.map utterance, mapped to its enrolment id.
    assert read(out / "eval_enroll_map" / "wav.scp") == (
        f"id00800-enroll-singing-01-001 {r1}/data/id00800/singing-01-001.flac\n"
        f"id00800-enroll-singing-01-002 {r1}/data/id00800/singing-01-002.flac\n"
        f"id00801-enroll-vlog-01-001 {r1}/data/id00801/vlog-01-001.flac\n"
        f"id00801-enroll-vlog-01-002 {r1}/data/id00801/vlog-01-002.flac\n"
    )
    assert read(out / "eval_enroll_map" / "spk2utt") == (
        "id00800-enroll id00800-enroll-singing-01-001 id00800-enroll-singing-01-002\n"
        "id00801-enroll id00801-enroll-vlog-01-001 id00801-enroll-vlog-01-002\n"
    )

    assert read(out / "eval_test" / "wav.scp") == (
        f"id00800-drama-01-002 {r1}/eval/test/id00800-drama-01-002.flac\n"
        f"id00801-movie-01-001 {r1}/eval/test/id00801-movie-01-001.flac\n"
        f"id00801-vlog-01-003 {r1}/eval/test/id00801-vlog-01-003.flac\n"
    )
    assert read(out / "eval_test" / "utt2spk") == (
        "id00800-drama-01-002 id00800\nid00801-movie-01-001 id00801\nid00801-vlog-01-003 id00801\n"
    )
    assert read(out / "eval_test" / "trials") == (
        "id00800-enroll id00800-drama-01-002 target\n"
        "id00800-enroll id00801-vlog-01-003 nontarget\n"
        "id00801-enroll id00801-movie-01-001 target\n"
        "id00801-enroll id00800-drama-01-002 nontarget\n"
    )


def test_cnceleb_enroll_modes_and_no_dev_list(tmp_path: Path) -> None:
    root = make_cnceleb(tmp_path)
    (root / "dev" / "dev.lst").unlink()
    out = tmp_path / "data"
    assert sorted(prepare_cnceleb(root, out, enroll_mode="concat")) == ["cnceleb_train", "eval_enroll", "eval_test"]
    # Without dev.lst the dev speakers are the ids below id00800.
    assert read(out / "cnceleb_train" / "spk2utt") == (
        "id00001 id00001-interview-01-001 id00001-speech-02-001\nid00002 id00002-singing-01-001\n"
    )
    out2 = tmp_path / "data2"
    assert sorted(prepare_cnceleb(root, out2, enroll_mode="average")) == [
        "cnceleb_train", "eval_enroll_map", "eval_test"]
    with pytest.raises(ValueError, match="enroll_mode"):
        prepare_cnceleb(root, out, enroll_mode="mean")


def test_cnceleb_trial_with_missing_test_file(tmp_path: Path) -> None:
    bad = LISTS["eval/lists/trials.lst"].replace("id00801-movie-01-001", "id00801-movie-09-009")
    root = make_cnceleb(tmp_path, trials_lst=bad)
    with pytest.raises(DataDirError) as info:
        prepare_cnceleb(root, tmp_path / "data")
    assert info.value.path == str(root.resolve() / "eval" / "lists" / "trials.lst")
    assert (info.value.line, info.value.key) == (3, "id00801-movie-09-009")
    assert "trials.lst:3 (key 'id00801-movie-09-009')" in str(info.value)
    assert not (tmp_path / "data").exists()  # nothing is written before every list checked


def test_cnceleb_trial_with_unknown_enroll_id(tmp_path: Path) -> None:
    bad = LISTS["eval/lists/trials.lst"] + "id00999-enroll test/id00800-drama-01-002.wav 0\n"
    root = make_cnceleb(tmp_path, trials_lst=bad)
    with pytest.raises(DataDirError, match=r"trials.lst:5 \(key 'id00999-enroll'\)"):
        prepare_cnceleb(root, tmp_path / "data")


def test_cnceleb_enroll_map_missing_file(tmp_path: Path) -> None:
    bad = LISTS["eval/lists/enroll.map"].replace("vlog-01-002", "vlog-07-002")
    root = make_cnceleb(tmp_path, enroll_map=bad)
    with pytest.raises(DataDirError, match=r"enroll.map:2 \(key 'id00801-enroll'\).*id00801/vlog-07-002.wav"):
        prepare_cnceleb(root, tmp_path / "data")
    # Concatenated enrolment alone does not read enroll.map.
    prepare_cnceleb(root, tmp_path / "data", enroll_mode="concat")


def test_cnceleb_enroll_lst_missing_file_and_dev_list_speaker(tmp_path: Path) -> None:
    root = make_cnceleb(tmp_path, enroll_lst="id00800-enroll enroll/id00800-enroll.wav\nid00802-enroll "
                                              "enroll/id00802-enroll.wav\n")
    with pytest.raises(DataDirError, match=r"enroll.lst:2 \(key 'id00802-enroll'\)"):
        prepare_cnceleb(root, tmp_path / "data", enroll_mode="concat")
    root = make_cnceleb(tmp_path / "b", dev_lst="id00001\nid00003\n")
    with pytest.raises(DataDirError, match=r"dev.lst \(key 'id00003'\)"):
        prepare_cnceleb(root, tmp_path / "data")
    root = make_cnceleb(tmp_path / "c", dev_lst="id00001\nid00002\nid00001\n")
    with pytest.raises(DataDirError, match=r"dev.lst:3 \(key 'id00001'\): id repeated \(first on line 1\)"):
        prepare_cnceleb(root, tmp_path / "data")


def test_prepare_cnceleb_entry_point(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = make_cnceleb(tmp_path)
    out = tmp_path / "data"
    assert prepare_cnceleb_bin.main(["--cnceleb1-root", str(root), "--out-dir", str(out), "--enroll-mode", "both"]) == 0
    assert (out / "eval_test" / "trials").is_file() and (out / "eval_enroll_map" / "utt2spk").is_file()
    assert prepare_cnceleb_bin.main(["--cnceleb1-root", str(tmp_path / "nope"), "--out-dir", str(out)]) == 1
    merged = ["--cnceleb1-root", str(root), "--out-dir", str(out), "--merged-audio-dir", str(tmp_path / "m")]
    assert prepare_cnceleb_bin.main(merged) == 1
    assert "it needs --min-train-duration > 0" in capsys.readouterr().err
    assert prepare_cnceleb_bin.main([*merged, "--min-train-duration", "-1"]) == 1
    assert "--min-train-duration must not be negative, got -1.0" in capsys.readouterr().err


def test_group_consecutive_follows_the_neighbour_rule() -> None:
    assert group_consecutive([6.0, 7.0, 8.0], 5.0) == [(0, 1), (1, 2), (2, 3)]  # nothing short
    assert group_consecutive([1.0, 6.0, 7.0], 5.0) == [(0, 2), (2, 3)]  # the first has only a right side
    assert group_consecutive([6.0, 7.0, 1.0], 5.0) == [(0, 1), (1, 3)]  # the last only a left one
    # a right neighbour that is long enough already leaves the short one to the left (Kaldi's rule)
    assert group_consecutive([6.0, 1.0, 7.0], 5.0) == [(0, 2), (2, 3)]
    assert group_consecutive([7.0, 1.0, 6.0], 5.0) == [(0, 2), (2, 3)]
    # from the end of the list: short runs join leftwards until they reach the minimum
    assert group_consecutive([3.0, 3.0, 3.0, 3.0], 5.0) == [(0, 2), (2, 4)]
    assert group_consecutive([2.0, 2.0, 2.0, 9.0], 5.0) == [(0, 3), (3, 4)]
    assert group_consecutive([4.5, 1.0, 0.5, 0.5], 5.0) == [(0, 4)]
    assert group_consecutive([1.0, 1.5], 5.0) == [(0, 2)]  # all of it is still short: one run
    assert group_consecutive([3.0], 5.0) == [(0, 1)]
    with pytest.raises(ValueError, match="positive"):
        group_consecutive([1.0, 0.0], 5.0)


def test_group_consecutive_covers_the_list_with_runs_of_the_minimum() -> None:
    rng = np.random.default_rng(3)
    for _ in range(200):
        durations = list(rng.uniform(0.2, 4.0, size=rng.integers(1, 12)))
        runs = group_consecutive(durations, 5.0)
        assert [start for start, _ in runs] == [0] + [end for _, end in runs[:-1]] and runs[-1][1] == len(durations)
        if sum(durations) >= 5.0:
            assert all(sum(durations[start:end]) >= 5.0 - 1e-5 for start, end in runs)


def _write_tone(path: Path, seconds: float, seed: int) -> np.ndarray:
    samples = (np.random.default_rng(seed).standard_normal(int(seconds * 16000)) * 2000).astype(np.int16)
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(path, samples, 16000)
    return samples


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="the merged utterances' pipes need ffmpeg")
def test_cnceleb_short_training_utterances_merged_per_speaker_and_genre(tmp_path: Path) -> None:
    root = make_cnceleb(tmp_path)
    audio = {}
    lengths = {"id00001/interview-01-001": 2.0, "id00001/interview-01-002": 1.0, "id00001/interview-02-001": 2.5,
               "id00001/speech-02-001": 1.0, "id00001/speech-02-002": 6.0, "id00002/singing-01-001": 1.5}
    for seed, (name, seconds) in enumerate(lengths.items()):
        audio[name] = _write_tone(root / "data" / f"{name}.flac", seconds, seed)
    (root / "data" / "id00002" / "singing-01-001.wav").unlink()  # the empty converted copy of make_cnceleb
    prepare_cnceleb(root, tmp_path / "out", enroll_mode="concat", min_train_duration=5.0)
    train = tmp_path / "out" / "cnceleb_train"
    utt2spk = dict(line.split() for line in read(train / "utt2spk").splitlines())
    # interview: 2 + 1 + 2.5 s joined; speech: 1 s joins its 6 s neighbour, not the interview; id00002's
    # only singing file stays alone, short
    assert utt2spk == {"id00001-interview-01-001-comb3": "id00001", "id00001-speech-02-001-comb2": "id00001",
                       "id00002-singing-01-001": "id00002"}
    utt2dur = dict(line.split() for line in read(train / "utt2dur").splitlines())
    assert {utt: float(value) for utt, value in utt2dur.items()} == {
        "id00001-interview-01-001-comb3": 5.5, "id00001-speech-02-001-comb2": 7.0, "id00002-singing-01-001": 1.5}
    wav_scp = dict(line.split(" ", 1) for line in read(train / "wav.scp").splitlines())
    assert wav_scp["id00002-singing-01-001"].endswith("singing-01-001.flac")
    # a merged utterance's audio is exactly its parts, in order
    merged, _ = load_audio(wav_scp["id00001-interview-01-001-comb3"])
    parts = [audio[f"id00001/interview-{n}"] for n in ("01-001", "01-002", "02-001")]
    np.testing.assert_array_equal(np.round(merged * 32768).astype(np.int16), np.concatenate(parts))
    merged, _ = load_audio(wav_scp["id00001-speech-02-001-comb2"])
    speech = np.concatenate([audio["id00001/speech-02-001"], audio["id00001/speech-02-002"]])
    np.testing.assert_array_equal(np.round(merged * 32768).astype(np.int16), speech)
    # written out instead (for training from audio): the same samples in a wav file, the same lists otherwise
    prepare_cnceleb(root, tmp_path / "out2", enroll_mode="concat", min_train_duration=5.0,
                    merged_audio_dir=tmp_path / "merged")
    written = dict(line.split(" ", 1) for line in read(tmp_path / "out2" / "cnceleb_train" / "wav.scp").splitlines())
    assert written["id00001-speech-02-001-comb2"] == str(tmp_path / "merged" / "id00001" /
                                                         "id00001-speech-02-001-comb2.wav")
    samples, _ = soundfile.read(written["id00001-speech-02-001-comb2"], dtype="int16")
    np.testing.assert_array_equal(samples, speech)
    assert written["id00002-singing-01-001"] == wav_scp["id00002-singing-01-001"]
    assert read(tmp_path / "out2" / "cnceleb_train" / "utt2dur") == read(train / "utt2dur")


def test_cnceleb_merging_names_an_unreadable_file(tmp_path: Path) -> None:
    root = make_cnceleb(tmp_path)  # empty audio files: no header
    with pytest.raises(DataDirError, match=r"interview-01-001\.flac.*cannot read the audio header"):
        prepare_cnceleb(root, tmp_path / "out", min_train_duration=5.0)
