"""What inference in bfloat16 costs in accuracy and gains in speed, against exact float32, one run.

Cuts each of the first ``--speakers`` LibriSpeech files of the shared data (one recording per
speaker) into its two halves and embeds every half with a model dir twice, ``precision="fp32"``
(the default) and ``precision="bf16"`` (opt-in, :mod:`speakernet.models.precision`), one thread,
file by file, the audio in memory. Every pair of halves is a trial: the two halves of one recording
are the target trials (one session: an optimistic EER, the same for both precisions), all other
pairs non-targets. Prints, per precision, the real-time factor and the EER of cosine scoring, and
the cosine of each half's bf16 embedding to its fp32 one (lowest and median).

    python benches/bench_precision.py --model-dir exp/sb_ecapa --data-root ../shared/data
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

import speakernet
from speakernet.backend.metrics import compute_eer


def _halves(root: Path, speakers: int) -> tuple[list[str], list[np.ndarray]]:
    """The speaker and samples of each half of the first ``speakers`` LibriSpeech files."""
    names, audio = [], []
    for path in sorted((root / "LibriSpeech" / "train-clean-100").glob("*/*/*.flac"))[:speakers]:
        samples = sf.read(path, dtype="float32")[0]
        middle = len(samples) // 2
        names += [path.name.split("-")[0]] * 2
        audio += [samples[:middle], samples[middle:]]
    return names, audio


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", required=True, help="an exp dir or imported model dir")
    parser.add_argument("--data-root", required=True, help="the shared real-speech root (LibriSpeech/...)")
    parser.add_argument("--speakers", type=int, default=120, help="LibriSpeech files (one per speaker)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    speakers, audio = _halves(Path(args.data_root), args.speakers)
    if not audio:
        sys.exit(f"no LibriSpeech files under {args.data_root}")
    seconds = sum(len(a) for a in audio) / 16000
    pairs = list(itertools.combinations(range(len(audio)), 2))
    labels = np.array([speakers[i] == speakers[j] for i, j in pairs])
    embeddings, rtf = {}, {}
    for precision in ("fp32", "bf16"):
        model = speakernet.load(args.model_dir, precision=precision)
        model.embed(audio[0], sample_rate=16000)  # warm-up
        started = time.perf_counter()
        matrix = np.stack([model.embed(a, sample_rate=16000) for a in audio])
        rtf[precision] = (time.perf_counter() - started) / seconds
        embeddings[precision] = matrix / np.linalg.norm(matrix, axis=1, keepdims=True)
    agreement = np.sum(embeddings["fp32"] * embeddings["bf16"], axis=1)
    print(f"{len(audio)} halves of {len(audio) // 2} LibriSpeech recordings, {seconds:.0f} s of audio, {len(pairs)} "
          f"trials ({int(labels.sum())} target), 1 thread")
    print(f"{'precision':<10} {'RTF':>8} {'EER %':>7}")
    for precision, matrix in embeddings.items():
        scores = np.array([matrix[i] @ matrix[j] for i, j in pairs])
        print(f"{precision:<10} {rtf[precision]:>8.4f} {100 * compute_eer(scores, labels)[0]:>7.3f}")
    print(f"bf16 to fp32: speed-up {rtf['fp32'] / rtf['bf16']:.2f}x, cosine of the embeddings lowest "
          f"{agreement.min():.6f}, median {np.median(agreement):.6f}")


if __name__ == "__main__":
    main()
