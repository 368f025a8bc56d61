"""Stage: import another toolkit's pretrained model as a speakernet model dir.

    python -m speakernet.bin.import_model --format speechbrain --source spkrec-ecapa-voxceleb --out-dir exp/sb_ecapa
    python -m speakernet.bin.import_model --format wespeaker --source voxceleb_resnet34 --out-dir exp/ws_resnet34
    python -m speakernet.bin.import_model --format wespeaker --source avg_model.pt --option model=CAMPPlus --out-dir D
    speakernet compare --exp-dir exp/sb_ecapa --threshold 0.25 a.wav b.wav

Formats:
  speechbrain  SpeechBrain's ECAPA-TDNN: a dir with embedding_model.ckpt (and hyperparams.yaml), or the
               file; option dilations.
  wespeaker    WeSpeaker's ResNet18..293, ECAPA_TDNN[_GLOB]_c512/c1024 and CAMPPlus: a model dir with
               avg_model.pt and config.yaml, or avg_model.pt; options model, model_args, fbank_args
               (WeSpeaker's names, over the config's). Its training head (projection) is dropped.

The model dir is laid out like an exp dir (config.yaml, checkpoints/, frontend.json, and import.json
with the source files' sha256), so extraction, the back-ends, fine-tuning (training.init_from),
export and the CLI take it as they take a trained model. Nothing is downloaded: --source is a
file or dir you have.
"""

from __future__ import annotations

import argparse
import sys

import yaml

from speakernet.bin import run_stage
from speakernet.utils.logging import setup_logging


def _option(text: str) -> tuple[str, object]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected key=value, got '{text}'")
    return key, yaml.safe_load(value)


def main(argv: list[str] | None = None) -> int:
    """Parses the command line and imports the model; returns the process exit code."""
    from speakernet.convert import converter_names

    parser = argparse.ArgumentParser(prog="python -m speakernet.bin.import_model", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--format", required=True, choices=converter_names(), help="the toolkit the model comes from")
    parser.add_argument("--source", required=True, help="its model dir or checkpoint file")
    parser.add_argument("--out-dir", required=True, help="the speakernet model dir to write")
    parser.add_argument("--option", type=_option, action="append", default=[], metavar="KEY=VALUE",
                        help="a converter option, value in YAML (e.g. dilations=[1,2,3,4,1], model=ResNet34); "
                             "repeatable")
    args = parser.parse_args(argv)
    setup_logging()

    from speakernet.importing import import_model

    return run_stage(lambda: import_model(args.format, args.source, args.out_dir, dict(args.option)))


if __name__ == "__main__":
    sys.exit(main())
