"""fix/subset/combine/split of speakernet.data.datadir_ops, the tools/*.sh wrappers and parse_options.sh."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from speakernet.data.datadir_ops import (
    combine_data,
    fix_data_dir,
    split_data_dir,
    subset_data_dir,
)
from speakernet.data.datadir import KaldiDataDir
from speakernet.data.kaldi_dir import DataDirError, Segment, read_trials
from speakernet.data.validate import validate_data_dir

REPO = Path(__file__).resolve().parents[2]
TOOLS = REPO / "tools"


def _make_big_dir(root: Path, name: str, utts_per_spk: dict[str, int], prefix: str = "") -> Path:
    data = KaldiDataDir()
    for spk, count in utts_per_spk.items():
        for index in range(count):
            utt = f"{prefix}{spk}-{index:03d}"
            data.utt2spk[utt] = f"{prefix}{spk}"
    data.wav_scp = {utt: f"wav/{utt}.wav" for utt in data.utt2spk}
    data.utt2num_frames = {utt: 100 + 10 * i for i, utt in enumerate(data.utts)}
    data.save(root / name)
    return root / name


# ---------------------------------------------------------------------------- fix_data_dir


def test_fix_data_dir_keeps_utterances_present_everywhere(make_dir) -> None:
    path = make_dir(
        # spkB-u2 lacks features; spkC-u1 lacks a wav; wav.scp has an extra recording; files unsorted
        feats_scp="spkA-u2 f.ark:19\nspkA-u1 f.ark:9\nspkB-u1 f.ark:29\nspkC-u1 f.ark:49\n",
        wav_scp="spkA-u1 a1.wav\nspkA-u2 a2.wav\nspkB-u1 b1.wav\nspkB-u2 b2.wav\nspkX-u1 x.wav\n",
    )
    old_feats = (path / "feats.scp").read_text()
    summary = fix_data_dir(path)
    assert summary.num_utts_before == 5 and summary.num_utts_after == 3
    assert summary.num_speakers_removed == 1  # spkC had only spkC-u1
    assert summary.missing_from == {"wav.scp": 1, "feats.scp": 1}
    assert summary.extra_entries == {"wav.scp": 1}
    assert (path / "utt2spk").read_text() == "spkA-u1 spkA\nspkA-u2 spkA\nspkB-u1 spkB\n"
    assert (path / "spk2utt").read_text() == "spkA spkA-u1 spkA-u2\nspkB spkB-u1\n"
    assert (path / "feats.scp").read_text() == "spkA-u1 f.ark:9\nspkA-u2 f.ark:19\nspkB-u1 f.ark:29\n"
    assert (path / "wav.scp").read_text().splitlines()[-1] == "spkB-u1 b1.wav"
    # trials naming removed utterances or speakers are dropped
    assert (path / "trials").read_text() == "spkA-u1 spkB-u1 nontarget\nspkA-u1 spkA-u2 target\n"
    assert (path / ".backup" / "feats.scp").read_text() == old_feats
    assert "feats.scp" in summary.changed_files and "utt2spk" in summary.changed_files
    validate_data_dir(path, need_feats=True, need_vad=True)
    # a second run has nothing to do
    again = fix_data_dir(path)
    assert again.changed_files == [] and again.num_utts_after == 3


def test_fix_data_dir_with_segments_drops_missing_and_unused_recordings(make_dir) -> None:
    segments = "spkA-u1 rec1 0 1.5\nspkA-u2 rec1 1.5 -1\nspkB-u1 rec9 0 2\nspkB-u2 rec2 0 2\nspkC-u1 rec2 2 3\n"
    path = make_dir(wav_scp="rec1 rec1.wav\nrec2 rec2.wav\nrec3 rec3.wav\n", segments=segments)
    summary = fix_data_dir(path)
    assert summary.missing_from == {"wav.scp": 1}
    assert (path / "wav.scp").read_text() == "rec1 rec1.wav\nrec2 rec2.wav\n"
    assert "spkB-u1" not in (path / "segments").read_text()
    validate_data_dir(path)


def test_fix_data_dir_refuses_duplicate_keys(make_dir) -> None:
    path = make_dir(utt2num_frames="spkA-u1 3\nspkA-u1 4\n")
    with pytest.raises(DataDirError, match=r"utt2num_frames:2 \(key 'spkA-u1'\): duplicate key"):
        fix_data_dir(path)


# ---------------------------------------------------------------------------- subset_data_dir


def test_subset_by_lists_and_counts(make_dir, tmp_path: Path) -> None:
    src = make_dir("src")
    sub = subset_data_dir(src, tmp_path / "by_utt", utt_list=["spkB-u2", "spkA-u1", "nosuch"])
    assert sub.utts == ["spkA-u1", "spkB-u2"]
    assert (tmp_path / "by_utt" / "spk2utt").read_text() == "spkA spkA-u1\nspkB spkB-u2\n"
    assert (tmp_path / "by_utt" / "trials").read_text() == "spkB spkB-u2 target\n"
    validate_data_dir(tmp_path / "by_utt", need_feats=True, need_vad=True, check_trials=True)

    sub = subset_data_dir(src, tmp_path / "by_spk", spk_list=["spkB", "spkC"])
    assert sub.speakers == ["spkB", "spkC"] and len(sub.utts) == 3

    sub = subset_data_dir(src, tmp_path / "first2", num_utts=2, first=True)
    assert sub.utts == ["spkA-u1", "spkA-u2"]

    sub = subset_data_dir(src, tmp_path / "per_spk", per_spk=1, first=True)
    assert sub.utts == ["spkA-u1", "spkB-u1", "spkC-u1"]


def test_subset_random_choice_is_seeded(tmp_path: Path) -> None:
    src = _make_big_dir(tmp_path, "src", {"s1": 30, "s2": 30, "s3": 5})
    one = subset_data_dir(src, tmp_path / "a", num_utts=20, seed=3).utts
    two = subset_data_dir(src, tmp_path / "b", num_utts=20, seed=3).utts
    other = subset_data_dir(src, tmp_path / "c", num_utts=20, seed=4).utts
    assert one == two and one != other and len(set(one)) == 20
    per_spk = subset_data_dir(src, tmp_path / "d", per_spk=10, seed=0)
    assert {spk: len(utts) for spk, utts in per_spk.spk2utt.items()} == {"s1": 10, "s2": 10, "s3": 5}
    assert per_spk.spk2utt["s1"] != [f"s1-{i:03d}" for i in range(10)]  # random, not the first ten
    validate_data_dir(tmp_path / "d")


def test_subset_errors(make_dir, tmp_path: Path) -> None:
    src = make_dir("src")
    with pytest.raises(ValueError, match="only 5 candidates"):
        subset_data_dir(src, tmp_path / "x", num_utts=6)
    with pytest.raises(ValueError, match="is the source dir"):
        subset_data_dir(src, src, num_utts=1)
    with pytest.raises(ValueError, match="needs utt_list"):
        subset_data_dir(src, tmp_path / "x")
    with pytest.raises(ValueError, match="is empty"):
        subset_data_dir(src, tmp_path / "x", utt_list=["nosuch"])
    assert not (tmp_path / "x").exists()


# ---------------------------------------------------------------------------- combine_data


def test_combine_data_merges_and_fills_segments(tmp_path: Path) -> None:
    first = KaldiDataDir(
        utt2spk={"a-1": "a", "a-2": "a"}, wav_scp={"rec": "rec.wav"},
        segments={"a-1": Segment("rec", 0, 1), "a-2": Segment("rec", 1, 2)},
        utt2num_frames={"a-1": 100, "a-2": 100}, utt2dur={"a-1": 1.0, "a-2": 1.0},
    )
    second = KaldiDataDir(utt2spk={"b-1": "b", "a-3": "a"}, wav_scp={"b-1": "sox b.flac -t wav - |", "a-3": "a3.wav"},
                          utt2num_frames={"b-1": 50, "a-3": 70})
    first.save(tmp_path / "one")
    second.save(tmp_path / "two")
    combined = combine_data(tmp_path / "all", [tmp_path / "one", tmp_path / "two"])
    assert combined.utts == ["a-1", "a-2", "a-3", "b-1"]
    assert combined.segments["b-1"] == Segment("b-1", 0, -1)  # whole recording
    assert combined.wav_scp["b-1"] == "sox b.flac -t wav - |"
    assert combined.utt2num_frames == {"a-1": 100, "a-2": 100, "b-1": 50, "a-3": 70}
    assert combined.utt2dur is None and not (tmp_path / "all" / "utt2dur").exists()  # not in every source
    assert (tmp_path / "all" / "spk2utt").read_text() == "a a-1 a-2 a-3\nb b-1\n"
    validate_data_dir(tmp_path / "all")


def test_combine_data_rejects_duplicate_utterance_naming_both_dirs(make_dir, tmp_path: Path) -> None:
    one, two = make_dir("one"), make_dir("two")
    with pytest.raises(DataDirError) as info:
        combine_data(tmp_path / "all", [one, two])
    message = str(info.value)
    assert str(one) in message and str(two) in message
    assert info.value.key == "spkA-u1" and info.value.line == 1 and "utt2spk:1" in message
    assert not (tmp_path / "all").exists()


# ---------------------------------------------------------------------------- split_data_dir


def test_split_by_utterance_is_balanced_and_complete(tmp_path: Path) -> None:
    src = _make_big_dir(tmp_path, "data", {"s1": 4, "s2": 3, "s3": 3})
    parts = split_data_dir(src, 3)
    assert parts == [src / "split3" / str(job) for job in (1, 2, 3)]
    loaded = [KaldiDataDir.load(part) for part in parts]
    assert [len(part.utt2spk) for part in loaded] == [4, 3, 3]
    assert sorted(utt for part in loaded for utt in part.utts) == KaldiDataDir.load(src).utts
    for part in parts:
        validate_data_dir(part)
        assert set(KaldiDataDir.load(part).utt2num_frames) == set(KaldiDataDir.load(part).utt2spk)


def test_split_by_speaker_keeps_speakers_whole_and_balances(tmp_path: Path) -> None:
    src = _make_big_dir(tmp_path, "data", {"s1": 6, "s2": 5, "s3": 4, "s4": 3, "s5": 3, "s6": 2, "s7": 1})
    parts = split_data_dir(src, 3, by_speaker=True)
    loaded = [KaldiDataDir.load(part) for part in parts]
    sizes = [len(part.utt2spk) for part in loaded]
    assert sorted(sizes) == [8, 8, 8]  # 24 utterances: greedy largest-first reaches the optimum here
    owners: dict[str, int] = {}
    for job, part in enumerate(loaded):
        for spk in part.speakers:
            assert spk not in owners, f"speaker {spk} split across parts"
            owners[spk] = job
    assert len(owners) == 7
    with pytest.raises(ValueError, match="7 speakers"):
        split_data_dir(src, 8, by_speaker=True)
    # one speaker larger than a fair share: parts stay within one speaker's size of each other
    skewed = _make_big_dir(tmp_path, "skewed", {"s1": 9, "s2": 5, "s3": 4, "s4": 3, "s5": 2, "s6": 1})
    sizes = [len(KaldiDataDir.load(part).utt2spk) for part in split_data_dir(skewed, 3, by_speaker=True)]
    assert sizes == [9, 8, 7]


def test_split_is_deterministic_and_skips_up_to_date(tmp_path: Path) -> None:
    src = _make_big_dir(tmp_path, "data", {"s1": 5, "s2": 5})
    parts = split_data_dir(src, 2)
    marker = parts[0] / "utt2spk"
    stamp = marker.stat().st_mtime_ns
    first_content = [(part / "utt2spk").read_text() for part in parts]
    assert split_data_dir(src, 2) == parts
    assert marker.stat().st_mtime_ns == stamp  # not rewritten
    # another mode or a changed source rewrites it
    split_data_dir(src, 2, by_speaker=True)
    assert (parts[0] / "spk2utt").read_text().count("\n") == 1
    split_data_dir(src, 2)
    assert [(part / "utt2spk").read_text() for part in parts] == first_content  # deterministic
    data = KaldiDataDir.load(src)
    data.utt2spk = {utt: spk for utt, spk in data.utt2spk.items() if utt != "s1-000"}
    data.utt2num_frames.pop("s1-000")
    data.wav_scp.pop("s1-000")
    data.save(src)
    parts = split_data_dir(src, 2)
    assert "s1-000" not in (parts[0] / "utt2spk").read_text()
    assert sum(len(KaldiDataDir.load(part).utt2spk) for part in parts) == 9


# ---------------------------------------------------------------------------- shell wrappers


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHON": sys.executable}
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=60)


def test_validate_data_dir_sh(make_dir, tmp_path: Path) -> None:
    good = make_dir("good")
    assert _run(["bash", str(TOOLS / "validate_data_dir.sh"), "--need-feats", str(good)], tmp_path).returncode == 0
    bad = make_dir("bad", utt2spk="spkA-u2 spkA\nspkA-u1 spkA\nspkB-u1 spkB\nspkB-u2 spkB\nspkC-u1 spkC\n")
    result = _run(["bash", str(TOOLS / "validate_data_dir.sh"), str(bad)], tmp_path)
    assert result.returncode == 1
    assert "utt2spk:2 (key 'spkA-u1'): not sorted" in result.stderr


def test_fix_data_dir_sh(make_dir, tmp_path: Path) -> None:
    path = make_dir(spk2utt=None, utt2dur="spkA-u1 3.0\n")
    result = _run(["bash", str(TOOLS / "fix_data_dir.sh"), str(path)], tmp_path)
    assert result.returncode == 0, result.stderr
    assert "kept 1 of 5 utterances" in result.stderr
    assert (path / "spk2utt").read_text() == "spkA spkA-u1\n"


def test_subset_data_dir_sh(make_dir, tmp_path: Path) -> None:
    src = make_dir("src")
    (tmp_path / "spk.list").write_text("spkC\nspkA\n")
    result = _run(["bash", str(TOOLS / "subset_data_dir.sh"), "--spk-list", "spk.list", "--per-spk", "1", "--first",
                   str(src), "sub"], tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "sub" / "utt2spk").read_text() == "spkA-u1 spkA\nspkC-u1 spkC\n"


def test_combine_data_sh(tmp_path: Path) -> None:
    _make_big_dir(tmp_path, "one", {"s1": 2})
    _make_big_dir(tmp_path, "two", {"s2": 3})
    result = _run(["bash", str(TOOLS / "combine_data.sh"), "all", "one", "two"], tmp_path)
    assert result.returncode == 0, result.stderr
    assert KaldiDataDir.load(tmp_path / "all").speakers == ["s1", "s2"]
    result = _run(["bash", str(TOOLS / "combine_data.sh"), "again", "one", "one"], tmp_path)
    assert result.returncode == 1 and "utterance id is also in one" in result.stderr


def test_split_data_dir_sh(tmp_path: Path) -> None:
    _make_big_dir(tmp_path, "data", {"s1": 3, "s2": 3, "s3": 2})
    result = _run(["bash", str(TOOLS / "split_data_dir.sh"), "--by-speaker", "data", "2"], tmp_path)
    assert result.returncode == 0, result.stderr
    sizes = sorted(len(KaldiDataDir.load(tmp_path / "data" / "split2" / job).utt2spk) for job in ("1", "2"))
    assert sizes == [3, 5]


# ---------------------------------------------------------------------------- parse_options.sh


PARSE_SCRIPT = """\
set -euo pipefail
nj=4
use_gpu=false
data_dir=
help_message="Usage: demo.sh [--nj N] [--use-gpu true|false] <dir>"
. "{parse}"
echo "nj=$nj use_gpu=$use_gpu data_dir=$data_dir"
printf 'arg=%s\\n' "$@"
"""


@pytest.mark.parametrize(
    ("args", "code", "stdout", "stderr"),
    [
        (["--nj", "8", "--use-gpu", "true", "--data-dir", "a b", "x", "--nj"], 0,
         "nj=8 use_gpu=true data_dir=a b\narg=x\narg=--nj\n", ""),
        (["--nj=2", "--", "--not-an-option"], 0, "nj=2 use_gpu=false data_dir=\narg=--not-an-option\n", ""),
        (["--help"], 0, "Usage: demo.sh [--nj N] [--use-gpu true|false] <dir>\n", ""),
        (["--num-jobs", "3", "x"], 1, "", "unknown option --num-jobs"),
        (["--use-gpu", "yes"], 1, "", "option --use-gpu takes true or false, got 'yes'"),
        (["x", "--nj"], 0, "nj=4 use_gpu=false data_dir=\narg=x\narg=--nj\n", ""),
        (["--nj"], 1, "", "option --nj needs a value"),
        (["--bad.name", "1"], 1, "", "unknown option --bad.name"),
    ],
)
def test_parse_options(tmp_path: Path, args: list[str], code: int, stdout: str, stderr: str) -> None:
    script = tmp_path / "demo.sh"
    script.write_text(PARSE_SCRIPT.format(parse=TOOLS / "parse_options.sh"))
    result = subprocess.run(["bash", str(script), *args], capture_output=True, text=True, timeout=30)
    assert result.returncode == code, result.stderr
    assert result.stdout == stdout
    assert stderr in result.stderr
    if code == 1:
        assert result.stdout == ""  # nothing after the failing parse ran


def test_frontend_record_travels_with_subsets_splits_and_agreeing_combinations(tmp_path: Path) -> None:
    record = '{"fbank": {"num_mel_bins": 80}, "vad": {}}'
    for name, utts in (("one", {"a-1": "a", "a-2": "a"}), ("two", {"b-1": "b", "b-2": "b"})):
        KaldiDataDir(utt2spk=utts, wav_scp={u: f"{u}.wav" for u in utts}).save(tmp_path / name)
        (tmp_path / name / "frontend.json").write_text(record)
    subset_data_dir(tmp_path / "one", tmp_path / "sub", num_utts=1, first=True)
    assert (tmp_path / "sub" / "frontend.json").read_text() == record
    for part in split_data_dir(tmp_path / "one", 2):
        assert (part / "frontend.json").read_text() == record
    combine_data(tmp_path / "both", [tmp_path / "one", tmp_path / "two"])
    assert (tmp_path / "both" / "frontend.json").read_text() == record
    # features made with other options cannot be combined into one feature set
    (tmp_path / "two" / "frontend.json").write_text(record.replace("80", "40"))
    (tmp_path / "one" / "feats.scp").write_text("a-1 one.ark:5\na-2 one.ark:900\n")
    (tmp_path / "two" / "feats.scp").write_text("b-1 two.ark:5\nb-2 two.ark:900\n")
    with pytest.raises(DataDirError, match="frontend.json.*differs from"):
        combine_data(tmp_path / "mixed", [tmp_path / "one", tmp_path / "two"])
    assert not (tmp_path / "mixed").exists()


def test_a_byte_order_mark_is_named_by_the_validator_and_loses_no_utterance(tmp_path: Path) -> None:
    data = tmp_path / "bom"
    data.mkdir()
    bom = "\ufeff"
    (data / "wav.scp").write_text(f"{bom}u1 /x/a.wav\nu2 /x/b.wav\n", encoding="utf-8")  # as Notepad saves it
    (data / "utt2spk").write_text(f"{bom}u1 s1\nu2 s1\n", encoding="utf-8")
    (data / "spk2utt").write_text("s1 u1 u2\n", encoding="utf-8")
    (data / "trials").write_text(f"{bom}u1 u2 target\n", encoding="utf-8")
    with pytest.raises(DataDirError, match=r"utt2spk:1: starts with a UTF-8 byte-order mark"):
        validate_data_dir(data)
    assert read_trials(data / "trials") == [("u1", "u2", "target")]
    summary = fix_data_dir(data)
    assert summary.num_utts_after == summary.num_utts_before == 2
    assert (data / "utt2spk").read_text(encoding="utf-8") == "u1 s1\nu2 s1\n"
    validate_data_dir(data)
