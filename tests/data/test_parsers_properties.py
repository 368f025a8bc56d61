"""Property-based tests of the Kaldi-file readers and of fix_data_dir (hypothesis).

Whatever the bytes of a file, a reader either returns every non-blank line as an entry, or
raises one DataDirError that names the file (and the line where there is one): never another
exception, never a silently skipped line. Well-formed files written with any of the tolerated
variations (spaces or tabs, CRLF, a BOM, blank lines, trailing whitespace, unicode keys, spaces
inside wav.scp values) read back exactly.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from speakernet.data.datadir_ops import fix_data_dir
from speakernet.data.kaldi_dir import (
    DataDirError,
    read_scp,
    read_segments,
    read_spk2utt,
    read_trials,
    read_utt2dur,
    read_utt2num_frames,
    read_utt2spk,
    read_wav_scp,
)
from speakernet.data.validate import validate_data_dir

# derandomize: the same examples on every run, so CI is reproducible (raise max_examples to search wider)
SETTINGS = settings(max_examples=120, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow])

# Keys: no whitespace (Kaldi's rule), unicode welcome; values of wav.scp may hold spaces.
KEY = st.text(st.characters(blacklist_categories=("Cs", "Cc", "Zs", "Zl", "Zp"), blacklist_characters="\ufeff"),
              min_size=1, max_size=8)
SEPARATOR = st.sampled_from([" ", "  ", "\t", " \t "])
READERS = [read_scp, read_wav_scp, read_utt2spk, read_spk2utt, read_utt2num_frames, read_utt2dur, read_segments,
           read_trials]
# Text from which broken files are made: the characters that break parsers.
NOISE = st.lists(st.sampled_from(list("ab1 2.-\t\r\n\ufeffé\u00a0x") + ["nan", "target", " 3 ", "\n\n"]),
                 max_size=30).map("".join)


def _write(text: str, encoding: str = "utf-8") -> Path:
    handle = tempfile.NamedTemporaryFile("wb", suffix=".txt", delete=False)
    handle.write(text.encode(encoding))
    handle.close()
    return Path(handle.name)


def _lines_with_content(text: str) -> int:
    return sum(1 for line in text.lstrip("\ufeff").split("\n") if line.strip())


@SETTINGS
@given(text=NOISE, reader_index=st.integers(0, len(READERS) - 1))
def test_any_text_is_read_whole_or_refused_with_a_named_error(text: str, reader_index: int) -> None:
    reader = READERS[reader_index]
    path = _write(text)
    try:
        result = reader(path)
    except DataDirError as error:
        assert str(path) in str(error)
        return
    finally:
        path.unlink()
    assert len(result) == _lines_with_content(text), (reader.__name__, text, result)


def _assert_reads_back(reader, table: dict, text: str) -> None:
    path = _write(text)
    try:
        assert reader(path) == table
    finally:
        path.unlink()


@st.composite
def _formatted(draw: st.DrawFn, values: st.SearchStrategy) -> tuple[dict, str]:
    table = draw(st.dictionaries(KEY, values, min_size=1, max_size=6))
    newline = draw(st.sampled_from(["\n", "\r\n"]))
    lines = []
    for key, value in table.items():
        if draw(st.booleans()):
            lines.append(draw(st.sampled_from(["", " ", "\t"])))  # a blank line
        trailing = draw(st.sampled_from(["", " ", "\t"]))
        lines.append(f"{key}{draw(SEPARATOR)}{value}{trailing}")
    text = newline.join(lines) + draw(st.sampled_from(["", newline]))
    if draw(st.booleans()):
        text = "\ufeff" + text
    return table, text


@SETTINGS
@given(case=_formatted(st.integers(1, 10**6)))
def test_utt2num_frames_reads_back(case: tuple[dict, str]) -> None:
    _assert_reads_back(read_utt2num_frames, *case)


@SETTINGS
@given(case=_formatted(st.floats(1e-3, 1e5).map(lambda x: round(x, 3))))
def test_utt2dur_reads_back(case: tuple[dict, str]) -> None:
    _assert_reads_back(read_utt2dur, *case)


# wav.scp values: a path (spaces inside allowed) or a command pipe; never leading/trailing spaces.
WAV_VALUE = st.one_of(
    st.builds(lambda a, b: f"/data/{a} {b}.wav", KEY, KEY),
    st.builds(lambda a: f"ffmpeg -i /d/{a}.m4a -f wav - |", KEY),
    KEY,
)


@SETTINGS
@given(case=_formatted(WAV_VALUE))
def test_wav_scp_reads_back_with_spaces_and_pipes_kept_whole(case: tuple[dict, str]) -> None:
    _assert_reads_back(read_wav_scp, *case)


@SETTINGS
@given(trials=st.lists(st.tuples(KEY, KEY, st.sampled_from(["target", "nontarget"])), min_size=1, max_size=8),
       separator=SEPARATOR, newline=st.sampled_from(["\n", "\r\n"]), bom=st.booleans())
def test_trials_read_back_in_order(trials: list, separator: str, newline: str, bom: bool) -> None:
    text = ("\ufeff" if bom else "") + newline.join(separator.join(trial) for trial in trials) + newline
    path = _write(text)
    try:
        assert read_trials(path) == trials
    finally:
        path.unlink()


@SETTINGS
@given(speakers=st.lists(KEY, min_size=1, max_size=4, unique=True), utts_per=st.integers(1, 3),
       drop=st.sets(st.integers(0, 11)), bom=st.booleans(), newline=st.sampled_from(["\n", "\r\n"]))
def test_fix_data_dir_keeps_exactly_the_complete_utterances(
    speakers: list[str], utts_per: int, drop: set[int], bom: bool, newline: str,
) -> None:
    # utt2spk, wav.scp (paths with spaces) and utt2dur; some utterances missing from wav.scp.
    # BOMs and CRLF endings must not cost an utterance.
    utts = {f"{speaker}-{index}": speaker for speaker in speakers for index in range(utts_per)}
    ordered = sorted(utts)
    with_wav = [utt for position, utt in enumerate(ordered) if position not in drop]
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp)
        prefix = "\ufeff" if bom else ""
        (data / "utt2spk").write_text(prefix + newline.join(f"{u} {s}" for u, s in utts.items()) + newline,
                                      encoding="utf-8")
        (data / "wav.scp").write_text(prefix + newline.join(f"{u} /w/{u} a.wav" for u in with_wav) + newline,
                                      encoding="utf-8")
        (data / "utt2dur").write_text(newline.join(f"{u} 1.5" for u in ordered) + newline, encoding="utf-8")
        speakers_of_kept = {utts[utt] for utt in with_wav}
        if not with_wav:
            with pytest.raises(DataDirError):
                fix_data_dir(data)
            return
        summary = fix_data_dir(data)
        assert summary.num_utts_before == len(utts) and summary.num_utts_after == len(with_wav)
        assert read_utt2spk(data / "utt2spk") == {utt: utts[utt] for utt in with_wav}
        assert read_wav_scp(data / "wav.scp") == {utt: f"/w/{utt} a.wav" for utt in with_wav}
        assert set(read_spk2utt(data / "spk2utt")) == speakers_of_kept
        validate_data_dir(data, check_files_exist=False)
