"""Progress lines of long stages when stderr is not a terminal."""

from __future__ import annotations

import logging

import pytest

from speakernet.utils.logging import Progress, _clock


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


def test_clock() -> None:
    assert [_clock(s) for s in (42.4, 185, 3725)] == ["42 s", "3 min 05 s", "1 h 02 min"]
