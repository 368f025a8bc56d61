"""One self-contained HTML page summarising an experiment dir: results, plots, config, hardware.

The page needs nothing but itself: images are embedded as ``data:image/png;base64`` URIs and
the style sheet is inline, so it can be mailed or archived as a single file. Each section is
built on its own; a section whose inputs are missing or unreadable is replaced by a one-line
note (and a logged warning), so a half-finished exp dir -- even one holding only
``results.json`` -- still gets a page. Everything taken from files is HTML-escaped.
"""

from __future__ import annotations

import base64
import html
import inspect
import json
import logging
import os
import platform
import re
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from speakernet.backend import plots
from speakernet.utils.fileio import PathLike, atomic_write

logger = logging.getLogger(__name__)

RESULTS_JSON = "results.json"
METRICS_JSONL = "train_metrics.jsonl"  # written by speakernet.training.trainer
THROUGHPUT_PATTERN = re.compile(r"x real time|trials/s|utts/s|embeddings/s")
ATTENTION_UTTERANCES = 3
DASH = "\u2013"

STYLE = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 2em auto; max-width: 1150px;
       color: #222; padding: 0 1em; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: .2em; margin-top: 1.8em; }
table { border-collapse: collapse; font-size: .85em; margin: .5em 0; } .wide { overflow-x: auto; }
th, td { border: 1px solid #ccc; padding: .25em .6em; text-align: right; }
th { background: #f0f0f0; } td.text, th.text { text-align: left; }
img { max-width: 100%; height: auto; display: block; margin: .5em 0; }
pre { background: #f7f7f7; border: 1px solid #ddd; padding: .8em; overflow-x: auto; font-size: .85em; }
.note { color: #8a5a00; background: #fff8e6; border-left: 4px solid #e0a800; padding: .3em .7em; }
.meta { color: #555; font-size: .9em; } nav a { margin-right: 1em; }
"""


class SectionMissing(Exception):
    """The inputs of a report section are not there (the section is left out with a note)."""


@dataclass
class _Context:
    exp_dir: Path
    data_dir: Path | None
    checkpoint: str
    work_dir: Path
    seed: int
    max_points: int
    embeddings_name: str | None = None
    results: dict[str, Any] | None = None
    score_cache: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)

    def png(self, name: str) -> Path:
        return self.work_dir / f"{name}.png"


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _image(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img alt="{_e(alt)}" src="data:image/png;base64,{data}">'


def _require(path: Path, what: str) -> Path:
    if not path.is_file():
        raise SectionMissing(f"no {what} ({path})")
    return path


def _results(ctx: _Context) -> dict[str, Any]:
    if ctx.results is None:
        path = _require(ctx.exp_dir / RESULTS_JSON, "results file")
        results = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(results, dict) or not isinstance(results.get("rows"), list):
            raise ValueError(f"{path} has no list of 'rows'")
        ctx.results = results
    return ctx.results


def _trial_groups(ctx: _Context) -> dict[str, list[dict[str, Any]]]:
    groups: dict[str, list[dict[str, Any]]] = {}
    for row in _results(ctx)["rows"]:
        groups.setdefault(str(row.get("trials", "trials")), []).append(row)
    if not groups:
        raise SectionMissing(f"{RESULTS_JSON} lists no score files")
    return groups


def _resolve_scores(ctx: _Context, given: str) -> Path:
    """Score paths are as given to the scoring stage, usually relative to the recipe dir."""
    path = Path(given)
    bases = [] if path.is_absolute() else [ctx.exp_dir, *list(ctx.exp_dir.resolve().parents)[:3]]
    for candidate in [path, *(base / path for base in bases)]:
        if candidate.is_file():
            return candidate
    raise SectionMissing(f"score file {given} not found (also looked next to {ctx.exp_dir})")


def read_score_columns(path: PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Reads the score and label columns of a score file, ignoring any columns after the label.

    Args:
        path: Lines ``<enroll> <test> <score> <target|nontarget> [extra numeric columns...]``.

    Returns:
        ``(float64 scores, bool labels)``.

    Raises:
        ValueError: on a line with fewer than four columns or another label (names the line).
    """
    text = Path(path).read_text(encoding="utf-8")
    columns = len(text.split("\n", 1)[0].split())
    tokens = text.split()
    # Fast path for the usual file, every line with the same columns: slicing the token list is
    # 5-10x quicker than splitting line by line on million-trial lists.
    lines = text.count("\n") + (not text.endswith("\n"))
    if columns >= 4 and len(tokens) == columns * lines:
        label_tokens = np.array(tokens[3::columns])
        labels = label_tokens == "target"
        if np.all(labels | (label_tokens == "nontarget")):
            return np.array(tokens[2::columns], dtype=np.float64), labels
    rows = [line.split(None, 4) for line in text.splitlines() if line.strip()]
    for number, row in enumerate(rows, 1):
        if len(row) < 4 or row[3] not in ("target", "nontarget"):
            raise ValueError(f"{path}:{number}: expected '<enroll> <test> <score> <target|nontarget>'")
    return np.array([row[2] for row in rows], dtype=np.float64), np.array([row[3] == "target" for row in rows])


def _scores(ctx: _Context, row: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    given = str(row.get("scores", ""))
    if not given:
        raise SectionMissing(f"row {row.get('name')} names no score file")
    if given not in ctx.score_cache:
        ctx.score_cache[given] = read_score_columns(_resolve_scores(ctx, given))
    return ctx.score_cache[given]


def _system_name(row: dict[str, Any]) -> str:
    if row.get("model") and row.get("backend"):
        return f"{row['model']} {row['backend']}"
    return str(row.get("name", "?"))


# --- sections ---------------------------------------------------------------------------------


def _section_results(ctx: _Context) -> str:
    results = _results(ctx)
    first_dcf = results["rows"][0].get("min_dcf") if results["rows"] else None
    p_targets = [float(p) for p in results.get("p_targets") or (first_dcf if isinstance(first_dcf, dict) else [])]

    def by_prior(values: Any, p: float) -> Any:
        if not isinstance(values, dict):
            return None
        return next((v for k, v in values.items() if abs(float(k) - p) < 1e-12), None)

    def number(value: Any, form: str, scale: float = 1.0) -> str:
        if not isinstance(value, (int, float)):
            return DASH
        return str(int(value)) if form == "d" else format(value * scale, form)

    header = ["name", "model", "backend", "trials", "#trials", "#targets", "EER (%)", "EER threshold"]
    header += [f"minDCF@{p:g}" for p in p_targets] + [f"actDCF@{p:g}" for p in p_targets] + ["Cllr"]
    lines = ['<div class="wide"><table><tr>' + "".join(
        f'<th class="text">{_e(h)}</th>' if i < 4 else f"<th>{_e(h)}</th>" for i, h in enumerate(header)) + "</tr>"]
    for row in results["rows"]:
        llr = bool(row.get("llr"))
        cells = [row.get("name", ""), row.get("model", ""), row.get("backend", ""), row.get("trials", "")]
        values = [number(row.get("num_trials"), "d"), number(row.get("num_targets"), "d"),
                  number(row.get("eer"), ".3f", 100.0), number(row.get("eer_threshold"), ".4g")]
        values += [number(by_prior(row.get("min_dcf"), p), ".4f") for p in p_targets]
        values += [number(by_prior(row.get("act_dcf"), p), ".4f") if llr else DASH for p in p_targets]
        values.append(number(row.get("cllr"), ".4f") if llr else DASH)
        lines.append("<tr>" + "".join(f'<td class="text">{_e(c)}</td>' for c in cells)
                     + "".join(f"<td>{_e(v)}</td>" for v in values) + "</tr>")
    lines.append("</table></div>")
    lines.append(f'<p class="meta">actDCF and Cllr only for calibrated log-likelihood-ratio scores (llr); '
                 f"{DASH} otherwise. {len(results['rows'])} rows from {_e(RESULTS_JSON)}.</p>")
    return "\n".join(lines)


def _curve_section(ctx: _Context, kind: str) -> str:
    draw = plots.plot_det if kind == "det" else plots.plot_roc
    parts = []
    for index, (trials, rows) in enumerate(_trial_groups(ctx).items()):
        systems = [(_system_name(row), *_scores(ctx, row)) for row in rows]
        path = draw(systems, ctx.png(f"{kind}{index}"), title=f"{kind.upper()}: {trials}")
        parts.append(f"<h3>{_e(trials)}</h3>" + _image(path, f"{kind} {trials}"))
    return "\n".join(parts)


def _section_histograms(ctx: _Context) -> str:
    trials, rows = next(iter(_trial_groups(ctx).items()))
    trained = [row for row in rows if str(row.get("model", "")).startswith("trained")]
    if not trained:
        raise SectionMissing(f"no trained-model row for trial list {trials}")
    parts = [f'<p class="meta">Trial list {_e(trials)}; the dashed line is each system\'s EER threshold.</p>']
    for index, row in enumerate(trained):
        scores, labels = _scores(ctx, row)
        threshold = row.get("eer_threshold")
        if not isinstance(threshold, (int, float)):
            from speakernet.backend.metrics import compute_eer

            threshold = compute_eer(scores, labels)[1]
        path = plots.plot_score_histograms(str(row.get("name", _system_name(row))), scores, labels, float(threshold),
                                           ctx.png(f"hist{index}"), max_points=ctx.max_points, seed=ctx.seed)
        parts.append(_image(path, f"score histogram {row.get('name')}"))
    return "\n".join(parts)


def _embedding_dir(ctx: _Context) -> Path:
    if ctx.data_dir is None:
        raise SectionMissing("no test data dir given (--data-dir)")
    return ctx.exp_dir / "embeddings" / ctx.checkpoint / (ctx.embeddings_name or ctx.data_dir.name)


def _utt2spk(ctx: _Context) -> dict[str, str]:
    from speakernet.data.kaldi_dir import read_scp

    return read_scp(_require(ctx.data_dir / "utt2spk", "utt2spk in the test data dir"))


def _section_tsne(ctx: _Context) -> str:
    from speakernet.backend.embeddings import load_embeddings

    scp = _require(_embedding_dir(ctx) / "xvector.scp", "test embeddings")
    keys, matrix = load_embeddings(scp)
    path = plots.plot_tsne(keys, matrix, _utt2spk(ctx), ctx.png("tsne"), seed=ctx.seed)
    return f'<p class="meta">{_e(scp)}</p>' + _image(path, "t-SNE of test embeddings")


def _section_cosine(ctx: _Context) -> str:
    from speakernet.backend.embeddings import load_embeddings, speaker_means

    directory = _embedding_dir(ctx)
    if (directory / "spk_xvector.scp").is_file():
        spk_keys, means = load_embeddings(directory / "spk_xvector.scp")
    else:
        keys, matrix = load_embeddings(_require(directory / "xvector.scp", "test embeddings"))
        spk_keys, means = speaker_means(keys, matrix, _utt2spk(ctx))
    path, mean_abs = plots.plot_speaker_cosine_matrix(spk_keys, means, ctx.png("cosine"))
    return (f"<p>Mean |off-diagonal cosine| of the {len(spk_keys)} test speakers' mean embeddings (after "
            f"subtracting their mean): <b>{mean_abs:.4f}</b> (0 = orthogonal speakers, 1 = identical).</p>"
            + _image(path, "speaker cosine matrix"))


def _section_training(ctx: _Context) -> str:
    path = plots.plot_training_curves(_require(ctx.exp_dir / METRICS_JSONL, "training metrics"), ctx.png("training"))
    return _image(path, "training curves")


def _section_attention(ctx: _Context) -> str:
    if ctx.data_dir is None:
        raise SectionMissing("no test data dir given (--data-dir)")
    import kaldiio

    from speakernet.backend.extract import extract_embeddings
    from speakernet.data.kaldi_dir import read_scp
    from speakernet.training.checkpoint import load_model

    feats_scp = read_scp(_require(ctx.data_dir / "feats.scp", "feats.scp in the test data dir"))
    vad_path = ctx.data_dir / "vad.scp"
    vad_scp = read_scp(vad_path) if vad_path.is_file() else {}
    model, config = load_model(ctx.exp_dir, ctx.checkpoint)
    utts = list(feats_scp)
    chosen = [utts[i] for i in sorted(set(np.linspace(0, len(utts) - 1, ATTENTION_UTTERANCES).round().astype(int)))]
    feats = [np.asarray(kaldiio.load_mat(feats_scp[utt])) for utt in chosen]
    vads = [np.asarray(kaldiio.load_mat(vad_scp[utt])) if utt in vad_scp else None for utt in chosen]
    use_vad = bool(config["data"]["use_vad"]) and bool(vad_scp)
    # the padding length extraction uses, read from its signature so the two cannot drift apart
    min_frames = inspect.signature(extract_embeddings).parameters["min_frames"].default
    path = plots.plot_attention(model, feats, vads, chosen, ctx.png("attention"), use_vad=use_vad,
                                min_frames=min_frames)
    return (f'<p class="meta">Checkpoint {_e(ctx.checkpoint)}; features prepared as extraction does '
            f"(VAD {'on' if use_vad else 'off'}).</p>" + _image(path, "attention weights"))


def _section_config(ctx: _Context) -> str:
    path = _require(ctx.exp_dir / "config.yaml", "resolved config")
    return f"<pre>{_e(path.read_text(encoding='utf-8'))}</pre>"


def _section_training_time(ctx: _Context) -> str:
    records = plots.read_train_metrics(_require(ctx.exp_dir / METRICS_JSONL, "training metrics"))
    timed = [r for r in records if isinstance(r.get("seconds"), (int, float))]
    if not timed:
        raise SectionMissing(f"{METRICS_JSONL} holds no timed line")
    last = timed[-1]
    seconds = float(last["seconds"])
    speeds = [r["utts_per_s"] for r in timed if isinstance(r.get("utts_per_s"), (int, float))]
    hours, rest = divmod(int(round(seconds)), 3600)
    return (f"<p>{seconds:.1f} s ({hours:d}:{rest // 60:02d}:{rest % 60:02d}) of training for "
            f"{_e(last.get('step'))} steps, {_e(last.get('progress'))} epochs"
            + (f"; {np.mean(speeds):.1f} utterances/s on average" if speeds else "") + ".</p>")


def hardware_summary() -> dict[str, str]:
    """CPU model, core count, RAM, torch version and GPUs of this machine.

    Returns:
        Description per item; missing items (e.g. no ``/proc`` off Linux) are left out.
    """
    info: dict[str, str] = {}
    cpuinfo, meminfo = Path("/proc/cpuinfo"), Path("/proc/meminfo")
    if cpuinfo.is_file():
        models = re.findall(r"^model name\s*:\s*(.+)$", cpuinfo.read_text(errors="replace"), flags=re.M)
        if models:
            info["CPU"] = models[0].strip()
    info["CPU cores"] = str(os.cpu_count())
    if hasattr(os, "sched_getaffinity"):
        info["cores usable by this process"] = str(len(os.sched_getaffinity(0)))
    if meminfo.is_file():
        found = re.search(r"^MemTotal:\s*(\d+)\s*kB", meminfo.read_text(), flags=re.M)
        if found:
            info["RAM"] = f"{int(found.group(1)) / 2**20:.1f} GiB"
    info["platform"] = f"{platform.platform()}, Python {platform.python_version()}"
    try:
        import torch

        info["torch"] = torch.__version__
        if torch.cuda.is_available():
            info["GPUs"] = ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
    except ImportError:
        info["torch"] = "not installed"
    return info


def _section_hardware(ctx: _Context) -> str:
    rows = "".join(f'<tr><th class="text">{_e(k)}</th><td class="text">{_e(v)}</td></tr>'
                   for k, v in hardware_summary().items())
    return f'<p class="meta">The machine that wrote this report.</p><table>{rows}</table>'


def throughput_lines(exp_dir: PathLike) -> list[tuple[str, str]]:
    """The last throughput line (``x real time``, ``trials/s``, ``utts/s``, ``embeddings/s``) of each log.

    Args:
        exp_dir: Experiment dir; its ``log/*.log`` files are searched.

    Returns:
        ``(log file name, line)`` pairs in file-name order, only for logs with such a line.
    """
    found = []
    for log in sorted((Path(exp_dir) / "log").glob("*.log")):
        last = None
        with open(log, encoding="utf-8", errors="replace") as handle:
            for line in handle:
                if THROUGHPUT_PATTERN.search(line):
                    last = line.rstrip("\n")
        if last is not None:
            found.append((log.name, last))
    return found


def _section_throughput(ctx: _Context) -> str:
    found = throughput_lines(ctx.exp_dir)
    if not found:
        raise SectionMissing(f"no throughput line in {ctx.exp_dir / 'log'}/*.log")
    rows = "".join(f'<tr><td class="text">{_e(name)}</td><td class="text"><code>{_e(line)}</code></td></tr>'
                   for name, line in found)
    return f'<table><tr><th class="text">log</th><th class="text">last throughput line</th></tr>{rows}</table>'


SECTIONS: list[tuple[str, str, Callable[[_Context], str]]] = [
    ("results", "Results", _section_results),
    ("det", "DET curves", lambda ctx: _curve_section(ctx, "det")),
    ("roc", "ROC curves", lambda ctx: _curve_section(ctx, "roc")),
    ("histograms", "Score distributions", _section_histograms),
    ("tsne", "t-SNE of test embeddings", _section_tsne),
    ("cosine", "Speaker-mean cosine matrix", _section_cosine),
    ("training", "Training curves", _section_training),
    ("attention", "Attention weights", _section_attention),
    ("config", "Resolved config", _section_config),
    ("training-time", "Training time", _section_training_time),
    ("hardware", "Hardware", _section_hardware),
    ("throughput", "Throughput", _section_throughput),
]
"""``(anchor, title, builder)`` of each section, in page order."""


def build_report(
    exp_dir: PathLike,
    data_dir: PathLike | None = None,
    checkpoint: str = "latest",
    out: PathLike | None = None,
    seed: int = 0,
    max_points: int = plots.MAX_HISTOGRAM_POINTS,
    embeddings_name: str | None = None,
) -> Path:
    """Writes the HTML report of an experiment dir (atomically).

    Args:
        exp_dir: Experiment dir (``results.json``, ``config.yaml``, ``train_metrics.jsonl``,
            ``checkpoints/``, ``embeddings/``, ``log/``); any of them may be missing.
        data_dir: Test data dir (``utt2spk``, ``feats.scp``, ``vad.scp``) for the embedding and
            attention sections; their embeddings are read from
            ``exp_dir/embeddings/<checkpoint>/<embeddings_name>/``.
        checkpoint: Checkpoint for the attention plot and the embeddings dir name.
        out: Output page; default ``exp_dir/report.html``.
        seed: Seed of t-SNE and of histogram subsampling.
        max_points: Histograms of longer trial lists use this many randomly chosen trials.
        embeddings_name: Name of the data dir's embeddings (default: the basename of ``data_dir``;
            ``sv_stages.sh`` names them by evaluation set).

    Returns:
        Path of the page.

    Raises:
        FileNotFoundError: if ``exp_dir`` is not a directory.
    """
    started = time.perf_counter()
    exp_dir = Path(exp_dir)
    if not exp_dir.is_dir():
        raise FileNotFoundError(f"experiment dir {exp_dir} does not exist")
    out = Path(out) if out is not None else exp_dir / "report.html"
    bodies, notes = [], []
    with tempfile.TemporaryDirectory(prefix="report-") as work_dir:
        ctx = _Context(exp_dir, Path(data_dir) if data_dir is not None else None, checkpoint, Path(work_dir),
                       seed, max_points, embeddings_name)
        for anchor, title, builder in SECTIONS:
            section_started = time.perf_counter()
            try:
                body = builder(ctx)
            except Exception as error:  # a broken or missing input costs one section, never the page
                reason = str(error) if isinstance(error, SectionMissing) else f"{type(error).__name__}: {error}"
                logger.warning("report: section '%s' left out: %s", title, reason)
                notes.append(title)
                bodies.append(f'<p class="note" id="{anchor}"><b>{_e(title)}</b> left out: {_e(reason)}</p>')
                continue
            logger.info("report: section '%s' in %.1f s", title, time.perf_counter() - section_started)
            bodies.append(f'<section id="{anchor}"><h2>{_e(title)}</h2>\n{body}\n</section>')
    navigation = " ".join(f'<a href="#{anchor}">{_e(title)}</a>' for anchor, title, _ in SECTIONS
                          if title not in notes)
    meta = (f"Experiment <code>{_e(exp_dir)}</code>, checkpoint <code>{_e(checkpoint)}</code>"
            + (f", test data <code>{_e(data_dir)}</code>" if data_dir is not None else "")
            + f"; written {_e(time.strftime('%Y-%m-%d %H:%M:%S'))}.")
    page = (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f"<title>speakernet report: {_e(exp_dir.resolve().name)}</title><style>{STYLE}</style></head>\n"
            f"<body><h1>speakernet report: {_e(exp_dir.resolve().name)}</h1>\n<p class=\"meta\">{meta}</p>\n"
            f"<nav>{navigation}</nav>\n" + "\n".join(bodies) + "\n</body></html>\n")
    with atomic_write(out) as handle:
        handle.write(page)
    logger.info("wrote report %s (%d of %d sections, %d left out) in %.1f s",
                out, len(SECTIONS) - len(notes), len(SECTIONS), len(notes), time.perf_counter() - started)
    return out


__all__ = ["build_report", "read_score_columns", "hardware_summary", "throughput_lines", "SECTIONS",
           "SectionMissing"]
