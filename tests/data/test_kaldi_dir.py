"""Readers, writers and KaldiDataDir of speakernet.data.kaldi_dir, and speakernet.data.validate."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from speakernet.data.datadir import KaldiDataDir
from speakernet.data.kaldi_dir import (
    DataDirError,
    DataDirValidationError,
    Segment,
    c_sort_key,
    is_pipe,
    read_feats_scp,
    read_id_list,
    read_scp,
    read_segments,
    read_spk2utt,
    read_trials,
    read_utt2dur,
    read_utt2num_frames,
    read_utt2spk,
    read_vad_scp,
    read_wav_scp,
    utt2spk_to_spk2utt,
    write_scp,
    write_segments,
    write_spk2utt,
    write_trials,
    write_utt2dur,
    write_utt2num_frames,
)
from speakernet.data.validate import validate_data_dir

# ---------------------------------------------------------------------------- round trips


def test_wav_scp_round_trip_keeps_paths_and_pipes_whole(tmp_path: Path) -> None:
    table = {
        "rec2": "sox data/rec2.flac -t wav -r 16000 - |",
        "rec1": "/corpus/wav/rec1.wav",
        "rec3": "ffmpeg -v 8 -i 'dev/aac/id1/x  y.m4a' -f wav -acodec pcm_s16le - |",
    }
    write_scp(tmp_path / "wav.scp", table)
    back = read_wav_scp(tmp_path / "wav.scp")
    assert back == table
    assert list(back) == ["rec1", "rec2", "rec3"]  # written C-sorted
    assert is_pipe(back["rec2"]) and is_pipe(back["rec3"]) and not is_pipe(back["rec1"])
    # internal runs of spaces inside a quoted command survive
    assert "'dev/aac/id1/x  y.m4a'" in back["rec3"]


def test_segments_round_trip_including_minus_one_end(tmp_path: Path) -> None:
    segments = {
        "recA-0001": Segment("recA", 0.0, 2.5),
        "recA-0002": Segment("recA", 2.5, 7.1234567),
        "recB-0001": Segment("recB", 1.0, -1.0),
    }
    write_segments(tmp_path / "segments", segments)
    text = (tmp_path / "segments").read_text()
    assert "recB-0001 recB 1 -1\n" in text
    assert read_segments(tmp_path / "segments") == segments


def test_utt2spk_spk2utt_round_trip(tmp_path: Path) -> None:
    utt2spk = {"b-2": "b", "a-1": "a", "b-1": "b"}
    write_scp(tmp_path / "utt2spk", utt2spk)
    write_spk2utt(tmp_path / "spk2utt", {"b": ["b-2", "b-1"], "a": ["a-1"]})
    assert read_utt2spk(tmp_path / "utt2spk") == utt2spk
    assert read_spk2utt(tmp_path / "spk2utt") == {"a": ["a-1"], "b": ["b-1", "b-2"]}  # lists C-sorted too
    assert (tmp_path / "spk2utt").read_text() == "a a-1\nb b-1 b-2\n"
    assert utt2spk_to_spk2utt(utt2spk) == read_spk2utt(tmp_path / "spk2utt")


def test_numeric_files_round_trip_exactly(tmp_path: Path) -> None:
    frames = {"u1": 1, "u2": 123456}
    durations = {"u1": 12345 / 16000, "u2": 3.0, "u3": 0.1 + 0.2}
    write_utt2num_frames(tmp_path / "utt2num_frames", frames)
    write_utt2dur(tmp_path / "utt2dur", durations)
    assert read_utt2num_frames(tmp_path / "utt2num_frames") == frames
    assert read_utt2dur(tmp_path / "utt2dur") == durations  # exact float equality: no rounding on write


def test_feats_vad_trials_round_trip(tmp_path: Path) -> None:
    feats = {"u2": "exp/feats/fbank.2.ark:17", "u1": "/abs/fbank.1.ark:9"}
    write_scp(tmp_path / "feats.scp", feats)
    write_scp(tmp_path / "vad.scp", feats)
    assert read_feats_scp(tmp_path / "feats.scp") == feats
    assert read_vad_scp(tmp_path / "vad.scp") == feats
    trials = [("z", "a", "target"), ("a", "z", "nontarget")]
    write_trials(tmp_path / "trials", trials)
    assert read_trials(tmp_path / "trials") == trials  # file order kept, not sorted


def test_read_id_list_takes_first_column_and_rejects_repeats(tmp_path: Path) -> None:
    (tmp_path / "list").write_text("b x\na\n\nc y z\n")
    assert read_id_list(tmp_path / "list") == ["b", "a", "c"]
    (tmp_path / "list").write_text("b\na\nb\n")
    with pytest.raises(DataDirError, match=r"list:3 \(key 'b'\)"):
        read_id_list(tmp_path / "list")


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("u1 rec1 0.5 abc", "end time must be a number, got 'abc'"),
        ("u1 rec1 x1 2.0", "start time must be a number"),
        ("u1 rec1 -0.5 2.0", "start time must be >= 0"),
        ("u1 rec1 2.0 1.0", "must be > start time"),
        ("u1 rec1 2.0 2.0", "must be > start time"),
        ("u1 rec1 0 nan", "end time must be finite"),
        ("u1 rec1 0.5", "expected '<utt> <recording> <start_s> <end_s>'"),
    ],
)
def test_read_segments_rejects_bad_lines(tmp_path: Path, line: str, message: str) -> None:
    (tmp_path / "segments").write_text(f"u0 rec1 0 1\n{line}\n")
    with pytest.raises(DataDirError) as info:
        read_segments(tmp_path / "segments")
    assert info.value.line == 2 and info.value.key == "u1"
    assert "segments:2 (key 'u1')" in str(info.value) and message in str(info.value)


@pytest.mark.parametrize(("value", "message"), [("0", "must be > 0"), ("12.5", "must be an integer"), ("", "no value")])
def test_read_utt2num_frames_rejects_bad_values(tmp_path: Path, value: str, message: str) -> None:
    (tmp_path / "utt2num_frames").write_text(f"a 10\nb {value}\n")
    with pytest.raises(DataDirError, match=rf"utt2num_frames:2 \(key 'b'\).*{message}"):
        read_utt2num_frames(tmp_path / "utt2num_frames")


def test_read_utt2spk_rejects_two_speakers_and_duplicates(tmp_path: Path) -> None:
    (tmp_path / "utt2spk").write_text("a s1\nb s1 s2\n")
    with pytest.raises(DataDirError, match=r"utt2spk:2 \(key 'b'\): expected one value"):
        read_utt2spk(tmp_path / "utt2spk")
    (tmp_path / "utt2spk").write_text("a s1\nb s1\na s2\n")
    with pytest.raises(DataDirError, match=r"utt2spk:3 \(key 'a'\): duplicate key \(first on line 1\)"):
        read_scp(tmp_path / "utt2spk")


# ---------------------------------------------------------------------------- C-locale order


def test_c_sort_matches_lc_all_c_sort_not_case_insensitive_order(tmp_path: Path) -> None:
    keys = ["a_b", "aB", "Ab", "a", "B", "_x", "a-b", "ab", "A_b", "b1", "a.b", "Z9"]
    expected = subprocess.run(
        ["sort"], input="\n".join(keys) + "\n", capture_output=True, text=True, check=True,
        env={**os.environ, "LC_ALL": "C"},
    ).stdout.split()
    ours = sorted(keys, key=c_sort_key)
    assert ours == expected
    # upper case before '_' before lower case: not what a case-insensitive (locale-like) sort gives
    assert ours.index("B") < ours.index("_x") < ours.index("a")
    assert ours != sorted(keys, key=str.lower)
    # write_scp writes exactly this order
    write_scp(tmp_path / "utt2spk", {key: "s" for key in keys})
    assert [line.split()[0] for line in (tmp_path / "utt2spk").read_text().splitlines()] == expected
    # Python's default str order is code-point order, which UTF-8 byte order preserves.
    assert sorted([*keys, "é", "ß"]) == sorted([*keys, "é", "ß"], key=c_sort_key)


# ---------------------------------------------------------------------------- KaldiDataDir


def test_data_dir_load_save_round_trip(make_dir, tmp_path: Path) -> None:
    src = make_dir("src")
    data = KaldiDataDir.load(src)
    assert data.utts == ["spkA-u1", "spkA-u2", "spkB-u1", "spkB-u2", "spkC-u1"]
    assert data.speakers == ["spkA", "spkB", "spkC"]
    assert data.utt2num_frames["spkB-u1"] == 90
    assert data.trials[2] == ("spkB", "spkB-u2", "target")
    data.save(tmp_path / "copy")
    for name in ("wav.scp", "utt2spk", "spk2utt", "feats.scp", "vad.scp", "utt2num_frames", "trials"):
        assert (tmp_path / "copy" / name).read_text() == (src / name).read_text(), name
    assert KaldiDataDir.load(tmp_path / "copy") == data
    validate_data_dir(tmp_path / "copy", need_feats=True, need_vad=True, check_trials=True)


def test_data_dir_load_derives_utt2spk_from_spk2utt(make_dir) -> None:
    path = make_dir(utt2spk=None)
    data = KaldiDataDir.load(path)
    assert data.utt2spk == KaldiDataDir.load(make_dir("full")).utt2spk


def test_data_dir_subset_with_segments_keeps_needed_recordings() -> None:
    data = KaldiDataDir(
        utt2spk={"s1-r1-a": "s1", "s1-r1-b": "s1", "s2-r2-a": "s2"},
        wav_scp={"r1": "r1.wav", "r2": "sox r2.flac -t wav - |"},
        segments={"s1-r1-a": Segment("r1", 0, 1), "s1-r1-b": Segment("r1", 1, -1), "s2-r2-a": Segment("r2", 0, 2)},
        trials=[
            ("s1-r1-a", "s2-r2-a", "nontarget"), ("s1", "s1-r1-b", "target"), ("other-enroll", "s1-r1-b", "target"),
        ],
    )
    sub = data.subset(["s1-r1-b", "unknown"], keep_trials=True)
    assert sub.utt2spk == {"s1-r1-b": "s1"}
    assert sub.wav_scp == {"r1": "r1.wav"}
    assert sub.segments == {"s1-r1-b": Segment("r1", 1, -1)}
    # trials that name a dropped utterance go; ids from another dir stay
    assert sub.trials == [("s1", "s1-r1-b", "target"), ("other-enroll", "s1-r1-b", "target")]
    assert data.subset(["s1-r1-b"]).trials is None


# ---------------------------------------------------------------------------- validation


def _problem(path: Path, **kwargs) -> DataDirValidationError:
    with pytest.raises(DataDirValidationError) as info:
        validate_data_dir(path, **kwargs)
    return info.value


def test_valid_dir_passes(make_dir) -> None:
    validate_data_dir(make_dir(), need_feats=True, need_vad=True, check_trials=True)


def test_unsorted_file_names_first_out_of_order_line(make_dir) -> None:
    text = "spkA-u1 audio/a1.wav\nspkB-u1 audio/b1.wav\nspkA-u2 audio/a2.wav\nspkB-u2 b2.wav\nspkC-u1 c1.wav\n"
    error = _problem(make_dir(wav_scp=text))
    assert error.path.endswith("wav.scp") and error.line == 3 and error.key == "spkA-u2"
    assert "wav.scp:3 (key 'spkA-u2')" in str(error) and "not sorted in C-locale order" in str(error)
    assert "after 'spkB-u1' on line 2" in str(error)


def test_lowercase_before_uppercase_is_unsorted_in_c_locale(make_dir) -> None:
    files = {"wav.scp": "a x.wav\nB y.wav\n", "utt2spk": "a a\nB B\n", "spk2utt": "a a\nB B\n"}
    error = _problem(make_dir(files=files))
    assert "wav.scp:2 (key 'B')" in str(error)


def test_missing_spk2utt_entry(make_dir) -> None:
    error = _problem(make_dir(spk2utt="spkA spkA-u1 spkA-u2\nspkC spkC-u1\n"))
    message = str(error)
    assert "utt2spk:3 (key 'spkB-u1')" in message and "speaker 'spkB' has no entry in spk2utt" in message
    assert "utt2spk:4 (key 'spkB-u2')" in message  # every problem is listed


def test_spk2utt_lists_utterance_of_other_speaker(make_dir) -> None:
    error = _problem(make_dir(spk2utt="spkA spkA-u1 spkA-u2 spkB-u1\nspkB spkB-u2\nspkC spkC-u1\n"))
    message = str(error)
    assert "spk2utt:1 (key 'spkA'): utterance 'spkB-u1' belongs to speaker 'spkB' in utt2spk" in message
    assert "utt2spk:3 (key 'spkB-u1'): utterance is not listed under speaker 'spkB'" in message


def test_utterance_without_wav(make_dir) -> None:
    wav = "".join(line + "\n" for line in valid_wav_lines() if not line.startswith("spkB-u2"))
    error = _problem(make_dir(wav_scp=wav))
    assert error.key == "spkB-u2" and error.line == 4
    assert "utt2spk:4 (key 'spkB-u2'): utterance has no entry in wav.scp" in str(error)


def valid_wav_lines() -> list[str]:
    return [f"{utt} audio/{utt}.wav" for utt in ("spkA-u1", "spkA-u2", "spkB-u1", "spkB-u2", "spkC-u1")]


def test_segments_pointing_to_missing_recording(make_dir) -> None:
    segments = "spkA-u1 rec1 0 1.5\nspkA-u2 rec1 1.5 -1\nspkB-u1 rec2 0 2\nspkB-u2 rec9 0 2\nspkC-u1 rec3 0.25 3\n"
    path = make_dir(wav_scp="rec1 rec1.wav\nrec2 rec2.wav\nrec3 sox rec3.flac -t wav - |\n", segments=segments)
    error = _problem(path)
    assert "segments:4 (key 'spkB-u2'): recording 'rec9' is not in wav.scp" in str(error)
    assert len(error.problems) == 1


def test_bad_float_in_segments(make_dir) -> None:
    segments = "spkA-u1 rec1 0 1.5\nspkA-u2 rec1 1,5 3\nspkB-u1 rec2 0 2\nspkB-u2 rec2 2 4\nspkC-u1 rec3 0 3\n"
    path = make_dir(wav_scp="rec1 rec1.wav\nrec2 rec2.wav\nrec3 rec3.wav\n", segments=segments)
    error = _problem(path)
    assert "segments:2 (key 'spkA-u2'): start time must be a number, got '1,5'" in str(error)


def test_duplicate_key(make_dir) -> None:
    text = "spkA-u1 300\nspkA-u2 150\nspkA-u2 151\nspkB-u1 90\nspkB-u2 400\nspkC-u1 250\n"
    error = _problem(make_dir(utt2num_frames=text))
    assert "utt2num_frames:3 (key 'spkA-u2'): duplicate key (first on line 2)" in str(error)


def test_utt2spk_not_sorted_by_speaker(make_dir) -> None:
    files = {
        "wav.scp": "u1 1.wav\nu2 2.wav\nu3 3.wav\n",
        "utt2spk": "u1 bob\nu2 alice\nu3 bob\n",
        "spk2utt": "alice u2\nbob u1 u3\n",
    }
    error = _problem(make_dir(files=files))
    assert error.line == 2 and error.key == "u2"
    assert "'u2' (speaker 'alice') follows 'u1' (speaker 'bob') on line 1" in str(error)
    assert "prefixes of utterance ids" in str(error)


def test_feats_keys_checked_both_ways(make_dir) -> None:
    feats = "spkA-u1 f.ark:9\nspkA-u2 f.ark:99\nspkB-u1 f.ark:199\nspkB-u2 f.ark:299\nspkD-u1 f.ark:399\n"
    frames = "spkA-u1 300\nspkA-u2 150\nspkB-u1 90\nspkB-u2 400\nspkD-u1 250\n"
    vad = feats
    message = str(_problem(make_dir(feats_scp=feats, utt2num_frames=frames, vad_scp=vad)))
    assert "feats.scp:5 (key 'spkD-u1'): utterance is not in utt2spk" in message
    assert "utt2spk:5 (key 'spkC-u1'): utterance has no entry in feats.scp" in message


def test_utt2num_frames_must_match_feats(make_dir) -> None:
    frames = "spkA-u1 300\nspkA-u2 150\nspkB-u1 90\nspkB-u2 400\n"
    error = _problem(make_dir(utt2num_frames=frames))
    assert "feats.scp:5 (key 'spkC-u1'): utterance has no entry in utt2num_frames" in str(error)


def test_required_files(make_dir) -> None:
    message = str(_problem(make_dir(wav_scp=None, feats_scp=None, spk2utt=None), need_vad=True, need_segments=True))
    assert "spk2utt: required file is missing" in message
    assert "segments: required file is missing (need_segments)" in message
    assert "neither wav.scp nor feats.scp exists" in message
    error = _problem(make_dir("no_feats", feats_scp=None, vad_scp=None, utt2num_frames=None), need_feats=True)
    assert "feats.scp: required file is missing (need_feats)" in str(error)


def test_empty_file_blank_line_and_windows_line_ending(make_dir) -> None:
    vad = "spkA-u1 v.ark:9\r\nspkA-u2 v.ark:19\n\nspkB-u1 v.ark:29\nspkB-u2 v.ark:39\nspkC-u1 v.ark:49\n"
    message = str(_problem(make_dir(utt2dur="", vad_scp=vad)))
    assert "utt2dur: file is empty" in message
    assert "vad.scp:1: line ends with a carriage return" in message
    assert "vad.scp:3: blank line" in message


def test_leading_whitespace_and_multiword_speaker(make_dir) -> None:
    text = "spkA-u1 spkA\n spkA-u2 spkA\nspkB-u1 spkB x\nspkB-u2 spkB\nspkC-u1 spkC\n"
    message = str(_problem(make_dir(utt2spk=text)))
    assert "utt2spk:2 (key 'spkA-u2'): line starts with whitespace" in message
    assert "utt2spk:3 (key 'spkB-u1'): expected one value after the key, got 2 fields" in message


def test_trials_checked_only_on_request(make_dir) -> None:
    trials = "spkA-u1 spkB-u1 nontarget\nspkZ spkA-u2 target\nspkA spkC-u9 nontarget\n"
    path = make_dir(trials=trials)
    validate_data_dir(path)  # enrolment may live in another dir
    message = str(_problem(path, check_trials=True))
    assert "trials:2 (key 'spkZ'): enrolment 'spkZ' is neither an utterance nor a speaker" in message
    assert "trials:3 (key 'spkA'): test utterance 'spkC-u9' is not in utt2spk" in message
    bad_label = str(_problem(make_dir("bad_label", trials="spkA-u1 spkB-u1 tgt\n")))
    assert "trials:1 (key 'spkA-u1'): label must be one of" in bad_label


def test_check_files_exist_skips_pipes(make_dir, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # relative paths in scp files are relative to the working directory
    path = make_dir(wav_scp="".join(f"{line} \n" for line in valid_wav_lines()[:4]) + "spkC-u1 cat x.wav |\n")
    (tmp_path / "audio").mkdir()
    for utt in ("spkA-u1", "spkA-u2", "spkB-u1"):
        (tmp_path / "audio" / f"{utt}.wav").write_bytes(b"")
    (tmp_path / "feats").mkdir()
    (tmp_path / "feats" / "fbank.1.ark").write_bytes(b"")
    error = _problem(path, check_files_exist=True)
    message = str(error)
    assert "wav.scp:4 (key 'spkB-u2'): file 'audio/spkB-u2.wav' does not exist" in message
    assert "vad.scp:1 (key 'spkA-u1'): file 'feats/vad.1.ark' does not exist" in message
    assert len(error.problems) == 2  # one per missing file, pipes skipped, feats ark present


def test_error_lists_at_most_max_shown(make_dir) -> None:
    utt2dur = "".join(f"spkZ-u{i} 1.0\n" for i in range(30))
    error = _problem(make_dir(utt2dur=utt2dur), max_shown=5)
    assert len(error.problems) > 5
    assert f"... and {len(error.problems) - 5} more" in str(error)
    assert str(error).startswith(error.problems[0].path)


def test_non_utf8_file_names_line(make_dir) -> None:
    path = make_dir()
    (path / "utt2dur").write_bytes(b"spkA-u1 3.0\nspkA-u2 1.5\nspkB-\xff1 0.9\n")
    with pytest.raises(DataDirError, match=r"utt2dur:3: not UTF-8 text"):
        read_utt2dur(path / "utt2dur")
    assert "utt2dur:3: not UTF-8 text" in str(_problem(path))


def test_trials_with_enrolment_in_another_dir(make_dir, tmp_path: Path) -> None:
    enroll = tmp_path / "enroll"
    enroll.mkdir()
    (enroll / "utt2spk").write_text("spkZ-e1 spkZ-enroll\n")
    path = make_dir(trials="spkZ-enroll spkA-u1 target\nspkZ-e1 spkB-u1 nontarget\nspkA spkA-u2 target\n")
    message = str(_problem(path, check_trials=True, enroll_dir=enroll))
    # an enrolment speaker or utterance of the enrol dir is fine; one of this dir is not
    assert "trials:3 (key 'spkA'): enrolment 'spkA' is neither an utterance nor a speaker of" in message
    assert str(enroll) in message and "trials:1" not in message and "trials:2" not in message


def test_check_trials_without_a_trial_list_is_an_error(make_dir) -> None:
    message = str(_problem(make_dir(trials=None), check_trials=True))
    assert "trials: file does not exist" in message


# ------------------------------------------------- the fast two-column path against the line reader

_READERS = {
    "scp": (read_scp, lambda rng: rng.choice(["/a/b.wav", "x.ark:12", "-3", "0"])),
    "utt2spk": (read_utt2spk, lambda rng: rng.choice(["spk1", "s-2", "ü"])),
    "utt2num_frames": (read_utt2num_frames, lambda rng: rng.choice(["7", "300", "0", "-2", "1.5", "1_000", "x"])),
    "utt2dur": (read_utt2dur, lambda rng: rng.choice(["1.5", "3", "1e-3", "0", "-1", "nan", "inf", "x"])),
}


def _slow_read(reader, path: Path):
    """The line-by-line reader alone (the fast path switched off), as the reference."""
    from speakernet.data import kaldi_lines

    original = kaldi_lines._read_two_fields
    kaldi_lines._read_two_fields = lambda *args: None
    try:
        return reader(path)
    finally:
        kaldi_lines._read_two_fields = original


@pytest.mark.parametrize("kind", list(_READERS))
def test_fast_two_column_reader_agrees_with_the_line_reader(tmp_path: Path, kind: str) -> None:
    import random

    reader, value = _READERS[kind]
    rng = random.Random(kind)
    spaces = [" ", "  ", "\t", " \t"]
    for case in range(150):
        lines = []
        for number in range(rng.randint(0, 6)):
            key = rng.choice([f"u{number}", f"u{number}", "u0"])  # sometimes a duplicate key
            line = f"{key}{rng.choice(spaces)}{value(rng)}"
            roll = rng.random()
            if roll < 0.05:
                line += " extra"  # a third field
            elif roll < 0.08:
                line = key  # no value
            elif roll < 0.1:
                line = ""  # a blank line
            elif roll < 0.12:
                line += "\r"
            elif roll < 0.15:
                line = " " + line
            elif roll < 0.2:
                line += rng.choice(spaces)
            lines.append(line)
        text = "\n".join(lines) + rng.choice(["\n", ""])
        if rng.random() < 0.05:
            text = "\ufeff" + text
        path = tmp_path / f"{kind}{case}"
        path.write_text(text, encoding="utf-8")
        try:
            expected = _slow_read(reader, path)
        except DataDirError as error:
            with pytest.raises(DataDirError) as info:
                reader(path)
            assert str(info.value) == str(error), text
            continue
        got = reader(path)
        assert got == expected and list(got) == list(expected), text
        assert [type(v) for v in got.values()] == [type(v) for v in expected.values()], text
