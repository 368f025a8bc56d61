"""Pooled benchmark preparation on tiny real audio files in the four corpus layouts."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
import soundfile

from speakernet.bin import prepare_pooled as prepare_pooled_bin
from speakernet.data.kaldi_dir import read_scp, read_trials
from speakernet.data.prepare.pooled import PooledUtterance, make_pooled_trials, prepare_pooled, split_speakers

# relative path -> (seconds, rate)
LIBRISPEECH = {
    "19/198/19-198-0000.flac": (7.6, 16000),  # 0-3, 3-6, tail 1.6 s >= 1.5 s kept
    "26/495/26-495-0000.flac": (4.0, 16000),  # one segment + 1 s tail: a single utterance, left out
    "32/21625/32-21625-0000.flac": (6.2, 16000),  # 0-3, 3-6, tail 0.2 s dropped
}
SPEECH_COMMANDS = {
    "yes/aaaa1111_nohash_0.flac": (1.0, 16000),
    "no/aaaa1111_nohash_0.flac": (1.0, 16000),
    "yes/bbbb2222_nohash_0.flac": (1.0, 16000),
    "yes/bbbb2222_nohash_1.flac": (1.0, 16000),
    "no/cccc3333_nohash_0.flac": (1.0, 16000),  # one file: left out
    "_background_noise_/white_noise.flac": (2.0, 16000),  # not a word folder: skipped
}
ARABIC = {
    "dataset/zoom in/00000001_NO_01.flac": (1.0, 16000),  # folder name with a space
    "dataset/up/00000001_NO_01.flac": (1.0, 16000),
    "dataset/up/00000002_NO_01.flac": (1.0, 16000),
    "dataset/up/00000002_NO_02.flac": (1.0, 16000),
}
FSDD = {
    "recordings/0_george_0.wav": (0.5, 8000),
    "recordings/1_george_0.wav": (0.25, 8000),
    "recordings/0_jackson_0.wav": (0.5, 8000),
    "recordings/0_jackson_1.wav": (0.375, 8000),
}


def write_tree(base: Path, files: dict[str, tuple[float, int]]) -> Path:
    for relative, (seconds, rate) in files.items():
        path = base / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        samples = np.zeros(int(round(seconds * rate)), dtype=np.int16)
        soundfile.write(path, samples, rate)
    return base


@pytest.fixture
def roots(tmp_path: Path) -> dict[str, Path]:
    return {
        "librispeech_root": write_tree(tmp_path / "LibriSpeech" / "train-clean-100", LIBRISPEECH),
        "speech_commands_root": write_tree(tmp_path / "speech_commands", SPEECH_COMMANDS),
        "arabic_root": write_tree(tmp_path / "arabic", ARABIC) / "dataset",
        "fsdd_root": write_tree(tmp_path / "fsdd", FSDD),  # the parent of recordings/ is accepted too
    }


def read(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def expected_tables(roots: dict[str, Path]) -> dict[str, str]:
    """The data dir files of all kept utterances, written out by hand."""
    ls = roots["librispeech_root"].resolve()
    sc = roots["speech_commands_root"].resolve()
    ar = roots["arabic_root"].resolve()
    fs = (roots["fsdd_root"] / "recordings").resolve()
    # utt, recording, path, start, end, speaker
    rows = [
        ("ar-00000001-up-01", None, f"{ar}/up/00000001_NO_01.flac", 0.0, 1.0, "ar-00000001"),
        ("ar-00000001-zoom_in-01", None, f"cat '{ar}/zoom in/00000001_NO_01.flac' |", 0.0, 1.0, "ar-00000001"),
        ("ar-00000002-up-01", None, f"{ar}/up/00000002_NO_01.flac", 0.0, 1.0, "ar-00000002"),
        ("ar-00000002-up-02", None, f"{ar}/up/00000002_NO_02.flac", 0.0, 1.0, "ar-00000002"),
        ("fs-george-0-0", None, f"{fs}/0_george_0.wav", 0.0, 0.5, "fs-george"),
        ("fs-george-1-0", None, f"{fs}/1_george_0.wav", 0.0, 0.25, "fs-george"),
        ("fs-jackson-0-0", None, f"{fs}/0_jackson_0.wav", 0.0, 0.5, "fs-jackson"),
        ("fs-jackson-0-1", None, f"{fs}/0_jackson_1.wav", 0.0, 0.375, "fs-jackson"),
        ("ls-19-198-0000-000", "ls-19-198-0000", f"{ls}/19/198/19-198-0000.flac", 0.0, 3.0, "ls-19"),
        ("ls-19-198-0000-001", "ls-19-198-0000", f"{ls}/19/198/19-198-0000.flac", 3.0, 6.0, "ls-19"),
        ("ls-19-198-0000-002", "ls-19-198-0000", f"{ls}/19/198/19-198-0000.flac", 6.0, 7.6, "ls-19"),
        ("ls-32-21625-0000-000", "ls-32-21625-0000", f"{ls}/32/21625/32-21625-0000.flac", 0.0, 3.0, "ls-32"),
        ("ls-32-21625-0000-001", "ls-32-21625-0000", f"{ls}/32/21625/32-21625-0000.flac", 3.0, 6.0, "ls-32"),
        ("sc-aaaa1111-no-0", None, f"{sc}/no/aaaa1111_nohash_0.flac", 0.0, 1.0, "sc-aaaa1111"),
        ("sc-aaaa1111-yes-0", None, f"{sc}/yes/aaaa1111_nohash_0.flac", 0.0, 1.0, "sc-aaaa1111"),
        ("sc-bbbb2222-yes-0", None, f"{sc}/yes/bbbb2222_nohash_0.flac", 0.0, 1.0, "sc-bbbb2222"),
        ("sc-bbbb2222-yes-1", None, f"{sc}/yes/bbbb2222_nohash_1.flac", 0.0, 1.0, "sc-bbbb2222"),
    ]
    wav_scp = {}
    for utt, recording, path, _, _, _ in rows:
        wav_scp[recording or utt] = path
    speakers: dict[str, list[str]] = {}
    for row in rows:
        speakers.setdefault(row[5], []).append(row[0])
    return {
        "wav.scp": "".join(f"{key} {value}\n" for key, value in sorted(wav_scp.items())),
        "segments": "".join(f"{u} {r or u} {s:.3f} {e:.3f}\n" for u, r, _, s, e, _ in rows),
        "utt2spk": "".join(f"{row[0]} {row[5]}\n" for row in rows),
        "spk2utt": "".join(f"{spk} {' '.join(utts)}\n" for spk, utts in sorted(speakers.items())),
        "utt2dur": "".join(f"{u} {e - s:.3f}\n" for u, _, _, s, e, _ in rows),
    }


def test_pooled_all_train_exact(tmp_path: Path, roots: dict[str, Path]) -> None:
    out = tmp_path / "pooled"
    summary = prepare_pooled(out, test_fraction=0.0, **roots)
    for name, text in expected_tables(roots).items():
        assert read(out / "train" / name) == text, name
    assert read(out / "test" / "utt2spk") == "" and read(out / "test" / "trials") == ""
    assert summary.speakers[("train", "librispeech")] == 2 and summary.utterances[("train", "librispeech")] == 5
    assert summary.speakers[("train", "speech_commands")] == 2 and summary.utterances[("test", "arabic")] == 0


def test_no_adapt_dir_when_no_held_out_speaker_can_be_spared(tmp_path: Path, roots: dict[str, Path],
                                                               caplog: pytest.LogCaptureFixture) -> None:
    out = tmp_path / "pooled"
    (out / "adapt").mkdir(parents=True)  # left by an earlier run with more speakers
    (out / "adapt" / "utt2spk").write_text("stale stale\n")
    prepare_pooled(out, test_fraction=1.0, adapt_fraction=0.3, **roots)  # two speakers per corpus: none to spare
    assert not (out / "adapt").exists() and "No adapt speakers" in caplog.text
    assert read(out / "test" / "utt2spk") != ""


def test_pooled_all_test_exact_trials(tmp_path: Path, roots: dict[str, Path]) -> None:
    out = tmp_path / "pooled"
    # Enough partners per kind that every pair is taken: the trial list is then all unordered pairs.
    summary = prepare_pooled(out, test_fraction=1.0, pairs_per_utt=100, **roots)
    tables = expected_tables(roots)
    for name, text in tables.items():
        assert read(out / "test" / name) == text, name
    utt2spk = dict(line.split() for line in tables["utt2spk"].splitlines())
    pairs = [(a, b, "target" if utt2spk[a] == utt2spk[b] else "nontarget")
             for a, b in itertools.combinations(sorted(utt2spk), 2)]
    assert read(out / "test" / "trials") == "".join(f"{a} {b} {label}\n" for a, b, label in pairs)
    for corpus, prefix in [("librispeech", "ls-"), ("speech_commands", "sc-"), ("arabic", "ar-"), ("fsdd", "fs-")]:
        within = [p for p in pairs if p[0].startswith(prefix) and p[1].startswith(prefix)]
        assert read(out / "test" / f"trials_{corpus}") == "".join(f"{a} {b} {label}\n" for a, b, label in within)
    assert summary.trials["trials"] == (len(pairs), sum(1 for p in pairs if p[2] == "target"))
    assert summary.trials["trials_librispeech"] == (10, 4)


def test_pooled_speaker_split_is_disjoint_and_deterministic(tmp_path: Path, roots: dict[str, Path]) -> None:
    prepare_pooled(tmp_path / "a", test_fraction=0.5, seed=3, pairs_per_utt=1, **roots)
    prepare_pooled(tmp_path / "b", test_fraction=0.5, seed=3, pairs_per_utt=1, **roots)
    for split in ("train", "test"):
        for name in ("wav.scp", "segments", "utt2spk", "spk2utt", "utt2dur"):
            assert read(tmp_path / "a" / split / name) == read(tmp_path / "b" / split / name)
    assert read(tmp_path / "a" / "test" / "trials") == read(tmp_path / "b" / "test" / "trials")
    train = set(read_scp(tmp_path / "a" / "train" / "utt2spk").values())
    test_utt2spk = read_scp(tmp_path / "a" / "test" / "utt2spk")
    test = set(test_utt2spk.values())
    assert not train & test
    assert train | test == {"ls-19", "ls-32", "sc-aaaa1111", "sc-bbbb2222", "ar-00000001", "ar-00000002",
                            "fs-george", "fs-jackson"}
    # Each corpus with two speakers puts one on each side.
    assert sorted(spk.split("-")[0] for spk in test) == ["ar", "fs", "ls", "sc"]
    trials = read_trials(tmp_path / "a" / "test" / "trials")
    assert all(a != b and a in test_utt2spk and b in test_utt2spk for a, b, _ in trials)
    assert len({frozenset((a, b)) for a, b, _ in trials}) == len(trials)
    assert all((label == "target") == (test_utt2spk[a] == test_utt2spk[b]) for a, b, label in trials)


def _utt(utt: str, speaker: str, corpus: str, group: str) -> PooledUtterance:
    return PooledUtterance(utt, speaker, corpus, group, utt, f"/audio/{utt}.flac", 0.0, 1.0)


def test_make_pooled_trials_prefers_other_groups_and_caps_counts() -> None:
    utts = [
        _utt("sc-a-no-0", "sc-a", "speech_commands", "no"),
        _utt("sc-a-no-1", "sc-a", "speech_commands", "no"),
        _utt("sc-a-yes-0", "sc-a", "speech_commands", "yes"),
    ]
    # With one target per utterance the "no" takes are paired with the "yes" take, never each other.
    for seed in range(5):
        assert make_pooled_trials(utts, pairs_per_utt=1, seed=seed) == [
            ("sc-a-no-0", "sc-a-yes-0", "target"),
            ("sc-a-no-1", "sc-a-yes-0", "target"),
        ]

    many = [_utt(f"{c}-s{s}-w{w}", f"{c}-s{s}", c, f"w{w}") for c in ("ar", "fs", "sc") for s in range(4)
            for w in range(5)]
    trials = make_pooled_trials(many, pairs_per_utt=2, seed=7)
    assert trials == make_pooled_trials(many, pairs_per_utt=2, seed=7)
    assert trials != make_pooled_trials(many, pairs_per_utt=2, seed=8)
    speaker = {u.utt: u.speaker for u in many}
    for utt in speaker:
        mine = [t for t in trials if t[0] == utt]
        targets = [t for t in mine if t[2] == "target"]
        same_corpus = [t for t in mine if t[2] == "nontarget" and t[1][:2] == utt[:2]]
        cross = [t for t in mine if t[1][:2] != utt[:2]]
        assert len(targets) <= 2 and len(same_corpus) <= 2 and len(cross) <= 2
        assert all(speaker[b] == speaker[utt] for _, b, _ in targets)
        assert all(speaker[b] != speaker[utt] for _, b, _ in same_corpus + cross)
    # Cross-corpus partners are spread over both other corpora, round-robin.
    first = [t[1][:2] for t in trials if t[0] == "ar-s0-w0" and t[1][:2] != "ar"]
    assert sorted(first) == ["fs", "sc"]
    assert len(trials) > 0 and all(a != b for a, b, _ in trials)


def test_split_speakers() -> None:
    speakers = [f"spk{i:02d}" for i in range(10)]
    test = split_speakers(speakers, 0.3, seed=0, corpus="x")
    assert len(test) == 3 and test <= set(speakers)
    assert test == split_speakers(list(reversed(speakers)), 0.3, seed=0, corpus="x")
    assert len(split_speakers(["a", "b"], 0.1, seed=0, corpus="x")) == 1
    assert len(split_speakers(["a", "b"], 0.9, seed=0, corpus="x")) == 1
    assert split_speakers(speakers, 1.0, seed=0, corpus="x") == set(speakers)
    with pytest.raises(ValueError, match="test_fraction"):
        split_speakers(speakers, 1.5, seed=0, corpus="x")


def test_pooled_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="at least one corpus root"):
        prepare_pooled(tmp_path / "out")
    write_tree(tmp_path / "sc", {"yes/not-a-speech-commands-name.flac": (0.1, 16000)})
    with pytest.raises(ValueError, match="not-a-speech-commands-name.flac"):
        prepare_pooled(tmp_path / "out", speech_commands_root=tmp_path / "sc")
    with pytest.raises(FileNotFoundError):
        prepare_pooled(tmp_path / "out", fsdd_root=tmp_path / "missing")


def test_prepare_pooled_entry_point(tmp_path: Path, roots: dict[str, Path]) -> None:
    out = tmp_path / "pooled"
    argv = ["--speech-commands-root", str(roots["speech_commands_root"]), "--fsdd-root", str(roots["fsdd_root"]),
            "--test-fraction", "0.5", "--out-dir", str(out)]
    assert prepare_pooled_bin.main(argv) == 0
    assert (out / "test" / "trials_fsdd").is_file() and not (out / "test" / "trials_arabic").exists()
    assert prepare_pooled_bin.main(["--out-dir", str(out)]) == 1


def test_adapt_speakers_are_unlabelled_and_disjoint(tmp_path: Path) -> None:
    names = ["alice", "bob", "carol", "dave", "erin", "frank"]
    fsdd = write_tree(tmp_path / "fsdd", {f"recordings/{d}_{name}_0.wav": (0.5, 8000)
                                          for name in names for d in range(3)})
    summary = prepare_pooled(tmp_path / "out", fsdd_root=fsdd, test_fraction=1.0, adapt_fraction=0.5)
    adapt = read_scp(tmp_path / "out" / "adapt" / "utt2spk")
    test = read_scp(tmp_path / "out" / "test" / "utt2spk")
    assert adapt and all(utt == spk for utt, spk in adapt.items())  # unlabelled: each utterance its own speaker
    adapt_speakers = {"-".join(utt.split("-")[:2]) for utt in adapt}
    assert len(adapt_speakers) == 3 and not adapt_speakers & set(test.values())
    assert len(set(test.values())) == 3 and summary.speakers[("adapt", "fsdd")] == 3
    assert all(a in test and b in test for a, b, _ in read_trials(tmp_path / "out" / "test" / "trials"))
    # two test speakers always stay, so that a corpus keeps target and non-target trials
    prepare_pooled(tmp_path / "few", fsdd_root=fsdd, test_fraction=0.5, adapt_fraction=0.9)
    assert len(set(read_scp(tmp_path / "few" / "test" / "utt2spk").values())) == 2
    with pytest.raises(ValueError, match="adapt_fraction"):
        prepare_pooled(tmp_path / "bad", fsdd_root=fsdd, adapt_fraction=1.0)
