"""Difficulty check of the synthetic corpus: untrained extractors near chance, a learned one clearly better.

Generates a small corpus into a temporary directory and prints the EER (%) on its test trials of:

* (a)  per-utterance mean + std of 80-dim log-mel fbank (no CMN), cosine scoring: the raw front-end;
* (a2) a randomly initialised 1-D conv net with statistics pooling on CMN'd fbank, cosine;
* (b)  the (a) statistics projected by LDA trained on the TRAIN speakers to 30 dims, cosine.

Usage::

    python benches/bench_synth_baseline.py [--train-speakers 40] [--test-speakers 20] [--nj 2] [--seed 0]
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path

import kaldi_native_fbank as knf
import numpy as np
import soundfile as sf
import torch
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
from sklearn.metrics import roc_curve

from speakernet.data.kaldi_dir import read_scp, read_trials
from speakernet.data.synth_corpus import generate_corpus
from speakernet.utils.logging import setup_logging

logger = logging.getLogger("bench_synth_baseline")


def compute_fbank(wave: np.ndarray, sample_rate: int) -> np.ndarray:
    """80-dim Kaldi log-mel fbank, dither 0, waveform on the int16 scale; ``[frames, 80]``."""
    opts = knf.FbankOptions()
    opts.frame_opts.dither = 0.0
    opts.frame_opts.samp_freq = sample_rate
    opts.mel_opts.num_bins = 80
    fbank = knf.OnlineFbank(opts)
    fbank.accept_waveform(sample_rate, (wave * 32768.0).astype(np.float32))
    fbank.input_finished()
    return np.stack([fbank.get_frame(i) for i in range(fbank.num_frames_ready)])


def compute_eer(scores: np.ndarray, labels: np.ndarray) -> float:
    """Equal error rate (%), linearly interpolated where the miss and false-alarm rates cross."""
    fpr, tpr, _ = roc_curve(labels, scores)
    fnr = 1.0 - tpr
    index = int(np.nonzero(fnr <= fpr)[0][0])
    if index == 0:
        return 100.0 * float(fpr[0])
    # Crossing between index-1 and index.
    d_prev = fnr[index - 1] - fpr[index - 1]
    d_curr = fnr[index] - fpr[index]
    weight = d_prev / (d_prev - d_curr)
    return 100.0 * float(fpr[index - 1] + weight * (fpr[index] - fpr[index - 1]))


def cosine_eer(embeddings: dict[str, np.ndarray], trials: list[tuple[str, str, str]]) -> float:
    """EER (%) of cosine scoring of the trials."""
    normed = {key: value / max(np.linalg.norm(value), 1e-12) for key, value in embeddings.items()}
    scores = np.array([float(normed[e] @ normed[t]) for e, t, _ in trials])
    labels = np.array([label == "target" for _, _, label in trials], dtype=int)
    return compute_eer(scores, labels)


class RandomStatsNet(torch.nn.Module):
    """A small TDNN-like conv net with mean+std pooling, left at its random initialisation."""

    def __init__(self, feat_dim: int = 80, channels: int = 256, embed_dim: int = 192):
        super().__init__()
        self.frames = torch.nn.Sequential(
            torch.nn.Conv1d(feat_dim, channels, 5, padding=2),
            torch.nn.ReLU(),
            torch.nn.Conv1d(channels, channels, 3, dilation=2, padding=2),
            torch.nn.ReLU(),
            torch.nn.Conv1d(channels, channels, 3, dilation=3, padding=3),
            torch.nn.ReLU(),
            torch.nn.Conv1d(channels, 2 * channels, 1),
            torch.nn.ReLU(),
        )
        self.embed = torch.nn.Linear(4 * channels, embed_dim)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        hidden = self.frames(feats.transpose(1, 2))
        return self.embed(torch.cat([hidden.mean(dim=2), hidden.std(dim=2)], dim=1))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train-speakers", type=int, default=40)
    parser.add_argument("--test-speakers", type=int, default=20)
    parser.add_argument("--train-utts", type=int, default=20, help="utterances per training speaker")
    parser.add_argument("--test-utts", type=int, default=10, help="utterances per test speaker")
    parser.add_argument("--lda-dim", type=int, default=30)
    parser.add_argument("--nj", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    setup_logging()
    torch.manual_seed(args.seed)
    torch.set_num_threads(1)

    with tempfile.TemporaryDirectory(prefix="synth_bench_") as tmp:
        corpus = Path(tmp) / "corpus"
        summary = generate_corpus(
            corpus,
            num_train_speakers=args.train_speakers,
            num_test_speakers=args.test_speakers,
            utts_per_speaker=args.train_utts,
            test_utts_per_speaker=args.test_utts,
            seed=args.seed,
            nj=args.nj,
        )
        start = time.time()
        feats: dict[str, dict[str, np.ndarray]] = {}
        for subset in ("train", "test"):
            feats[subset] = {}
            for utt, path in read_scp(corpus / "data" / subset / "wav.scp").items():
                wave, rate = sf.read(path, dtype="float32")
                feats[subset][utt] = compute_fbank(wave, rate)
        logger.info("fbank of %d utterances in %.1f s", sum(len(v) for v in feats.values()), time.time() - start)
        trials = read_trials(corpus / "data" / "test" / "trials")
        utt2spk_train = read_scp(corpus / "data" / "train" / "utt2spk")

    def stats(matrix: np.ndarray) -> np.ndarray:
        return np.concatenate([matrix.mean(axis=0), matrix.std(axis=0)])

    results = {}
    test_stats = {utt: stats(m) for utt, m in feats["test"].items()}
    results["(a)  fbank mean+std, cosine (untrained)"] = cosine_eer(test_stats, trials)

    net = RandomStatsNet().eval()
    with torch.no_grad():
        random_embeddings = {
            utt: net(torch.from_numpy(m - m.mean(axis=0)).unsqueeze(0))[0].numpy() for utt, m in feats["test"].items()
        }
    results["(a2) random conv net + stats pooling on CMN fbank, cosine"] = cosine_eer(random_embeddings, trials)

    train_utts = sorted(feats["train"])
    x_train = np.stack([stats(feats["train"][utt]) for utt in train_utts])
    y_train = np.array([utt2spk_train[utt] for utt in train_utts])
    lda = LinearDiscriminantAnalysis(n_components=min(args.lda_dim, len(set(y_train)) - 1)).fit(x_train, y_train)
    keys = sorted(test_stats)
    projected = lda.transform(np.stack([test_stats[k] for k in keys]))
    results[f"(b)  fbank mean+std -> LDA{lda.n_components} (train spk), cosine"] = cosine_eer(
        dict(zip(keys, projected)), trials
    )

    num_target = sum(1 for t in trials if t[2] == "target")
    lines = [
        f"corpus: {args.train_speakers} train spk x {args.train_utts} utts ({summary['train']['hours']:.2f} h), "
        f"{args.test_speakers} test spk x {args.test_utts} utts, {len(trials)} trials ({num_target} target), "
        f"generated in {summary['wall_seconds']:.1f} s with nj={args.nj}",
    ]
    lines += [f"{name}: EER {eer:.2f}%" for name, eer in results.items()]
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
