"""Writes an augmented copy of a data dir, one kind per copy, the Kaldi VoxCeleb v2 way.

Each utterance ``<utt>`` becomes ``<utt>-<kind>`` (same speaker), a 16-bit wav file under ``--audio-dir``
(see :mod:`speakernet.data.augment.offline`); ``combine_data`` joins the copies with the clean dir::

    python -m speakernet.bin.augment_data_dir --data-dir data/train --out-dir data/train_noise \\
        --kind noise --sources data/musan_noise --nj 4
    python -m speakernet.bin.augment_data_dir --data-dir data/train --out-dir data/train_reverb \\
        --kind reverb --sources data/rirs_smallroom data/rirs_mediumroom
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from speakernet.bin import run_stage
from speakernet.data.augment.offline import KINDS, augment_data_dir, make_config
from speakernet.utils.logging import setup_logging


def _numbers(kind: type) -> Callable[[str], list]:
    def parse(text: str) -> list:
        try:
            return [kind(item) for item in text.split(",") if item.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got '{text}'") from None
    return parse


def build_parser() -> argparse.ArgumentParser:
    """Returns the command-line parser."""
    defaults = "; ".join(f"{kind}: {','.join(f'{snr:g}' for snr in value.snrs)}"
                         for kind, value in KINDS.items() if value.snrs)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", required=True, help="input data dir (wav.scp, utt2spk, optional segments)")
    parser.add_argument("--out-dir", required=True, help="output data dir (replaced as a whole)")
    parser.add_argument("--kind", required=True, help=f"one of {', '.join(KINDS)}")
    parser.add_argument("--sources", required=True, nargs="+", help="source data dirs (noise, music, speech, RIRs)")
    parser.add_argument("--snrs", type=_numbers(float), default=None,
                        help=f"comma-separated SNR choices in dB (default {defaults})")
    parser.add_argument("--num-talkers", type=_numbers(int), default=None,
                        help="background files per utterance, 'low,high' (default music 1,1; babble 3,7)")
    parser.add_argument("--seed", type=int, default=0, help="seed of every draw (default %(default)s)")
    parser.add_argument("--nj", type=int, default=1, help="parallel processes (default %(default)s)")
    parser.add_argument("--audio-dir", default=None, help="where the wav files go (default OUT_DIR/audio)")
    parser.add_argument("--subset", type=int, default=None, help="augment only a seeded random N utterances")
    parser.add_argument("--sample-rate", type=int, default=16000, help="output rate in Hz (default %(default)s)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Runs the augmentation; returns the process exit status."""
    args = build_parser().parse_args(argv)
    setup_logging()

    def run() -> None:
        config = make_config(args.kind, args.sources, args.snrs, args.num_talkers, args.seed, args.sample_rate)
        augment_data_dir(args.data_dir, args.out_dir, config, nj=args.nj, audio_dir=args.audio_dir,
                         subset=args.subset)

    return run_stage(run)


if __name__ == "__main__":
    sys.exit(main())
