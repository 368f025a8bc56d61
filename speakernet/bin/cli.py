"""speakernet: embed recordings and compare two of them with a trained model.

    speakernet embed --exp-dir exp/ecapa a.wav b.flac --out-dir embeds/
    speakernet compare --exp-dir exp/ecapa a.wav b.wav [--threshold 0.35] [--json]

``compare`` scores as the recipe's scoring stage did: it subtracts the training-set mean that
stage left in ``exp_dir/mean.vec`` and decides at the EER threshold it wrote to
``exp_dir/threshold``, so a pair gets the same score here as in the recipe's score file.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from speakernet.bin import run_stage
from speakernet.utils.logging import setup_logging

logger = logging.getLogger(__name__)


def _default_threshold(exp_dir: Path) -> float | None:
    path = exp_dir / "threshold"
    return float(path.read_text().split()[0]) if path.is_file() else None


def main(argv: list[str] | None = None) -> int:
    """Runs the ``embed`` or ``compare`` sub-command; returns the exit code."""
    parser = argparse.ArgumentParser(prog="speakernet", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    embed = commands.add_parser("embed", help="write the embedding of each audio file")
    compare = commands.add_parser("compare", help="score two recordings: same speaker or not?")
    for sub in (embed, compare):
        sub.add_argument("--exp-dir", required=True, type=Path, help="training output dir, or an export dir")
        sub.add_argument("--checkpoint", default="latest",
                         help="latest (default), init (untrained), avgN, a file name in exp_dir/checkpoints or a path")
        sub.add_argument("--runtime", choices=["onnx", "torchscript"], default=None,
                         help="for an export dir (speakernet.bin.export): which export runs (default: onnx)")
    embed.add_argument("audio", nargs="+", help="audio files (wav/flac/...) or 'cmd |' pipes")
    embed.add_argument("--out-dir", type=Path, required=True, help="writes xvector.ark/.scp here, keyed by file stem")
    compare.add_argument("audio_a")
    compare.add_argument("audio_b")
    compare.add_argument("--threshold", type=float, default=None,
                         help="decision threshold on the cosine score (default: exp_dir/threshold)")
    compare.add_argument("--json", action="store_true", help="print one JSON object instead of a sentence")
    compare.add_argument("--mean-vec", type=Path, default=None,
                         help="mean embedding to subtract (default: exp_dir/mean.vec, the training-set mean that "
                         "the recipe's scoring used; 'none' for no subtraction)")
    args = parser.parse_args(argv)
    setup_logging(logging.WARNING)

    import numpy as np

    from speakernet.backend.embeddings import read_vector, write_embeddings
    from speakernet.inference import SpeakerEmbedder, describe

    def run() -> None:
        embedder = SpeakerEmbedder(args.exp_dir, args.checkpoint, args.runtime)
        if args.command == "embed":
            keys = [Path(a.rstrip(" |").split()[-1]).stem for a in args.audio]
            if len(set(keys)) != len(keys):
                stem = next(key for key in keys if keys.count(key) > 1)
                raise ValueError(f"two inputs have the same file stem '{stem}' (embeddings are keyed by stem); "
                                 "embed them in separate calls")
            matrix = np.stack([embedder.embed(audio) for audio in args.audio])
            write_embeddings(args.out_dir / "xvector.ark", args.out_dir / "xvector.scp", keys, matrix)
            print(f"wrote {len(keys)} embeddings of dimension {matrix.shape[1]} to {args.out_dir / 'xvector.scp'}")
            return
        mean_path = args.mean_vec if args.mean_vec is not None else args.exp_dir / "mean.vec"
        if str(mean_path) == "none" or (args.mean_vec is None and not mean_path.is_file()):
            if args.mean_vec is None:
                logger.warning("%s does not exist (the recipe's scoring stage writes it): no mean subtraction",
                               mean_path)
            mean = None
        else:
            mean = read_vector(mean_path)
        threshold = args.threshold if args.threshold is not None else _default_threshold(args.exp_dir)
        if threshold is None:
            raise ValueError(f"no --threshold given and {args.exp_dir / 'threshold'} does not exist")
        if args.checkpoint != "latest" and (args.threshold is None or args.mean_vec is None):
            logger.warning("exp_dir/threshold and exp_dir/mean.vec belong to the model the recipe scored last, "
                           "not to --checkpoint %s: pass --threshold and --mean-vec for it", args.checkpoint)
        score, speech = embedder.compare_with_speech(args.audio_a, args.audio_b, mean)
        verdict = describe(score, threshold, speech)
        if args.json:
            print(json.dumps(verdict))
        elif verdict["same_speaker"] is None:
            print(f"no verdict: {verdict['reason']}; score {verdict['score']:.5f}, threshold "
                  f"{verdict['threshold']:.5f}")
        else:
            decision = "same speaker" if verdict["same_speaker"] else "different speakers"
            print(f"{decision}: score {verdict['score']:.5f}, threshold {verdict['threshold']:.5f}")

    # Also any OSError (an unreadable checkpoint or audio file) and RuntimeError (AudioError: an
    # undecodable file or a failing pipe), since these commands take files straight from the user.
    return run_stage(run, {OSError: 1, RuntimeError: 1})


if __name__ == "__main__":
    sys.exit(main())
