"""Tiny feature data dirs for training tests, made with kaldiio."""

from __future__ import annotations

from pathlib import Path

import kaldiio
import numpy as np

from speakernet.data.kaldi_dir import utt2spk_to_spk2utt, write_scp


def make_feature_dir(root: Path, num_speakers: int = 6, utts_per_speaker: int = 5, feat_dim: int = 20,
                     seed: int = 0, speaker_dims: int | None = None) -> Path:
    """Writes feats/vad ark+scp, utt2spk, spk2utt and utt2num_frames; speakers have distinct covariances.

    With ``speaker_dims``, only the first ``speaker_dims`` dimensions carry the speaker's
    covariance; the others get a new random covariance in every utterance (a session nuisance
    that a random network mixes into its embeddings and training must learn to ignore).
    """
    rng = np.random.default_rng(seed)
    data_dir = root / "data"
    data_dir.mkdir(parents=True)
    utt2spk, feats, vads = {}, {}, {}
    for s in range(num_speakers):
        spk = f"spk{s:02d}"
        # speaker identity lives in the frame covariance, which per-crop CMN keeps
        mixing = rng.normal(0, 1, (feat_dim, feat_dim)) * rng.uniform(0.2, 2.0, feat_dim)
        for u in range(utts_per_speaker):
            utt = f"{spk}-utt{u:02d}"
            frames = int(rng.integers(120, 260))
            utt2spk[utt] = spk
            utt_mixing = mixing
            if speaker_dims is not None:
                utt_mixing = rng.normal(0, 1, (feat_dim, feat_dim)) * rng.uniform(0.2, 2.0, feat_dim)
                utt_mixing[:speaker_dims, :speaker_dims] = mixing[:speaker_dims, :speaker_dims]
                utt_mixing[:speaker_dims, speaker_dims:] = 0.0
                utt_mixing[speaker_dims:, :speaker_dims] = 0.0
            feats[utt] = (rng.normal(0, 1, (frames, feat_dim)) @ utt_mixing + rng.normal(0, 5, feat_dim)).astype(
                np.float32)
            vad = np.ones(frames, dtype=np.float32)
            vad[:10] = 0
            vads[utt] = vad
    with kaldiio.WriteHelper(f"ark,scp:{root / 'feats.ark'},{data_dir / 'feats.scp'}") as writer:
        for utt in sorted(feats):
            writer(utt, feats[utt])
    with kaldiio.WriteHelper(f"ark,scp:{root / 'vad.ark'},{data_dir / 'vad.scp'}") as writer:
        for utt in sorted(vads):
            writer(utt, vads[utt])
    write_scp(data_dir / "utt2spk", utt2spk)
    write_scp(data_dir / "spk2utt", utt2spk_to_spk2utt(utt2spk))
    write_scp(data_dir / "utt2num_frames", {u: str(len(f)) for u, f in feats.items()})
    return data_dir


TINY_OVERRIDES = [
    "data.feat_dim=20",
    "data.crop_frames=50",
    "data.min_frames=40",
    "data.batch_size=6",
    "model_args={channels: 16, embed_dim: 8, attention_bottleneck: 8, se_bottleneck: 8}",
    "head_args={margin: 0.2, scale: 16}",
    "margin_schedule.increase_start_epoch=1",
    "margin_schedule.fix_start_epoch=2",
    "optimizer_args={lr: 0.05}",
    "scheduler_args={warmup_epochs: 0.5, final_lr: 0.001}",
    "training.epochs=3",
    "training.log_interval=2",
    "training.num_threads=1",
]
