"""VoxCeleb1/2 preparation on tiny fake corpora: exact data dirs and trial lists, and list errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from speakernet.bin import prepare_voxceleb as prepare_voxceleb_bin
from speakernet.data.kaldi_dir import DataDirError
from speakernet.data.prepare.voxceleb import prepare_voxceleb1, prepare_voxceleb2_dev

VOX1_FILES = [
    "id10001/Xyz/00001.wav",
    "id10001/Xyz/00002.wav",
    "id10001/abc/00001.wav",
    "id10270/5r0dWxy17C8/00001.wav",
    "id10270/5r0dWxy17C8/00002.wav",
    "id10270/x-Y_1/00001.wav",
    "id10271/1gtz-CUIygI/00001.wav",
    "id10271/Zz9/00003.wav",
]
VERI_TEST2 = (
    "1 id10270/5r0dWxy17C8/00001.wav id10270/x-Y_1/00001.wav\n"
    "0 id10270/5r0dWxy17C8/00001.wav id10271/1gtz-CUIygI/00001.wav\n"
    "1 id10271/Zz9/00003.wav id10271/1gtz-CUIygI/00001.wav\n"
    "0 id10271/Zz9/00003.wav id10270/5r0dWxy17C8/00002.wav\n"
)


def make_vox1(tmp_path: Path, veri_test2: str | None = VERI_TEST2) -> Path:
    """Writes a VoxCeleb1 tree (empty wavs: only paths are read) with trial lists; returns the root."""
    root = tmp_path / "corpora" / "voxceleb1"
    for relative in VOX1_FILES:
        (root / "wav" / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / "wav" / relative).touch()
    # Also a non-audio file, which the scan ignores.
    (root / "wav" / "id10001" / "Xyz" / "00001.txt").write_text("frames\n")
    if veri_test2 is not None:
        (root / "veri_test2.txt").write_text(veri_test2)
    # E in the parent directory (the default second search place), H under its original name.
    (root.parent / "list_test_all2.txt").write_text(
        "1 id10001/Xyz/00001.wav id10001/abc/00001.wav\n0 id10001/Xyz/00002.wav id10270/x-Y_1/00001.wav\n"
    )
    (root / "list_test_hard.txt").write_text("0 id10001/abc/00001.wav id10271/Zz9/00003.wav\n")
    return root


def read(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def scp_lines(wav: Path, relatives: list[str]) -> str:
    lines = []
    for relative in relatives:
        speaker, video, name = relative.split("/")
        lines.append(f"{speaker}-{video}-{name[:-4]} {wav}/{relative}\n")
    return "".join(lines)


def test_voxceleb1_data_dirs_and_trials_exact(tmp_path: Path) -> None:
    root = make_vox1(tmp_path)
    out = tmp_path / "data"
    written = prepare_voxceleb1(root, out)
    assert sorted(written) == ["vox1_all", "vox1_dev", "vox1_test"]
    wav = (root / "wav").resolve()

    assert read(out / "vox1_dev" / "wav.scp") == scp_lines(wav, VOX1_FILES[:3])
    assert read(out / "vox1_dev" / "utt2spk") == (
        "id10001-Xyz-00001 id10001\nid10001-Xyz-00002 id10001\nid10001-abc-00001 id10001\n"
    )
    assert read(out / "vox1_dev" / "spk2utt") == "id10001 id10001-Xyz-00001 id10001-Xyz-00002 id10001-abc-00001\n"

    assert read(out / "vox1_test" / "wav.scp") == scp_lines(wav, VOX1_FILES[3:])
    assert read(out / "vox1_test" / "utt2spk") == (
        "id10270-5r0dWxy17C8-00001 id10270\n"
        "id10270-5r0dWxy17C8-00002 id10270\n"
        "id10270-x-Y_1-00001 id10270\n"
        "id10271-1gtz-CUIygI-00001 id10271\n"
        "id10271-Zz9-00003 id10271\n"
    )
    assert read(out / "vox1_test" / "spk2utt") == (
        "id10270 id10270-5r0dWxy17C8-00001 id10270-5r0dWxy17C8-00002 id10270-x-Y_1-00001\n"
        "id10271 id10271-1gtz-CUIygI-00001 id10271-Zz9-00003\n"
    )
    # O keeps the list's order and goes with the test speakers.
    assert read(out / "vox1_test" / "trials_vox1_O") == (
        "id10270-5r0dWxy17C8-00001 id10270-x-Y_1-00001 target\n"
        "id10270-5r0dWxy17C8-00001 id10271-1gtz-CUIygI-00001 nontarget\n"
        "id10271-Zz9-00003 id10271-1gtz-CUIygI-00001 target\n"
        "id10271-Zz9-00003 id10270-5r0dWxy17C8-00002 nontarget\n"
    )
    assert sorted(p.name for p in (out / "vox1_test").iterdir()) == ["spk2utt", "trials_vox1_O", "utt2spk", "wav.scp"]

    # E (cleaned, found in root/..) and H (original name) go with all speakers.
    assert read(out / "vox1_all" / "wav.scp") == scp_lines(wav, VOX1_FILES)
    assert read(out / "vox1_all" / "trials_vox1_E") == (
        "id10001-Xyz-00001 id10001-abc-00001 target\nid10001-Xyz-00002 id10270-x-Y_1-00001 nontarget\n"
    )
    assert read(out / "vox1_all" / "trials_vox1_H") == "id10001-abc-00001 id10271-Zz9-00003 nontarget\n"
    assert not (out / "vox1_all" / "trials_vox1_O").exists()


def test_voxceleb1_cleaned_list_preferred_and_trial_dir_option(tmp_path: Path) -> None:
    root = make_vox1(tmp_path)
    (root / "veri_test.txt").write_text("1 id10270/x-Y_1/00001.wav id10270/5r0dWxy17C8/00002.wav\n")
    out = tmp_path / "data"
    prepare_voxceleb1(root, out)
    assert read(out / "vox1_test" / "trials_vox1_O").startswith("id10270-5r0dWxy17C8-00001 id10270-x-Y_1-00001")

    # With an explicit trial-list dir only that dir is searched: the original O list is used,
    # and E/H (elsewhere) are skipped.
    lists = tmp_path / "lists"
    lists.mkdir()
    (lists / "veri_test.txt").write_text("1 id10270/x-Y_1/00001.wav id10270/5r0dWxy17C8/00002.wav\n")
    prepare_voxceleb1(root, out, trial_lists_dir=lists)
    assert read(out / "vox1_test" / "trials_vox1_O") == "id10270-x-Y_1-00001 id10270-5r0dWxy17C8-00002 target\n"
    assert sorted(p.name for p in (out / "vox1_all").iterdir()) == ["spk2utt", "utt2spk", "wav.scp"]


def test_voxceleb1_cleaned_e_and_h_lists_win_over_the_originals(tmp_path: Path) -> None:
    root = make_vox1(tmp_path)
    # Both names of each list side by side, with different trials: the cleaned ("2") ones must be read.
    (root.parent / "list_test_all.txt").write_text("0 id10001/Xyz/00001.wav id10270/x-Y_1/00001.wav\n")
    (root / "list_test_hard2.txt").write_text("1 id10001/Xyz/00002.wav id10001/abc/00001.wav\n")
    out = tmp_path / "data"
    prepare_voxceleb1(root, out)
    assert read(out / "vox1_all" / "trials_vox1_E").startswith("id10001-Xyz-00001 id10001-abc-00001 target\n")
    assert read(out / "vox1_all" / "trials_vox1_H") == "id10001-Xyz-00002 id10001-abc-00001 target\n"


def test_voxceleb1_meta_decides_test_speakers(tmp_path: Path) -> None:
    root = make_vox1(tmp_path)
    (root / "vox1_meta.csv").write_text(
        "VoxCeleb1 ID\tVGGFace1 ID\tGender\tNationality\tSet\n"
        "id10001\tA.J._Buckley\tm\tIreland\tdev\n"
        "id10270\tEoin_Macken\tm\tIreland\ttest\n"
        "id10271\tLiam_Neeson\tm\tUK\tdev\n"
    )
    # id10271 is a dev speaker by the meta file, so the O list's line 2 is an error.
    with pytest.raises(DataDirError) as info:
        prepare_voxceleb1(root, tmp_path / "data")
    message = str(info.value)
    assert "veri_test2.txt:2" in message and "id10271-1gtz-CUIygI-00001" in message
    assert not (tmp_path / "data").exists()

    (root / "veri_test2.txt").write_text("1 id10270/5r0dWxy17C8/00001.wav id10270/x-Y_1/00001.wav\n")
    prepare_voxceleb1(root, tmp_path / "data")
    assert read(tmp_path / "data" / "vox1_test" / "spk2utt").startswith("id10270 ")
    assert "id10271" in read(tmp_path / "data" / "vox1_dev" / "spk2utt")


def test_voxceleb1_missing_wav_names_file_line_key(tmp_path: Path) -> None:
    bad = VERI_TEST2.replace("1 id10271/Zz9/00003.wav", "1 id10271/Zz9/00009.wav")
    root = make_vox1(tmp_path, veri_test2=bad)
    with pytest.raises(DataDirError) as info:
        prepare_voxceleb1(root, tmp_path / "data")
    assert info.value.path == str(root / "veri_test2.txt")
    assert info.value.line == 3
    assert info.value.key == "id10271-Zz9-00009"
    assert "veri_test2.txt:3 (key 'id10271-Zz9-00009')" in str(info.value)

    # With allow_missing the line is dropped and the rest kept in order.
    prepare_voxceleb1(root, tmp_path / "data", allow_missing=True)
    assert read(tmp_path / "data" / "vox1_test" / "trials_vox1_O") == (
        "id10270-5r0dWxy17C8-00001 id10270-x-Y_1-00001 target\n"
        "id10270-5r0dWxy17C8-00001 id10271-1gtz-CUIygI-00001 nontarget\n"
        "id10271-Zz9-00003 id10270-5r0dWxy17C8-00002 nontarget\n"
    )


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("2 id10270/5r0dWxy17C8/00001.wav id10270/x-Y_1/00001.wav", "label must be 1 or 0"),
        ("1 id10270/5r0dWxy17C8/00001.wav", "got 2 fields"),
        ("1 id10270/00001.wav id10270/x-Y_1/00001.wav", "expected '<spk>/<video>/<utt>.wav'"),
    ],
)
def test_voxceleb1_malformed_trial_line(tmp_path: Path, line: str, message: str) -> None:
    root = make_vox1(tmp_path)
    (root / "list_test_hard.txt").write_text("0 id10001/abc/00001.wav id10271/Zz9/00003.wav\n" + line + "\n")
    with pytest.raises(DataDirError, match=message) as info:
        prepare_voxceleb1(root, tmp_path / "data")
    assert "list_test_hard.txt:2" in str(info.value)


def test_voxceleb1_without_meta_or_o_list_fails(tmp_path: Path) -> None:
    root = make_vox1(tmp_path, veri_test2=None)
    with pytest.raises(FileNotFoundError, match="test speakers"):
        prepare_voxceleb1(root, tmp_path / "data")


def test_voxceleb2_dev_ffmpeg_pipes(tmp_path: Path) -> None:
    root = tmp_path / "vox 2"  # a space, so the pipe must quote the path
    aac = root / "dev" / "aac"
    for relative in ["id00012/21Uxsk56VDQ/00001.m4a", "id00012/21Uxsk56VDQ/00002.m4a", "id00015/0fijmz4vTVU/00001.m4a"]:
        (aac / relative).parent.mkdir(parents=True, exist_ok=True)
        (aac / relative).touch()
    out = tmp_path / "data"
    expected_scp = "".join(
        f"{utt} ffmpeg -nostdin -v error -i '{aac.resolve()}/{relative}' -ac 1 -ar 16000 -f wav - |\n"
        for utt, relative in [
            ("id00012-21Uxsk56VDQ-00001", "id00012/21Uxsk56VDQ/00001.m4a"),
            ("id00012-21Uxsk56VDQ-00002", "id00012/21Uxsk56VDQ/00002.m4a"),
            ("id00015-0fijmz4vTVU-00001", "id00015/0fijmz4vTVU/00001.m4a"),
        ]
    )
    for given in (root, aac):  # the corpus root or dev/aac itself
        path = prepare_voxceleb2_dev(given, out)
        assert path == out / "vox2_dev"
        assert read(path / "wav.scp") == expected_scp
        assert read(path / "utt2spk") == (
            "id00012-21Uxsk56VDQ-00001 id00012\nid00012-21Uxsk56VDQ-00002 id00012\nid00015-0fijmz4vTVU-00001 id00015\n"
        )
        assert read(path / "spk2utt") == (
            "id00012 id00012-21Uxsk56VDQ-00001 id00012-21Uxsk56VDQ-00002\nid00015 id00015-0fijmz4vTVU-00001\n"
        )


def test_voxceleb2_dev_without_audio_fails(tmp_path: Path) -> None:
    (tmp_path / "vox2" / "dev" / "aac").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="no VoxCeleb2 audio"):
        prepare_voxceleb2_dev(tmp_path / "vox2", tmp_path / "data")


def test_prepare_voxceleb_entry_point(tmp_path: Path) -> None:
    root = make_vox1(tmp_path)
    out = tmp_path / "data"
    assert prepare_voxceleb_bin.main(["--voxceleb1-root", str(root), "--out-dir", str(out)]) == 0
    assert (out / "vox1_test" / "trials_vox1_O").is_file()
    (root / "veri_test2.txt").write_text("1 id10270/nope/00001.wav id10270/x-Y_1/00001.wav\n")
    assert prepare_voxceleb_bin.main(["--voxceleb1-root", str(root), "--out-dir", str(out)]) == 1
    assert prepare_voxceleb_bin.main(["--out-dir", str(out)]) == 2
