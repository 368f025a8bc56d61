"""Gathering the ``results.json`` of several experiment dirs into one markdown table.

Every experiment dir ``exp/A/`` holds, next to its text table ``results``, a machine-readable
``results.json``::

    {"p_targets": [0.01, 0.05],
     "rows": [{"name": "trained:asnorm:trials", "model": "trained", "backend": "asnorm",
               "trials": "trials", "scores": "exp/A/scores/trials.score", "llr": false,
               "num_trials": 3312, "num_targets": 1656, "num_nontargets": 1656,
               "eer": 0.11055, "eer_threshold": 0.31,
               "min_dcf": {"0.01": 0.93, "0.05": 0.71}, "act_dcf": {"0.01": 1.0, "0.05": 1.0},
               "cllr": 1.2}, ...]}

``eer`` is a fraction; ``llr`` says the scores are calibrated log-likelihood ratios, the only
ones for which actDCF and Cllr mean something, so the table shows those two for ``llr`` rows only.

:func:`gather_markdown` pivots the rows: one table row per (system, model, back-end), one
column per trial list, each cell the requested metrics joined by `` / ``, e.g. ``1.069 / 0.1234``.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path

from speakernet.data.kaldi_dir import DataDirError
from speakernet.utils.fileio import PathLike

logger = logging.getLogger(__name__)

RESULTS_JSON = "results.json"
DEFAULT_METRICS = ("eer", "min_dcf@0.01")
METRIC_CHOICES = "eer, min_dcf@P, act_dcf@P, cllr (P a target prior in (0, 1), e.g. min_dcf@0.01)"
MISSING_CELL = "–"  # en dash: no row for that trial list, or a metric not meaningful for the row
UNNAMED_TRIALS = "(unnamed trials)"  # column of rows whose name did not split into model:backend:trials

_TEXT_KEYS = ("name", "model", "backend", "trials", "scores")
_COUNT_KEYS = ("num_trials", "num_targets", "num_nontargets")
_ROW_KEYS = _TEXT_KEYS + ("llr",) + _COUNT_KEYS + ("eer", "eer_threshold", "min_dcf", "act_dcf", "cllr")
_METRIC_LABELS = {"eer": "EER(%)", "min_dcf": "minDCF", "act_dcf": "actDCF", "cllr": "Cllr"}


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _format_keys(keys: Sequence[str]) -> str:
    return ", ".join(keys) if keys else "(none)"


def _format_p_targets(p_targets: Sequence[float]) -> str:
    return ", ".join(f"{p:g}" for p in p_targets) if p_targets else "(none)"


def _parse_p_target(text: str, what: str) -> float:
    try:
        p_target = float(text)
    except ValueError:
        raise ValueError(f"{what}: target prior must be a number, got '{text}'") from None
    if not 0.0 < p_target < 1.0:
        raise ValueError(f"{what}: target prior must be in (0, 1), got {text}")
    return p_target


def _check_dcfs(path: Path, where: str, row_name: str | None, key: str, value: object,
                p_targets: Sequence[float], nullable: bool) -> dict[float, float | None] | None:
    """Validates a ``{"0.01": value}`` dict and returns it keyed by float p_target."""
    if value is None and nullable:
        return None
    if not isinstance(value, dict):
        raise DataDirError(path, f"{where}: '{key}' must be an object {{p_target: value}}, "
                           f"got {type(value).__name__}", key=row_name)
    dcfs: dict[float, float | None] = {}
    for text, dcf in value.items():
        try:
            p_target = _parse_p_target(text, f"{where}: '{key}'")
        except ValueError as error:
            raise DataDirError(path, str(error), key=row_name) from None
        if not (_is_number(dcf) or (dcf is None and nullable)):
            raise DataDirError(path, f"{where}: '{key}' at p_target {text} must be a number, got {dcf!r}",
                               key=row_name)
        dcfs[p_target] = dcf
    missing = [p for p in p_targets if p not in dcfs]
    if missing:
        raise DataDirError(path, f"{where}: '{key}' lacks p_target(s) {_format_p_targets(missing)} "
                           f"listed in 'p_targets'", key=row_name)
    return dcfs


def _check_row(path: Path, number: int, row: object, p_targets: Sequence[float]) -> dict:
    """Validates one entry of ``rows`` (``number`` is 1-based) and returns a normalised copy."""
    where = f"row {number}"
    if not isinstance(row, dict):
        raise DataDirError(path, f"{where} must be an object, got {type(row).__name__}")
    row_name = row.get("name") if isinstance(row.get("name"), str) else None
    missing = [key for key in _ROW_KEYS if key not in row]
    if missing:
        raise DataDirError(path, f"{where} lacks key(s) {_format_keys(missing)}", key=row_name)
    for key in _TEXT_KEYS:
        if not isinstance(row[key], str):
            raise DataDirError(path, f"{where}: '{key}' must be a string, got {row[key]!r}", key=row_name)
    if not isinstance(row["llr"], bool):
        raise DataDirError(path, f"{where}: 'llr' must be true or false, got {row['llr']!r}", key=row_name)
    for key in _COUNT_KEYS:
        if not isinstance(row[key], int) or isinstance(row[key], bool) or row[key] < 0:
            raise DataDirError(path, f"{where}: '{key}' must be a count (integer >= 0), got {row[key]!r}",
                               key=row_name)
    for key in ("eer", "eer_threshold"):
        if not _is_number(row[key]):
            raise DataDirError(path, f"{where}: '{key}' must be a number, got {row[key]!r}", key=row_name)
    if not 0.0 <= row["eer"] <= 1.0:
        raise DataDirError(path, f"{where}: 'eer' must be a fraction in [0, 1], got {row['eer']} "
                           "(a percentage?)", key=row_name)
    if not (row["cllr"] is None or _is_number(row["cllr"])):
        raise DataDirError(path, f"{where}: 'cllr' must be a number or null, got {row['cllr']!r}", key=row_name)
    checked = dict(row)
    checked["min_dcf"] = _check_dcfs(path, where, row_name, "min_dcf", row["min_dcf"], p_targets, nullable=False)
    checked["act_dcf"] = _check_dcfs(path, where, row_name, "act_dcf", row["act_dcf"], p_targets, nullable=True)
    return checked


def _load(exp_dir: PathLike) -> tuple[Path, list[float], list[dict]]:
    """Reads and validates ``exp_dir/results.json``: returns ``(path, p_targets, rows)``."""
    exp_dir = Path(exp_dir)
    path = exp_dir / RESULTS_JSON
    if not exp_dir.is_dir():
        raise DataDirError(exp_dir, "experiment directory does not exist")
    if not path.is_file():
        hint = " (only the text table 'results' is there: re-run the metrics stage)" \
            if (exp_dir / "results").is_file() else ""
        raise DataDirError(path, f"file does not exist{hint}")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise DataDirError(path, f"not UTF-8 text ({error.reason} at byte {error.start})") from None
    except OSError as error:
        raise DataDirError(path, f"cannot read: {error.strerror}") from None
    try:
        document = json.loads(text)
    except json.JSONDecodeError as error:
        raise DataDirError(path, f"not valid JSON: {error.msg} (line {error.lineno}, column {error.colno})",
                           line=error.lineno) from None
    if not isinstance(document, dict):
        raise DataDirError(path, f"top level must be an object with 'p_targets' and 'rows', "
                           f"got {type(document).__name__}")
    missing = [key for key in ("p_targets", "rows") if key not in document]
    if missing:
        raise DataDirError(path, f"top-level object lacks key(s) {_format_keys(missing)}")
    raw_p_targets, raw_rows = document["p_targets"], document["rows"]
    if not isinstance(raw_p_targets, list) or not all(_is_number(p) and 0.0 < p < 1.0 for p in raw_p_targets):
        raise DataDirError(path, f"'p_targets' must be a list of numbers in (0, 1), got {raw_p_targets!r}")
    if not isinstance(raw_rows, list):
        raise DataDirError(path, f"'rows' must be a list, got {type(raw_rows).__name__}")
    if not raw_rows:
        raise DataDirError(path, "'rows' is empty: no results to gather")
    p_targets = [float(p) for p in raw_p_targets]
    rows = [_check_row(path, number, row, p_targets) for number, row in enumerate(raw_rows, start=1)]
    first_seen: dict[tuple[str, str, str], int] = {}
    for number, row in enumerate(rows, start=1):
        cell = (row["model"], row["backend"], row["trials"])
        if cell in first_seen:
            raise DataDirError(path, f"row {number} repeats model '{cell[0]}', back-end '{cell[1]}' and trials "
                               f"'{cell[2]}' of row {first_seen[cell]}", key=row["name"])
        first_seen[cell] = number
    logger.debug("read %d result rows from %s", len(rows), path)
    return path, p_targets, rows


def read_results(exp_dir: PathLike) -> list[dict]:
    """Reads and validates the ``results.json`` of an experiment dir.

    Args:
        exp_dir: The experiment directory (holding ``results.json``).

    Returns:
        The rows in file order, each a dict with every key of the format (see the module
        docstring); ``min_dcf`` and ``act_dcf`` are keyed by float p_target, as
        :func:`speakernet.backend.metrics.compute_metrics` returns them (``act_dcf`` and
        ``cllr`` may be None).

    Raises:
        DataDirError: naming the file (and the line, or the row's name) if the directory or
            the file is missing, the file is not valid JSON, a key is missing or of the wrong
            type, a row lacks a DCF at one of ``p_targets``, ``rows`` is empty, or two rows
            share model, back-end and trial list.
    """
    return _load(exp_dir)[2]


def parse_metric(text: str) -> tuple[str, float | None]:
    """Parses a metric choice: ``eer``, ``min_dcf@P``, ``act_dcf@P`` or ``cllr``.

    Args:
        text: The choice, e.g. ``"min_dcf@0.01"``.

    Returns:
        ``(kind, p_target)``: kind one of ``eer``, ``min_dcf``, ``act_dcf``, ``cllr``; the
        target prior for the DCFs, else None.

    Raises:
        ValueError: on an unknown metric, a DCF without its prior (or another metric with
            one), or a prior outside (0, 1); the message lists the choices.
    """
    kind, at, prior = text.strip().partition("@")
    if kind not in _METRIC_LABELS:
        raise ValueError(f"unknown metric '{text}'; choose from {METRIC_CHOICES}")
    if kind in ("min_dcf", "act_dcf"):
        if not at or not prior:
            raise ValueError(f"metric '{text}' needs a target prior, e.g. {kind}@0.01")
        return kind, _parse_p_target(prior, f"metric '{text}'")
    if at:
        raise ValueError(f"metric '{kind}' takes no target prior, got '{text}'; choose from {METRIC_CHOICES}")
    return kind, None


def _metric_label(kind: str, p_target: float | None) -> str:
    return _METRIC_LABELS[kind] if p_target is None else f"{_METRIC_LABELS[kind]}@{p_target:g}"


def _format_metric(row: dict, kind: str, p_target: float | None) -> str:
    if kind == "eer":
        return f"{row['eer'] * 100:.3f}"
    if kind == "min_dcf":
        return f"{row['min_dcf'][p_target]:.4f}"
    # actDCF and Cllr of scores that are not log-likelihood ratios say nothing about the system.
    if not row["llr"]:
        return MISSING_CELL
    value = row["cllr"] if kind == "cllr" else (row["act_dcf"] or {}).get(p_target)
    return MISSING_CELL if value is None else f"{value:.4f}"


def default_system_names(exp_dirs: Sequence[PathLike]) -> list[str]:
    """Names each experiment dir by its basename, or by more trailing components if basenames clash.

    ``exp/vox/ecapa``, ``exp/cn/ecapa`` and ``exp/resnet`` are named ``vox/ecapa``, ``cn/ecapa``
    and ``resnet``: a clashing name takes the last two path components (more if those clash too).

    Args:
        exp_dirs: The experiment directories.

    Returns:
        One name per directory, in order.

    Raises:
        ValueError: if the same directory is given twice.
    """
    # abspath, not resolve: "." and ".." get their real names but symlinks keep the name given.
    parts = [Path(os.path.abspath(exp_dir)).parts[1:] or ("/",) for exp_dir in exp_dirs]
    depths = [1] * len(parts)
    while True:
        names = ["/".join(components[-depth:]) for components, depth in zip(parts, depths)]
        clashing = [index for index, name in enumerate(names) if names.count(name) > 1]
        if not clashing:
            return names
        grown = False
        for index in clashing:
            if depths[index] < len(parts[index]):
                depths[index] += 1
                grown = True
        if not grown:
            first, second = clashing[0], clashing[1]
            raise ValueError(f"experiment dir given twice: '{exp_dirs[first]}' and '{exp_dirs[second]}'")


def _escape(text: str) -> str:
    return text.replace("|", "\\|")


def _markdown_table(header: Sequence[str], lines: Sequence[Sequence[str]], num_text_columns: int) -> str:
    """A padded markdown table; the first ``num_text_columns`` align left, the rest right."""
    widths = [max(3, len(header[column]), *(len(line[column]) for line in lines)) for column in range(len(header))]

    def join(cells: Sequence[str]) -> str:
        padded = [cell.ljust(width) if column < num_text_columns else cell.rjust(width)
                  for column, (cell, width) in enumerate(zip(cells, widths))]
        return "| " + " | ".join(padded) + " |\n"

    rule = [":" + "-" * (width - 1) if column < num_text_columns else "-" * (width - 1) + ":"
            for column, width in enumerate(widths)]
    return join(header) + join(rule) + "".join(join(line) for line in lines)


def gather_markdown(
    exp_dirs: Sequence[PathLike],
    metrics: Sequence[str] = DEFAULT_METRICS,
    system_names: Sequence[str] | None = None,
) -> str:
    """Gathers the ``results.json`` of several experiment dirs into one markdown table.

    Rows are (system, model, back-end), experiment dir by experiment dir, each in the order
    its rows first appear in its file; columns are the trial lists, the union over all the
    dirs in first-seen order. A cell holds the requested metrics joined by `` / `` (EER in
    percent with 3 decimals, DCFs and Cllr with 4), or ``–`` where the system has no row for
    that trial list; actDCF and Cllr are ``–`` for rows whose scores are not LLRs.

    Args:
        exp_dirs: Experiment directories, each holding a ``results.json``.
        metrics: Metric choices, each ``eer``, ``min_dcf@P``, ``act_dcf@P`` or ``cllr``.
        system_names: Name of each experiment dir (default: see :func:`default_system_names`).

    Returns:
        The table: a header line, an alignment line and one line per row, each ending in a newline.

    Raises:
        ValueError: on no experiment dirs or no metrics, an unknown metric, a number of
            ``system_names`` other than of ``exp_dirs``, or repeated system names.
        DataDirError: as :func:`read_results`; also, naming the file and listing the
            p_targets it has, when a requested DCF prior is not among its ``p_targets``.
    """
    if not exp_dirs:
        raise ValueError("no experiment dirs given")
    if not metrics:
        raise ValueError(f"no metrics given; choose from {METRIC_CHOICES}")
    parsed = [parse_metric(metric) for metric in metrics]
    if system_names is None:
        system_names = default_system_names(exp_dirs)
    else:
        system_names = list(system_names)
        if len(system_names) != len(exp_dirs):
            raise ValueError(f"got {len(system_names)} system names for {len(exp_dirs)} experiment dirs")
        repeated = sorted({name for name in system_names if system_names.count(name) > 1})
        if repeated:
            raise ValueError(f"system names must differ, got {', '.join(repeated)} more than once")

    trial_lists: dict[str, None] = {}  # ordered set
    table_rows: list[tuple[str, str, str, dict[str, dict]]] = []
    for exp_dir, system in zip(exp_dirs, system_names):
        path, p_targets, rows = _load(exp_dir)
        for metric, (kind, p_target) in zip(metrics, parsed):
            if p_target is not None and p_target not in p_targets:
                raise DataDirError(path, f"metric '{metric}' asks for p_target {p_target:g}, but the file "
                                   f"has p_targets {_format_p_targets(p_targets)}")
        systems: dict[tuple[str, str], dict[str, dict]] = {}
        for row in rows:
            trials = row["trials"] or UNNAMED_TRIALS
            trial_lists.setdefault(trials)
            systems.setdefault((row["model"], row["backend"]), {})[trials] = row
        table_rows += [(system, model, backend, cells) for (model, backend), cells in systems.items()]
        logger.info("%s: %d result rows, %d (model, back-end) pairs from %s", system, len(rows), len(systems), path)

    label = " / ".join(_metric_label(kind, p_target) for kind, p_target in parsed)
    header = ["system", "model", "back-end"] + [f"{_escape(trials)} {label}" for trials in trial_lists]
    lines = []
    for system, model, backend, cells in table_rows:
        line = [_escape(system), _escape(model), _escape(backend)]
        for trials in trial_lists:
            row = cells.get(trials)
            if row is None:
                line.append(MISSING_CELL)
            else:
                line.append(" / ".join(_format_metric(row, kind, p_target) for kind, p_target in parsed))
        lines.append(line)
    return _markdown_table(header, lines, num_text_columns=3)

