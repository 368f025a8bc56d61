"""Computes fbank features and energy VAD for a data dir: D/feats.scp, D/vad.scp, D/utt2num_frames.

Example:
    python -m speakernet.bin.make_features --data-dir data/train --feat-dir exp/fbank/train --nj 4
    python -m speakernet.bin.make_features ... --nj 40 --cmd "slurm.pl --partition cpu --time 1:00:00 --mem 4G"

``--job J --feat-dir F`` runs one job of a stage prepared by the parent process (internal).
"""

from __future__ import annotations

import argparse
import sys

from speakernet.bin import add_job_options, parse_bool, run_stage
from speakernet.utils.logging import setup_logging


def build_parser() -> argparse.ArgumentParser:
    """The command-line options (defaults are FbankConfig's and VadConfig's)."""
    from speakernet.features.fbank import WINDOW_TYPES, FbankConfig
    from speakernet.features.vad import VadConfig

    fbank, vad = FbankConfig(), VadConfig()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", help="Kaldi data dir with wav.scp and utt2spk (optional segments)")
    parser.add_argument("--feat-dir", required=True, help="where fbank.J.ark/scp, vad.J.ark/scp and log/ go")
    add_job_options(parser)
    parser.add_argument("--compress", action="store_true", help="store features with Kaldi's lossy compression")
    parser.add_argument("--frontend", choices=["kaldi", "speechbrain"], default="kaldi",
                        help="kaldi: Kaldi fbank (the options below); speechbrain: SpeechBrain's Fbank, which models "
                        "imported from SpeechBrain need (only --num-mel-bins and --sample-rate apply)")
    parser.add_argument("--frontend-from", metavar="MODEL_DIR",
                        help="use the front-end and VAD options a model dir records (its frontend.json), e.g. to "
                        "make features for an imported or trained model; the options below are then not used")
    group = parser.add_argument_group("fbank (--frontend kaldi)")
    group.add_argument("--num-mel-bins", type=int, default=fbank.num_mel_bins)
    group.add_argument("--frame-length-ms", type=float, default=fbank.frame_length_ms)
    group.add_argument("--frame-shift-ms", type=float, default=fbank.frame_shift_ms)
    group.add_argument("--sample-rate", type=int, default=fbank.sample_rate,
                       help="audio at other rates is resampled to this")
    group.add_argument("--dither", type=float, default=fbank.dither, help="dither on the int16 scale (0 = off)")
    group.add_argument("--window-type", choices=WINDOW_TYPES, default=fbank.window_type)
    group.add_argument("--low-freq", type=float, default=fbank.low_freq)
    group.add_argument("--high-freq", type=float, default=fbank.high_freq, help="<= 0: Nyquist plus this value")
    group.add_argument("--snip-edges", type=parse_bool, default=fbank.snip_edges, metavar="true|false")
    group.add_argument("--preemphasis", type=float, default=fbank.preemphasis)
    group.add_argument("--remove-dc-offset", type=parse_bool, default=fbank.remove_dc_offset, metavar="true|false")
    group = parser.add_argument_group("energy VAD (Kaldi compute-vad)")
    group.add_argument("--vad-energy-threshold", type=float, default=vad.energy_threshold)
    group.add_argument("--vad-energy-mean-scale", type=float, default=vad.energy_mean_scale)
    group.add_argument("--vad-frames-context", type=int, default=vad.frames_context)
    group.add_argument("--vad-proportion-threshold", type=float, default=vad.proportion_threshold)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Runs the feature-extraction stage (or one of its jobs with ``--job``).

    Args:
        argv: Command-line arguments (``sys.argv[1:]`` when ``None``).

    Returns:
        0 on success, 1 when the stage or job failed.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging()
    from speakernet.features.fbank import FbankConfig
    from speakernet.features.frontend import FRONTEND_CONFIG_NAME, load_frontend
    from speakernet.features.make_features import FeatureExtractionError, make_features, run_feature_job
    from speakernet.features.sb_fbank import SpeechBrainFbankConfig
    from speakernet.features.vad import VadConfig

    if args.job is not None:
        return run_stage(lambda: run_feature_job(args.feat_dir, args.job), {FeatureExtractionError: 1})
    if args.data_dir is None:
        parser.error("--data-dir is required")

    def extract() -> None:
        if args.frontend_from is not None:
            recorded = load_frontend(args.frontend_from)
            if recorded is None:
                raise FileNotFoundError(f"--frontend-from {args.frontend_from}: it has no {FRONTEND_CONFIG_NAME}")
            fbank_config, vad_config = recorded
        else:
            if args.frontend == "speechbrain":
                fbank_config = SpeechBrainFbankConfig(num_mel_bins=args.num_mel_bins, sample_rate=args.sample_rate,
                                                      high_freq=args.sample_rate / 2)
            else:
                fbank_config = FbankConfig(
                    num_mel_bins=args.num_mel_bins, frame_length_ms=args.frame_length_ms,
                    frame_shift_ms=args.frame_shift_ms, sample_rate=args.sample_rate, dither=args.dither,
                    window_type=args.window_type, low_freq=args.low_freq, high_freq=args.high_freq,
                    snip_edges=args.snip_edges, preemphasis=args.preemphasis, remove_dc_offset=args.remove_dc_offset)
            vad_config = VadConfig(
                energy_threshold=args.vad_energy_threshold, energy_mean_scale=args.vad_energy_mean_scale,
                frames_context=args.vad_frames_context, proportion_threshold=args.vad_proportion_threshold)
        make_features(args.data_dir, args.feat_dir, nj=args.nj, fbank_config=fbank_config, vad_config=vad_config,
                      compress=args.compress, launcher=args.cmd)

    return run_stage(extract, {FeatureExtractionError: 1})


if __name__ == "__main__":
    sys.exit(main())
