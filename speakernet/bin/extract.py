"""Stage: extract embeddings of data dirs with a trained (or the untrained) model.

    python -m speakernet.bin.extract --exp-dir exp/ecapa --data-dir data/test --out-dir exp/ecapa/embeddings/latest/test
    python -m speakernet.bin.extract --exp-dir exp/ecapa --checkpoint init ...   # the untrained model
    python -m speakernet.bin.extract --exp-dir exp/ecapa --data-dir data/test data/dev --out-dir E/test E/dev

Several data dirs (with as many output dirs, in the same order) are embedded by one model load.
With ``--jobs FILE``, each line of FILE holds the options of one such extraction (its own exp dir,
checkpoint, mode and dirs) and one process runs them all, so that torch is imported and set up once
for, say, the untrained and the trained model (the recipes' stage 3):

    python -m speakernet.bin.extract --jobs exp/ecapa/extract.jobs

An output dir that holds a ``.done.pending`` file (the recipes put their freshness marker there
before the run) gets it renamed to ``.done`` as soon as that dir is written, so that a run killed
half-way keeps the dirs it finished and a re-run embeds only the others.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path

from speakernet.bin import parse_bool, run_stage
from speakernet.utils.logging import setup_logging

DONE_MARKER = ".done"  # the recipes' freshness marker of an embeddings dir (tools/sv_stages.sh)
PENDING_MARKER = ".done.pending"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m speakernet.bin.extract", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--exp-dir", help="training output dir (config.yaml, checkpoints/)")
    parser.add_argument("--data-dir", nargs="+", help="data dirs with feats.scp (and vad.scp)")
    parser.add_argument("--out-dir", nargs="+",
                        help="one per data dir: where its xvector.scp, spk_xvector.scp and mean.vec go")
    parser.add_argument("--checkpoint", default="latest",
                        help="latest | init (untrained) | avgN | file name in exp_dir/checkpoints | path")
    parser.add_argument("--mode", choices=["full", "multicrop"], default=None, help="default: the config's")
    parser.add_argument("--num-crops", type=int, default=None)
    parser.add_argument("--crop-frames", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--max-frames", type=int, default=None,
                        help="full mode: longer utterances are embedded in chunks of at most this many frames, "
                        "averaged (0: whole; default: the config's extract.max_frames)")
    parser.add_argument("--use-vad", type=parse_bool, default=None, metavar="true|false",
                        help="drop the frames vad.scp marks unvoiced first (default: the model config's data.use_vad)")
    parser.add_argument("--num-threads", type=int, default=0, help="torch threads (0: torch default)")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="fp32",
                        help="fp32 (exact, default) or bf16 (lossy, about twice as fast on CPUs with AVX512-BF16)")
    parser.add_argument("--jobs", default=None,
                        help="file of extractions, one per line, each given by the options above; no other option")
    return parser


def _jobs(parser: argparse.ArgumentParser, argv: list[str] | None) -> list[argparse.Namespace]:
    """The extractions of a command line: itself, or the lines of its ``--jobs`` file."""
    args = parser.parse_args(argv)
    if args.jobs is None:
        jobs = [args]
    else:
        if vars(args) != {**vars(parser.parse_args([])), "jobs": args.jobs}:
            parser.error("--jobs takes no other option: each line of its file has its own")
        try:
            lines = Path(args.jobs).read_text(encoding="utf-8").splitlines()
        except OSError as error:
            parser.error(f"--jobs {args.jobs}: {error.strerror or error}")
        jobs = [parser.parse_args(shlex.split(line)) for line in lines if line.strip()]
        if not jobs or any(job.jobs is not None for job in jobs):
            parser.error(f"--jobs {args.jobs} must hold at least one extraction and no --jobs of its own")
    for job in jobs:
        missing = [f"--{name.replace('_', '-')}" for name in ("exp_dir", "data_dir", "out_dir")
                   if not getattr(job, name)]
        if missing:
            parser.error(f"the following arguments are required: {', '.join(missing)} (or --jobs FILE)")
        if len(job.out_dir) != len(job.data_dir):
            parser.error(f"--out-dir needs one dir per --data-dir: got {len(job.data_dir)} data dirs and "
                         f"{len(job.out_dir)} output dirs")
    return jobs


def main(argv: list[str] | None = None) -> int:
    """Parses the command line and extracts; returns the process exit code."""
    jobs = _jobs(_parser(), argv)
    setup_logging()

    import torch

    from speakernet.backend.extract import extract_embeddings
    from speakernet.features.frontend import check_same_frontend
    from speakernet.models.precision import with_precision
    from speakernet.training.checkpoint import load_model
    from speakernet.utils.fileio import ensure_writable_dir

    def extract() -> None:
        for job in jobs:  # every dir checked before the first is embedded
            for data_dir in job.data_dir:
                check_same_frontend(job.exp_dir, data_dir)
        models: dict[tuple[str, str, str], tuple[torch.nn.Module, dict]] = {}  # (exp dir, checkpoint, precision)
        for job in jobs:
            if job.num_threads > 0:
                torch.set_num_threads(job.num_threads)
            device = job.device or ("cuda" if torch.cuda.is_available() else "cpu")
            key = job.exp_dir, job.checkpoint, job.precision
            if key not in models:
                model, config = load_model(job.exp_dir, job.checkpoint)
                models[key] = with_precision(model, job.precision), config
            model, config = models[key]
            for out_dir in job.out_dir:
                ensure_writable_dir(out_dir)
            extract_cfg = config["extract"]
            for data_dir, out_dir in zip(job.data_dir, job.out_dir):
                extract_embeddings(
                    model,
                    data_dir,
                    out_dir,
                    mode=job.mode or extract_cfg["mode"],
                    use_vad=config["data"]["use_vad"] if job.use_vad is None else job.use_vad,
                    num_crops=extract_cfg["num_crops"] if job.num_crops is None else job.num_crops,
                    crop_frames=extract_cfg["crop_frames"] if job.crop_frames is None else job.crop_frames,
                    batch_size=extract_cfg["batch_size"] if job.batch_size is None else job.batch_size,
                    max_frames=extract_cfg["max_frames"] if job.max_frames is None else job.max_frames,
                    device=device,
                )
                pending = Path(out_dir) / PENDING_MARKER
                if pending.is_file():  # this dir is complete: the recipe's marker takes effect now
                    done = pending.with_name(DONE_MARKER)
                    os.replace(pending, done)
                    os.utime(done)  # dated when the dir was finished, as the recipe's later steps compare

    return run_stage(extract)


if __name__ == "__main__":
    sys.exit(main())
