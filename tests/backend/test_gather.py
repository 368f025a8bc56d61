"""Gathering results.json of several experiment dirs into one markdown table, and its command."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from speakernet.backend.gather import default_system_names, gather_markdown, parse_metric, read_results
from speakernet.backend.score_files import write_scores
from speakernet.backend.scoring import compute_metrics_files
from speakernet.bin import gather_results
from speakernet.data.kaldi_dir import DataDirError


def _row(model: str, backend: str, trials: str, eer: float, min_dcf: float, llr: bool = False,
         act_dcf: float = 1.0, cllr: float = 1.5) -> dict:
    return {
        "name": f"{model}:{backend}:{trials}", "model": model, "backend": backend, "trials": trials,
        "scores": f"scores/{model}_{backend}_{trials}.score", "llr": llr,
        "num_trials": 3312, "num_targets": 1656, "num_nontargets": 1656, "eer": eer, "eer_threshold": 0.31,
        "min_dcf": {"0.01": min_dcf, "0.05": min_dcf / 2}, "act_dcf": {"0.01": act_dcf, "0.05": act_dcf},
        "cllr": cllr,
    }


def _write_exp(exp_dir: Path, rows: list[dict], p_targets: tuple[float, ...] = (0.01, 0.05)) -> Path:
    exp_dir.mkdir(parents=True)
    (exp_dir / "results.json").write_text(json.dumps({"p_targets": list(p_targets), "rows": rows}, indent=1))
    return exp_dir


ECAPA_ROWS = [
    _row("trained", "cosine", "vox1_O", 0.010694, 0.12344),
    _row("trained", "asnorm", "vox1_O", 0.0095, 0.11021),
    _row("trained", "cosine", "vox1_E", 0.0123, 0.14561),
    _row("trained", "asnorm+qmf", "vox1_O", 0.0091, 0.09871, llr=True, act_dcf=0.10504, cllr=0.23449),
]
RESNET_ROWS = [
    _row("untrained", "cosine", "trials_librispeech", 0.30125, 0.99),
    _row("trained-avg10", "cosine", "vox1_O", 0.0088, 0.0912),
]

# EER in % with 3 decimals, minDCF with 4; columns in first-seen order (vox1_O, vox1_E from ecapa,
# then trials_librispeech from resnet); asnorm and asnorm+qmf have no vox1_E row.
EXPECTED = """\
| system | model         | back-end   | vox1_O EER(%) / minDCF@0.01 | vox1_E EER(%) / minDCF@0.01 | trials_librispeech EER(%) / minDCF@0.01 |
| :----- | :------------ | :--------- | --------------------------: | --------------------------: | --------------------------------------: |
| ecapa  | trained       | cosine     |              1.069 / 0.1234 |              1.230 / 0.1456 |                                       – |
| ecapa  | trained       | asnorm     |              0.950 / 0.1102 |                           – |                                       – |
| ecapa  | trained       | asnorm+qmf |              0.910 / 0.0987 |                           – |                                       – |
| resnet | untrained     | cosine     |                           – |                           – |                         30.125 / 0.9900 |
| resnet | trained-avg10 | cosine     |              0.880 / 0.0912 |                           – |                                       – |
"""  # noqa: E501 (the table as it reads)


@pytest.fixture
def exp_dirs(tmp_path: Path) -> list[Path]:
    return [_write_exp(tmp_path / "exp" / "ecapa", ECAPA_ROWS), _write_exp(tmp_path / "exp" / "resnet", RESNET_ROWS)]


def test_markdown_table_exact(exp_dirs):
    assert gather_markdown(exp_dirs) == EXPECTED
    assert gather_markdown([str(path) for path in exp_dirs], ["eer", "min_dcf@0.01"]) == EXPECTED


def test_read_results_keeps_order_and_keys_dcfs_by_float(exp_dirs):
    rows = read_results(exp_dirs[0])
    assert [row["name"] for row in rows] == [row["name"] for row in ECAPA_ROWS]
    assert rows[0]["min_dcf"] == {0.01: 0.12344, 0.05: 0.06172}
    assert rows[3]["act_dcf"][0.01] == 0.10504 and rows[3]["llr"] is True


def test_act_dcf_and_cllr_only_for_llr_rows(exp_dirs):
    expected = """\
| system | model   | back-end   | vox1_O EER(%) / actDCF@0.01 / Cllr | vox1_E EER(%) / actDCF@0.01 / Cllr |
| :----- | :------ | :--------- | ---------------------------------: | ---------------------------------: |
| ecapa  | trained | cosine     |                      1.069 / – / – |                      1.230 / – / – |
| ecapa  | trained | asnorm     |                      0.950 / – / – |                                  – |
| ecapa  | trained | asnorm+qmf |            0.910 / 0.1050 / 0.2345 |                                  – |
"""
    assert gather_markdown(exp_dirs[:1], ["eer", "act_dcf@0.01", "cllr"]) == expected


def test_second_p_target_and_given_names(exp_dirs):
    table = gather_markdown(exp_dirs, ["min_dcf@0.05"], system_names=["ECAPA", "ResNet34"])
    lines = table.splitlines()
    assert lines[0] == ("| system   | model         | back-end   | vox1_O minDCF@0.05 | vox1_E minDCF@0.05 "
                        "| trials_librispeech minDCF@0.05 |")
    # 0.12344 / 2 = 0.06172; 0.99 / 2 = 0.495
    assert lines[2] == ("| ECAPA    | trained       | cosine     |             0.0617 |             0.0728 "
                        "|                              – |")
    assert lines[5] == ("| ResNet34 | untrained     | cosine     |                  – |                  – "
                        "|                         0.4950 |")
    with pytest.raises(ValueError, match="got 1 system names for 2 experiment dirs"):
        gather_markdown(exp_dirs, system_names=["A"])
    with pytest.raises(ValueError, match="system names must differ, got A more than once"):
        gather_markdown(exp_dirs, system_names=["A", "A"])


def test_duplicate_basenames_take_the_parent(tmp_path):
    vox = _write_exp(tmp_path / "vox" / "ecapa", [_row("trained", "cosine", "vox1_O", 0.01, 0.1)])
    cnceleb = _write_exp(tmp_path / "cn" / "ecapa", [_row("trained", "cosine", "cnceleb_eval", 0.08, 0.4)])
    resnet = _write_exp(tmp_path / "resnet", [_row("trained", "cosine", "vox1_O", 0.02, 0.2)])
    assert default_system_names([vox, cnceleb, resnet]) == ["vox/ecapa", "cn/ecapa", "resnet"]
    assert default_system_names([f"{vox}/", f"{resnet}/."]) == ["ecapa", "resnet"]
    rows = gather_markdown([vox, cnceleb, resnet]).splitlines()[2:]
    assert [row.split("|")[1].strip() for row in rows] == ["vox/ecapa", "cn/ecapa", "resnet"]
    assert rows[1] == ("| cn/ecapa  | trained | cosine   |                           – "
                       "|                    8.000 / 0.4000 |")
    with pytest.raises(ValueError, match="experiment dir given twice"):
        default_system_names([vox, resnet, tmp_path / "vox" / "ecapa"])


def test_missing_dir_and_missing_file_name_the_path(tmp_path):
    with pytest.raises(DataDirError, match=r"nowhere: experiment directory does not exist"):
        read_results(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataDirError, match=r"empty/results\.json: file does not exist$"):
        read_results(tmp_path / "empty")
    (tmp_path / "empty" / "results").write_text("name  #trials  EER(%)\n")
    with pytest.raises(DataDirError, match=r"empty/results\.json: file does not exist \(only the text table"):
        gather_markdown([tmp_path / "empty"])


def test_malformed_json_gives_line_and_column(tmp_path):
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "results.json").write_text('{"p_targets": [0.01],\n "rows": [}\n')
    with pytest.raises(DataDirError,
                       match=r"bad/results\.json:2: not valid JSON: Expecting value \(line 2, column 11\)"):
        read_results(tmp_path / "bad")
    (tmp_path / "bad" / "results.json").write_text('[1, 2]')
    with pytest.raises(DataDirError, match=r"bad/results\.json: top level must be an object"):
        read_results(tmp_path / "bad")
    (tmp_path / "bad" / "results.json").write_text('{"rows": []}')
    with pytest.raises(DataDirError, match=r"bad/results\.json: top-level object lacks key\(s\) p_targets"):
        read_results(tmp_path / "bad")


def test_bad_rows_name_the_file_and_the_row(tmp_path):
    row = _row("trained", "cosine", "vox1_O", 0.01, 0.1)
    del row["eer"], row["cllr"]
    _write_exp(tmp_path / "a", [_row("trained", "asnorm", "vox1_O", 0.01, 0.1), row])
    with pytest.raises(DataDirError, match=r"a/results\.json \(key 'trained:cosine:vox1_O'\): "
                                           r"row 2 lacks key\(s\) eer, cllr$"):
        read_results(tmp_path / "a")

    row = _row("trained", "cosine", "vox1_O", 1.069, 0.1)
    _write_exp(tmp_path / "b", [row])
    with pytest.raises(DataDirError, match=r"b/results\.json \(key 'trained:cosine:vox1_O'\): row 1: 'eer' must be "
                                           r"a fraction in \[0, 1\], got 1\.069 \(a percentage\?\)"):
        read_results(tmp_path / "b")

    row = _row("trained", "cosine", "vox1_O", 0.01, 0.1)
    row["min_dcf"] = {"0.01": 0.1}
    _write_exp(tmp_path / "c", [row])
    with pytest.raises(DataDirError, match=r"c/results\.json \(key 'trained:cosine:vox1_O'\): row 1: 'min_dcf' lacks "
                                           r"p_target\(s\) 0\.05 listed in 'p_targets'"):
        read_results(tmp_path / "c")

    row = _row("trained", "cosine", "vox1_O", 0.01, 0.1)
    _write_exp(tmp_path / "d", [row, dict(row, name="again")])
    with pytest.raises(DataDirError, match=r"d/results\.json \(key 'again'\): row 2 repeats model 'trained', "
                                           r"back-end 'cosine' and trials 'vox1_O' of row 1"):
        read_results(tmp_path / "d")

    _write_exp(tmp_path / "e", [])
    with pytest.raises(DataDirError, match=r"e/results\.json: 'rows' is empty"):
        read_results(tmp_path / "e")


def test_missing_p_target_lists_those_in_the_file(tmp_path, exp_dirs):
    only = _row("trained", "cosine", "vox1_O", 0.01, 0.1)
    only["min_dcf"], only["act_dcf"] = {"0.01": 0.1}, {"0.01": 0.2}
    narrow = _write_exp(tmp_path / "narrow", [only], p_targets=(0.01,))
    assert "1.000 / 0.1000" in gather_markdown([narrow])
    with pytest.raises(DataDirError, match=r"narrow/results\.json: metric 'min_dcf@0.05' asks for p_target 0\.05, "
                                           r"but the file has p_targets 0\.01$"):
        gather_markdown([exp_dirs[0], narrow], ["eer", "min_dcf@0.05"])
    with pytest.raises(DataDirError, match=r"ecapa/results\.json: .*'act_dcf@0.001'.*has p_targets 0\.01, 0\.05$"):
        gather_markdown(exp_dirs, ["act_dcf@0.001"])


def test_metric_choices():
    assert parse_metric("eer") == ("eer", None)
    assert parse_metric("min_dcf@0.01") == ("min_dcf", 0.01)
    assert parse_metric("act_dcf@1e-3") == ("act_dcf", 0.001)
    assert parse_metric("cllr") == ("cllr", None)
    with pytest.raises(ValueError, match=r"unknown metric 'mindcf'; choose from eer, min_dcf@P, act_dcf@P, cllr"):
        parse_metric("mindcf")
    with pytest.raises(ValueError, match=r"metric 'min_dcf' needs a target prior, e.g. min_dcf@0.01"):
        parse_metric("min_dcf")
    with pytest.raises(ValueError, match=r"target prior must be in \(0, 1\), got 5"):
        parse_metric("min_dcf@5")
    with pytest.raises(ValueError, match=r"metric 'eer' takes no target prior"):
        parse_metric("eer@0.01")


def test_reads_what_compute_metrics_writes(tmp_path):
    # Separable scores: EER 0, minDCF 0. One target below one non-target (0.3 < 0.5): the miss and
    # false-alarm rates cross at 1/2, and at p_target 0.01 rejecting the 0.3 target alone costs
    # 0.01 * 1/2, normalised by 0.01: 0.5.
    trials = [("a", "b", "target"), ("a", "c", "target"), ("b", "c", "nontarget"), ("c", "d", "nontarget")]
    write_scores(tmp_path / "good.score", trials, [0.9, 0.8, 0.2, 0.1])
    write_scores(tmp_path / "poor.score", trials, [0.9, 0.3, 0.5, 0.1])
    exp_dir = tmp_path / "exp" / "ecapa"
    compute_metrics_files([tmp_path / "good.score", tmp_path / "poor.score"], exp_dir / "results",
                          names=["trained:cosine:vox1_O", "untrained:cosine:vox1_O"], p_targets=[0.01])
    assert gather_markdown([exp_dir]) == """\
| system | model     | back-end | vox1_O EER(%) / minDCF@0.01 |
| :----- | :-------- | :------- | --------------------------: |
| ecapa  | trained   | cosine   |              0.000 / 0.0000 |
| ecapa  | untrained | cosine   |             50.000 / 0.5000 |
"""


def test_cli_prints_table_and_writes_out(exp_dirs, tmp_path, capsys):
    out = tmp_path / "report" / "RESULTS.md"
    assert gather_results.main([str(path) for path in exp_dirs] + ["--out", str(out)]) == 0
    assert capsys.readouterr().out == EXPECTED
    assert out.read_text() == EXPECTED
    assert [path.name for path in out.parent.iterdir()] == ["RESULTS.md"]  # no temporary file left

    assert gather_results.main([str(exp_dirs[0]), "--metrics", "eer", "cllr", "--names", "ECAPA"]) == 0
    header = capsys.readouterr().out.splitlines()[0]
    assert header == "| system | model   | back-end   | vox1_O EER(%) / Cllr | vox1_E EER(%) / Cllr |"


def test_cli_errors_exit_1_with_one_line(exp_dirs, tmp_path, capsys):
    out = tmp_path / "RESULTS.md"
    missing = tmp_path / "exp" / "missing"
    assert gather_results.main([str(exp_dirs[0]), str(missing), "--out", str(out)]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert not out.exists()
    errors = [line for line in captured.err.splitlines() if " ERROR " in line]
    assert len(errors) == 1 and errors[0].endswith(f"{missing}: experiment directory does not exist")

    assert gather_results.main([str(exp_dirs[0]), "--metrics", "min_dcf@0.5"]) == 1
    assert "has p_targets 0.01, 0.05" in capsys.readouterr().err
    assert gather_results.main([str(exp_dirs[0]), "--metrics", "eer", "dcf"]) == 1
    assert "unknown metric 'dcf'" in capsys.readouterr().err
