"""Speaker-disjoint train/eval splits: complete, disjoint, seeded, and refusing to replace the source."""

from __future__ import annotations

from pathlib import Path

import pytest

from speakernet.bin import split_train_eval as split_bin
from speakernet.data.datadir import KaldiDataDir
from speakernet.data.datadir_ops import combine_data
from speakernet.data.kaldi_dir import DataDirValidationError, Segment
from speakernet.data.prepare.pooled import split_speakers
from speakernet.data.split import count_for_fraction, split_train_eval
from speakernet.data.validate import validate_data_dir

NUM_SPEAKERS = 10


def _make_source(path: Path) -> KaldiDataDir:
    """10 speakers with 2-4 segmented utterances, durations, genders and trials within and across speakers."""
    utt2spk = {f"s{s}-u{u}": f"s{s}" for s in range(NUM_SPEAKERS) for u in range(2 + s % 3)}
    data = KaldiDataDir(
        utt2spk=utt2spk,
        wav_scp={f"rec{s}": f"/audio/rec{s}.wav" for s in range(NUM_SPEAKERS)},
        segments={utt: Segment(f"rec{utt[1:].split('-')[0]}", float(u), float(u) + 1.0)
                  for utt in utt2spk for u in [int(utt.rsplit("u", 1)[1])]},
        utt2dur={utt: 1.0 for utt in utt2spk},
        spk2gender={f"s{s}": "mf"[s % 2] for s in range(NUM_SPEAKERS)},
        trials=[(f"s{s}-u0", f"s{s}-u1", "target") for s in range(NUM_SPEAKERS)]
        + [(f"s{s}-u0", f"s{(s + 1) % NUM_SPEAKERS}-u0", "nontarget") for s in range(NUM_SPEAKERS)],
    )
    data.save(path)
    validate_data_dir(path)
    return data


def test_split_is_speaker_disjoint_and_complete(tmp_path: Path) -> None:
    source = _make_source(tmp_path / "all")
    train_speakers, eval_speakers = split_train_eval(tmp_path / "all", tmp_path / "train", tmp_path / "eval",
                                                     eval_speakers=3, seed=1)
    assert len(eval_speakers) == 3 and not set(train_speakers) & set(eval_speakers)
    train, held = KaldiDataDir.load(tmp_path / "train"), KaldiDataDir.load(tmp_path / "eval")
    for out in ("train", "eval"):
        validate_data_dir(tmp_path / out)
    assert set(train.speakers) == set(train_speakers) and set(held.speakers) == set(eval_speakers)
    assert set(train.utt2spk) | set(held.utt2spk) == set(source.utt2spk)
    assert not set(train.utt2spk) & set(held.utt2spk)
    for part in (train, held):  # every file is carried and restricted to the side's utterances
        assert set(part.segments) == set(part.utt2dur) == set(part.utt2spk)
        assert set(part.wav_scp) == {segment.recording for segment in part.segments.values()}
        assert part.spk2gender == {spk: source.spk2gender[spk] for spk in part.speakers}
    assert train.trials is None
    assert held.trials and all(held.utt2spk.get(enroll) and held.utt2spk.get(test) for enroll, test, _ in held.trials)
    assert (tmp_path / "all" / "utt2spk").read_text() == "".join(f"{u} {s}\n" for u, s in
                                                                 sorted(source.utt2spk.items()))


def test_split_is_seeded(tmp_path: Path) -> None:
    _make_source(tmp_path / "all")
    runs = {seed: split_train_eval(tmp_path / "all", tmp_path / f"tr{seed}", tmp_path / f"ev{seed}",
                                   eval_fraction=0.3, seed=seed)[1] for seed in (0, 1)}
    again = split_train_eval(tmp_path / "all", tmp_path / "tr", tmp_path / "ev", eval_fraction=0.3, seed=0)[1]
    assert again == runs[0] and len(again) == 3
    assert (tmp_path / "ev" / "utt2spk").read_bytes() == (tmp_path / "ev0" / "utt2spk").read_bytes()
    assert runs[0] != runs[1]


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"eval_speakers": NUM_SPEAKERS}, f"asked for {NUM_SPEAKERS} eval speakers but .* has {NUM_SPEAKERS}"),
    ({"eval_speakers": 0}, "give 1 to 9"),
    ({"eval_fraction": 1.0}, "strictly between 0 and 1"),
    ({"eval_speakers": 2, "eval_fraction": 0.2}, "exactly one"),
    ({}, "exactly one"),
])
def test_split_bad_sizes(tmp_path: Path, kwargs: dict, message: str) -> None:
    _make_source(tmp_path / "all")
    with pytest.raises(ValueError, match=message):
        split_train_eval(tmp_path / "all", tmp_path / "train", tmp_path / "eval", **kwargs)
    assert not (tmp_path / "train").exists() and not (tmp_path / "eval").exists()


@pytest.mark.parametrize(("train", "evaluation"), [("all", "eval"), ("train", "all"), (".", "eval"),
                                                   ("train", "train"), ("train", "train/eval")])
def test_split_refuses_to_replace_the_source_or_nest_outputs(tmp_path: Path, train: str, evaluation: str) -> None:
    _make_source(tmp_path / "all")
    before = (tmp_path / "all" / "utt2spk").read_bytes()
    with pytest.raises(ValueError, match="replace the source|must be separate"):
        split_train_eval(tmp_path / "all", tmp_path / train, tmp_path / evaluation, eval_speakers=2)
    assert (tmp_path / "all" / "utt2spk").read_bytes() == before


def test_fraction_helpers_keep_the_pooled_split() -> None:
    assert [count_for_fraction(10, f) for f in (0.0, 0.01, 0.3, 0.99, 1.0)] == [0, 1, 3, 9, 10]
    # Known output of pooled.split_speakers (the pooled recipe's speaker lists depend on it).
    assert split_speakers([f"spk{i}" for i in range(8)], 0.25, 3, "librispeech") == {"spk2", "spk5"}


def test_spk2gender_is_validated_and_combined(tmp_path: Path) -> None:
    _make_source(tmp_path / "all")
    split_train_eval(tmp_path / "all", tmp_path / "train", tmp_path / "eval", eval_speakers=4, seed=2)
    combined = combine_data(tmp_path / "again", [tmp_path / "train", tmp_path / "eval"])
    assert combined.spk2gender == KaldiDataDir.load(tmp_path / "all").spk2gender
    (tmp_path / "all" / "spk2gender").write_text("s0 m\ns1 x\n")
    with pytest.raises(DataDirValidationError) as info:
        validate_data_dir(tmp_path / "all")
    text = str(info.value)
    assert "spk2gender:2 (key 's1'): gender must be one of" in text and "speaker has no entry in spk2gender" in text


def test_entry_point(tmp_path: Path) -> None:
    _make_source(tmp_path / "all")
    args = ["--data-dir", str(tmp_path / "all"), "--train-out", str(tmp_path / "train"), "--eval-out",
            str(tmp_path / "eval")]
    assert split_bin.main(args + ["--eval-fraction", "0.2", "--seed", "3"]) == 0
    assert len(KaldiDataDir.load(tmp_path / "eval").speakers) == 2
    assert split_bin.main(args + ["--eval-speakers", "99"]) == 1
    with pytest.raises(SystemExit):
        split_bin.main(args)  # neither --eval-speakers nor --eval-fraction
