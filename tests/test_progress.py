"""Progress lines of long stages when stderr is not a terminal."""

from __future__ import annotations

import logging

import pytest

from speakernet.utils.logging import Progress, format_duration


def test_off_a_terminal_progress_is_a_log_line_with_rate_and_eta(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO):
        with Progress(400, "extracting data/test", "utts", interval_s=0.0) as progress:
            for _ in range(4):
                progress.update(100)
    lines = [record.getMessage() for record in caplog.records]
    # one line per update but the last (the stage logs its own summary then)
    assert len(lines) == 3 and lines[0].startswith("extracting data/test: 100 of 400 utts (25%), ")
    assert all(" utts/s, ETA " in line for line in lines)


def test_quiet_between_intervals(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO):
        progress = Progress(10, "scoring", interval_s=3600.0)
        for _ in range(9):
            progress.update(1)
    assert not caplog.records


def test_format_duration() -> None:
    assert [format_duration(s) for s in (42.4, 185, 3725)] == ["42 s", "3 min 05 s", "1 h 02 min"]


def test_feature_jobs_progress_is_the_sum_of_their_counts(tmp_path, caplog: pytest.LogCaptureFixture) -> None:
    import sys

    from speakernet.features.make_features import _job_paths
    from speakernet.utils.launch import JobRange, LocalLauncher
    from speakernet.utils.stage_jobs import wait_with_progress

    (tmp_path / "log").mkdir()
    # two jobs that report 10, then 30 and 40 utterances done, as the feature jobs do
    script = "import sys, time; p = sys.argv[1]; open(p, 'w').write(sys.argv[2]); time.sleep(0.6); " \
             "open(p, 'w').write(sys.argv[3]); time.sleep(0.6)"
    progress = str(_job_paths(tmp_path, 0)["progress"]).replace(".0.", ".JOB.")
    run = LocalLauncher().start([sys.executable, "-c", script, progress, "10", "JOB0"], tmp_path / "log" / "p.JOB.log",
                                JobRange("JOB", 3, 4))  # last counts 30 and 40
    with caplog.at_level(logging.INFO):
        statuses = wait_with_progress(run, [_job_paths(tmp_path, job)["progress"] for job in (3, 4)], 100,
                                      "features of test", interval_s=0.0)
    assert [(status.job, status.code) for status in statuses] == [(3, 0), (4, 0)]
    lines = [record.getMessage() for record in caplog.records if record.getMessage().startswith("features of")]
    assert lines[0].startswith("features of test: 10 of 100 utts") or lines[0].startswith("features of test: 20 of")
    assert lines[-1].startswith("features of test: 70 of 100 utts (70%)")
    assert not list((tmp_path / "log").glob("*.progress"))  # removed when the jobs are done
