"""speakernet: embed recordings and compare two of them with a trained model.

    speakernet embed --exp-dir exp/ecapa a.wav b.flac --out-dir embeds/
    speakernet compare --exp-dir exp/ecapa a.wav b.wav [--threshold 0.35] [--json]
    speakernet verify --exp-dir exp/ecapa a.wav b.wav [--far 0.01] [--prior 0.5] [--json]
    speakernet enroll --exp-dir exp/ecapa --store speakers/ --speaker alice a1.wav a2.wav
    speakernet enroll --exp-dir exp/ecapa --store speakers/ --speaker alice --remove
    speakernet identify --exp-dir exp/ecapa --store speakers/ unknown.wav [--top 5] [--json]

``compare`` scores as the recipe's scoring stage did: it subtracts the training-set mean that
stage left in ``exp_dir/mean.vec`` and decides at the EER threshold it wrote to
``exp_dir/threshold``, so a pair gets the same score here as in the recipe's score file.

``verify`` scores the same way and reads the model dir's calibration
(``exp_dir/cosine_calibration.json``, see :mod:`speakernet.backend.score_calibration`): it prints
the log-likelihood ratio, the probability of the same speaker at ``--prior`` and the decision at
the threshold for ``--far`` (from the calibration's non-target trials), or at the EER threshold,
saying where the threshold came from. ``identify`` adds the calibrated figures to its ranking.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

from speakernet.bin import run_stage
from speakernet.utils.logging import setup_logging

logger = logging.getLogger(__name__)


def _store_command(args: argparse.Namespace, embedder: Any) -> None:
    """``enroll`` (add recordings) and ``identify`` against a speaker store."""
    from speakernet.backend import speaker_store
    from speakernet.backend.score_calibration import CalibrationError
    from speakernet.inference import too_little_speech

    identity = speaker_store.model_id(embedder.model_file)
    if args.command == "enroll":
        import numpy as np

        matrix = np.stack([embedder.embed(audio) for audio in args.audio])
        store = speaker_store.enroll(args.store, args.speaker, matrix, args.audio, identity, str(args.exp_dir))
        count = sum(1 for owner in store.utt2spk.values() if owner == args.speaker)
        print(f"enrolled {len(args.audio)} recording(s) of {args.speaker} ({count} in all) in {args.store}: "
              f"{len(store.speakers)} speaker(s)")
        return
    store = speaker_store.SpeakerStore(args.store)
    store.check_model(identity)
    calibration = None
    if args.far is not None:
        calibration = embedder.calibration
    elif embedder.has_calibration:
        try:
            calibration = embedder.calibration
        except CalibrationError as error:  # e.g. --checkpoint init: rank by score alone
            logger.warning("%s; ranking without calibrated scores", error)
    threshold, source = args.threshold, "given (--threshold)"
    if threshold is None and args.far is not None:
        chosen = calibration.far_threshold(args.far)
        threshold = chosen.threshold
        source = chosen.source(calibration.trials) + " (per comparison: about K times that for K speakers)"
    elif threshold is None:
        threshold, source = embedder.threshold, embedder.threshold_source
    if threshold is None:
        raise ValueError(f"no --threshold given and {args.exp_dir / 'threshold'} does not exist")
    embedding, speech = embedder.embed_with_speech(args.audio)
    result = speaker_store.identify(store, embedding, embedder.mean, threshold, args.top)
    result["threshold_source"] = source
    if calibration is not None:
        result["prior"] = args.prior
        for entry in result["ranking"]:
            entry.update(llr=calibration.llr(entry["score"]),
                         probability=calibration.probability(entry["score"], args.prior))
    reason = too_little_speech({args.audio: speech})  # the same rule as compare's verdict
    result["reliable"] = reason is None
    if reason:
        result.update(speaker=None, reason=reason)
    if args.json:
        print(json.dumps(result))
        return
    verdict = result["speaker"] or ("no verdict: " + result["reason"] if "reason" in result else "unknown")
    print(f"{verdict} (best score {result['score']:.5f}, threshold {threshold:.5f}: {source})")
    for rank, entry in enumerate(result["ranking"], 1):
        calibrated = (f"  LLR {entry['llr']:+.3f}  P(same | prior {args.prior:g}) {entry['probability']:.4f}"
                      if "llr" in entry else "")
        print(f"{rank:3d}  {entry['speaker']}  {entry['score']:.5f}{calibrated}")


def _rate(text: str) -> float:
    """A probability strictly between 0 and 1 (an argparse type)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1), got '{text}'") from None
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"must be in (0, 1), got {value:g}")
    return value


def _print_verification(verdict: dict[str, Any]) -> None:
    """``speakernet verify``'s lines: the decision, then score, LLR, probability, threshold and its source."""
    if verdict["same_speaker"] is None:
        print(f"no verdict: {verdict['reason']}")
    else:
        print("same speaker" if verdict["same_speaker"] else "different speakers")
    print(f"score        {verdict['score']:.5f} (cosine)")
    print(f"LLR          {verdict['llr']:+.4f} (natural log)")
    print(f"P(same)      {verdict['probability']:.4f} at prior {verdict['prior']:g}")
    print(f"threshold    {verdict['threshold']:.5f}: {verdict['threshold_source']}")


def main(argv: list[str] | None = None) -> int:
    """Runs the ``embed`` or ``compare`` sub-command; returns the exit code."""
    parser = argparse.ArgumentParser(prog="speakernet", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    embed = commands.add_parser("embed", help="write the embedding of each audio file")
    compare = commands.add_parser("compare", help="score two recordings: same speaker or not?")
    verify = commands.add_parser("verify", help="calibrated compare: log-likelihood ratio, probability, decision "
                                 "at a false-accept rate")
    enroll = commands.add_parser("enroll", help="add recordings of a speaker to a speaker store (or --remove one)")
    identify = commands.add_parser("identify", help="who of the enrolled speakers is speaking (or unknown)?")
    for sub in (embed, compare, verify, enroll, identify):
        sub.add_argument("--exp-dir", required=True, type=Path, help="training output dir, or an export dir")
        sub.add_argument("--checkpoint", default="latest",
                         help="latest (default), init (untrained), avgN, a file name in exp_dir/checkpoints or a path")
        sub.add_argument("--runtime", choices=["onnx", "torchscript"], default=None,
                         help="for an export dir (speakernet.bin.export): which export runs (default: onnx)")
        sub.add_argument("--precision", choices=["fp32", "bf16"], default="fp32",
                         help="fp32 (exact, default) or bf16 (lossy, about twice as fast on CPUs with AVX512-BF16)")
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
    verify.add_argument("audio_a")
    verify.add_argument("audio_b")
    verify.add_argument("--threshold", type=float, default=None,
                        help="decision threshold on the cosine score (default: the one for --far, else "
                        "exp_dir/threshold, else the calibration trials' EER threshold)")
    verify.add_argument("--json", action="store_true", help="print one JSON object instead of lines")
    for sub in (verify, identify):
        sub.add_argument("--far", type=_rate, default=None,
                         help="decide at the threshold with this false-accept rate on the model dir's non-target "
                         "calibration trials, e.g. 0.01")
        sub.add_argument("--prior", type=_rate, default=0.5,
                         help="prior probability of the same speaker, for P(same | prior) (default %(default)s)")
    for sub in (enroll, identify):
        sub.add_argument("--store", required=True, type=Path, help="speaker store dir (created by the first enroll)")
    enroll.add_argument("--speaker", required=True, help="speaker name (no whitespace or slashes)")
    enroll.add_argument("audio", nargs="*", help="recordings of the speaker")
    enroll.add_argument("--remove", action="store_true", help="remove the speaker and its recordings instead")
    identify.add_argument("audio", help="the recording to identify")
    identify.add_argument("--top", type=int, default=5, help="enrolled speakers to rank")
    identify.add_argument("--threshold", type=float, default=None,
                          help="best score below which the speaker is 'unknown' (default: exp_dir/threshold)")
    identify.add_argument("--json", action="store_true", help="print one JSON object instead of lines")
    args = parser.parse_args(argv)
    if args.command == "enroll" and bool(args.audio) == args.remove:
        parser.error("enroll takes recordings of the speaker, or --remove without recordings")
    setup_logging(logging.WARNING)
    # A long recording's windows are worth telling: how many, and progress while they run.
    logging.getLogger("speakernet.backend.extract").setLevel(logging.INFO)

    import numpy as np

    from speakernet.backend.embeddings import read_vector, write_embeddings
    from speakernet.backend import speaker_store
    from speakernet.inference import SpeakerEmbedder, describe

    def run() -> None:
        if args.command == "enroll" and args.remove:
            store = speaker_store.remove_speaker(args.store, args.speaker)
            print(f"removed {args.speaker} from {args.store}: {len(store.speakers)} speaker(s) enrolled")
            return
        embedder = SpeakerEmbedder(args.exp_dir, args.checkpoint, args.runtime, args.precision)
        if args.command in ("enroll", "identify"):
            _store_command(args, embedder)
            return
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
        if args.command == "verify":
            verdict = embedder.verify(args.audio_a, args.audio_b, args.threshold, far=args.far, prior=args.prior)
            if args.json:
                print(json.dumps(verdict))
            else:
                _print_verification(verdict)
            return
        mean_path = args.mean_vec if args.mean_vec is not None else args.exp_dir / "mean.vec"
        if str(mean_path) == "none" or (args.mean_vec is None and not mean_path.is_file()):
            if args.mean_vec is None:
                logger.warning("%s does not exist (the recipe's scoring stage writes it): no mean subtraction",
                               mean_path)
            mean = None
        else:
            mean = read_vector(mean_path)
        threshold = args.threshold if args.threshold is not None else embedder.threshold
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
