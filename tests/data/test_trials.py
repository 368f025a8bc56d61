"""Trial sampling: determinism, exact counts, no self or repeated pairs, labels and genders right."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from speakernet.bin import make_trials as make_trials_bin
from speakernet.data.kaldi_dir import DataDirError, read_trials
from speakernet.data.trials import _unrank_pair, make_trials_file, sample_trials

# 12 speakers with 1 to 6 utterances; even speakers are male.
SIZES = [1, 2, 3, 4, 5, 6, 1, 2, 3, 4, 5, 6]
UTT2SPK = {f"spk{s:02d}-u{u}": f"spk{s:02d}" for s, size in enumerate(SIZES) for u in range(size)}
SPK2GENDER = {f"spk{s:02d}": "m" if s % 2 == 0 else "f" for s in range(len(SIZES))}
NUM_TARGET_PAIRS = sum(size * (size - 1) // 2 for size in SIZES)
NUM_UTTS = len(UTT2SPK)
NUM_NONTARGET_PAIRS = NUM_UTTS * (NUM_UTTS - 1) // 2 - NUM_TARGET_PAIRS


def _write_dir(path: Path, utt2spk: dict[str, str] = UTT2SPK, spk2gender: dict[str, str] | None = None) -> Path:
    path.mkdir(parents=True)
    (path / "utt2spk").write_text("".join(f"{utt} {spk}\n" for utt, spk in sorted(utt2spk.items())))
    if spk2gender is not None:
        (path / "spk2gender").write_text("".join(f"{spk} {gender}\n" for spk, gender in sorted(spk2gender.items())))
    return path


def _check_well_formed(trials: list[tuple[str, str, str]], utt2spk: dict[str, str]) -> None:
    pairs = [frozenset(trial[:2]) for trial in trials]
    assert all(enroll != test for enroll, test, _ in trials)
    assert len(set(pairs)) == len(pairs)  # (a, b) and (b, a) count as one pair
    for enroll, test, label in trials:
        assert label == ("target" if utt2spk[enroll] == utt2spk[test] else "nontarget")
    assert trials == sorted(trials, key=lambda trial: (trial[0].encode(), trial[1].encode()))


def test_unrank_pair_lists_every_pair_once() -> None:
    for size in (2, 3, 7, 40):
        expected = list(itertools.combinations(range(size), 2))
        assert [_unrank_pair(index, size) for index in range(len(expected))] == expected


def test_all_targets_and_balanced_nontargets_by_default() -> None:
    trials = sample_trials(UTT2SPK, seed=3)
    _check_well_formed(trials, UTT2SPK)
    targets = {frozenset(trial[:2]) for trial in trials if trial[2] == "target"}
    every_target = {frozenset(pair) for pair in itertools.combinations(UTT2SPK, 2)
                    if UTT2SPK[pair[0]] == UTT2SPK[pair[1]]}
    assert targets == every_target
    assert sum(trial[2] == "nontarget" for trial in trials) == NUM_TARGET_PAIRS


@pytest.mark.parametrize(("num_targets", "num_nontargets"), [(7, 40), (0, 13), (NUM_TARGET_PAIRS, NUM_NONTARGET_PAIRS),
                                                           (NUM_TARGET_PAIRS - 1, NUM_NONTARGET_PAIRS - 2)])
def test_counts_are_exact(num_targets: int, num_nontargets: int) -> None:
    trials = sample_trials(UTT2SPK, num_targets, num_nontargets, seed=1)
    _check_well_formed(trials, UTT2SPK)
    assert sum(trial[2] == "target" for trial in trials) == num_targets
    assert sum(trial[2] == "nontarget" for trial in trials) == num_nontargets


def test_same_seed_same_bytes_other_seed_other_trials(tmp_path: Path) -> None:
    data = _write_dir(tmp_path / "data")
    make_trials_file(data, tmp_path / "a", num_targets=20, num_nontargets=30, seed=5)
    make_trials_file(data, tmp_path / "b", num_targets=20, num_nontargets=30, seed=5)
    make_trials_file(data, tmp_path / "c", num_targets=20, num_nontargets=30, seed=6)
    assert (tmp_path / "a").read_bytes() == (tmp_path / "b").read_bytes()
    assert (tmp_path / "a").read_bytes() != (tmp_path / "c").read_bytes()
    assert len(read_trials(tmp_path / "a")) == 50
    # The order utt2spk lists the utterances in does not matter, only the set.
    shuffled = dict(reversed(list(UTT2SPK.items())))
    assert sample_trials(shuffled, 20, 30, seed=5) == read_trials(tmp_path / "a")


def test_sampling_is_spread_over_the_pairs() -> None:
    # Without replacement and uniform: over many seeds every non-target pair turns up.
    seen = set()
    for seed in range(200):
        seen.update(frozenset(trial[:2]) for trial in sample_trials(UTT2SPK, 0, 20, seed=seed))
    assert len(seen) > 0.97 * NUM_NONTARGET_PAIRS  # 1 - (1 - 20 / 791) ** 200 = 0.994 expected


def test_same_gender_nontargets(tmp_path: Path) -> None:
    data = _write_dir(tmp_path / "data", spk2gender=SPK2GENDER)
    trials = make_trials_file(data, tmp_path / "trials", num_targets=10, num_nontargets=60, same_gender=True, seed=2)
    _check_well_formed(trials, UTT2SPK)
    nontargets = [trial for trial in trials if trial[2] == "nontarget"]
    assert len(nontargets) == 60
    assert all(SPK2GENDER[UTT2SPK[enroll]] == SPK2GENDER[UTT2SPK[test]] for enroll, test, _ in nontargets)
    males = [utt for utt in UTT2SPK if SPK2GENDER[UTT2SPK[utt]] == "m"]
    num_male_pairs = sum(UTT2SPK[a] != UTT2SPK[b] for a, b in itertools.combinations(males, 2))
    females = [utt for utt in UTT2SPK if SPK2GENDER[UTT2SPK[utt]] == "f"]
    num_female_pairs = sum(UTT2SPK[a] != UTT2SPK[b] for a, b in itertools.combinations(females, 2))
    num_pairs = num_male_pairs + num_female_pairs
    assert len(sample_trials(UTT2SPK, 0, num_pairs, spk2gender=SPK2GENDER)) == num_pairs
    with pytest.raises(ValueError, match=f"{num_pairs + 1} same-gender non-target trials but utt2spk has only "
                                         f"{num_pairs} "):
        sample_trials(UTT2SPK, 0, num_pairs + 1, spk2gender=SPK2GENDER)


def test_same_gender_needs_spk2gender_naming_every_speaker(tmp_path: Path) -> None:
    data = _write_dir(tmp_path / "data")
    with pytest.raises(FileNotFoundError, match="spk2gender: not found; same-gender trials need spk2gender"):
        make_trials_file(data, tmp_path / "trials", same_gender=True)
    partial = {spk: gender for spk, gender in SPK2GENDER.items() if spk != "spk03"}
    data = _write_dir(tmp_path / "partial", spk2gender=partial)
    with pytest.raises(ValueError, match="1 speaker.* have no gender in spk2gender, e.g. 'spk03'"):
        make_trials_file(data, tmp_path / "trials", same_gender=True)
    data = _write_dir(tmp_path / "bad", spk2gender={**SPK2GENDER, "spk03": "x"})
    with pytest.raises(DataDirError, match=r"spk2gender:4 \(key 'spk03'\): gender must be one of"):
        make_trials_file(data, tmp_path / "trials", same_gender=True)
    assert not (tmp_path / "trials").exists()


def test_too_many_asked_for_is_an_error_saying_how_many_exist() -> None:
    with pytest.raises(ValueError, match=f"asked for {NUM_TARGET_PAIRS + 1} target trials but .* has only "
                                         f"{NUM_TARGET_PAIRS} "):
        sample_trials(UTT2SPK, NUM_TARGET_PAIRS + 1)
    with pytest.raises(ValueError, match=f"has only {NUM_NONTARGET_PAIRS} "):
        sample_trials(UTT2SPK, 0, NUM_NONTARGET_PAIRS + 1)


def test_default_nontargets_are_capped(caplog: pytest.LogCaptureFixture) -> None:
    utt2spk = {f"a-{i}": "a" for i in range(5)} | {"b-0": "b"}  # 10 target pairs, 5 non-target pairs
    trials = sample_trials(utt2spk)
    assert sum(trial[2] == "target" for trial in trials) == 10
    assert sum(trial[2] == "nontarget" for trial in trials) == 5
    assert "only 5 non-target pairs, fewer than the 10 targets" in caplog.text
    with pytest.raises(ValueError, match="every speaker has one utterance, so there is no target trial"):
        sample_trials({"a-0": "a", "b-0": "b"}, num_nontargets=0)
    with pytest.raises(ValueError, match="no trials to write"):
        sample_trials({"a-0": "a", "b-0": "b"}, num_targets=0, num_nontargets=0)
    # a list without non-targets (one speaker) cannot give an EER: an error before any training
    with pytest.raises(ValueError, match=r"no two utterances of different speakers, .* \(1 speaker\(s\)\)"):
        sample_trials({f"a-{i}": "a" for i in range(3)})


def test_entry_point(tmp_path: Path) -> None:
    data = _write_dir(tmp_path / "data")
    out = tmp_path / "trials"
    assert make_trials_bin.main(["--data-dir", str(data), "--out", str(out), "--num-targets", "all",
                                 "--num-nontargets", "25", "--seed", "4"]) == 0
    trials = read_trials(out)
    assert sum(trial[2] == "target" for trial in trials) == NUM_TARGET_PAIRS and len(trials) == NUM_TARGET_PAIRS + 25
    assert make_trials_bin.main(["--data-dir", str(data), "--out", str(out), "--num-targets", "9999"]) == 1
    assert read_trials(out) == trials  # a failed run leaves the old file alone
    assert make_trials_bin.main(["--data-dir", str(data), "--out", str(out), "--same-gender"]) == 1
    assert make_trials_bin.main(["--data-dir", str(tmp_path / "nope"), "--out", str(out)]) == 1
    with pytest.raises(SystemExit):
        make_trials_bin.main(["--data-dir", str(data), "--out", str(out), "--num-targets", "some"])
    assert "balanced, like VoxCeleb1-O" in " ".join(make_trials_bin.build_parser().format_help().split())


def test_max_targets_takes_all_when_there_are_no_more(tmp_path: Path) -> None:
    capped = sample_trials(UTT2SPK, seed=2, max_targets=NUM_TARGET_PAIRS + 100)
    assert capped == sample_trials(UTT2SPK, seed=2)  # all of them, as with num_targets=None
    fewer = sample_trials(UTT2SPK, seed=2, max_targets=9)
    assert fewer == sample_trials(UTT2SPK, 9, seed=2)
    with pytest.raises(ValueError, match="not both"):
        sample_trials(UTT2SPK, 3, max_targets=4)
    data = _write_dir(tmp_path / "data")
    out = tmp_path / "trials"
    assert make_trials_bin.main(["--data-dir", str(data), "--out", str(out), "--max-targets", "9999"]) == 0
    assert sum(trial[2] == "target" for trial in read_trials(out)) == NUM_TARGET_PAIRS
    with pytest.raises(SystemExit):
        make_trials_bin.main(["--data-dir", str(data), "--out", str(out), "--max-targets", "3", "--num-targets", "3"])
