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


def make_audio_dir(root: Path, num_speakers: int = 4, utts_per_speaker: int = 4, sample_rate: int = 16000,
                   seed: int = 0, segments: bool = False) -> Path:
    """Writes 16-bit wav files and a data dir (wav.scp, utt2spk, spk2utt) of coloured-noise "speakers".

    Utterances last 0.7-1.3 s; one more, ``spk00-short`` (0.2 s, 18 frames), is there to be left
    out. With ``segments``, each speaker's utterances are one recording cut by a ``segments`` file.
    """
    import soundfile

    rng = np.random.default_rng(seed)
    wav_dir, data_dir = root / "wav", root / "data"
    wav_dir.mkdir(parents=True)
    data_dir.mkdir(parents=True)
    utt2spk, wav_scp, segment_lines = {}, {}, []
    for s in range(num_speakers):
        spk = f"spk{s:02d}"
        colour = rng.normal(0, 1, 16) * np.exp(-np.arange(16) / rng.uniform(1, 6))  # the speaker's filter
        durations = [float(rng.uniform(0.7, 1.3)) for _ in range(utts_per_speaker)] + ([0.2] if s == 0 else [])
        pieces = []
        for u, duration in enumerate(durations):
            utt = f"{spk}-short" if u == utts_per_speaker else f"{spk}-utt{u:02d}"
            noise = np.convolve(rng.normal(0, 1, int(duration * sample_rate)), colour, mode="same")
            waveform = (0.3 * noise / np.abs(noise).max()).astype(np.float32)
            utt2spk[utt] = spk
            if segments:
                start = sum(len(p) for p in pieces) / sample_rate
                segment_lines.append(f"{utt} {spk}-rec {start:.4f} {start + len(waveform) / sample_rate:.4f}\n")
                pieces.append(waveform)
            else:
                path = wav_dir / f"{utt}.wav"
                soundfile.write(path, waveform, sample_rate, subtype="PCM_16")
                wav_scp[utt] = str(path)
        if segments:
            path = wav_dir / f"{spk}-rec.wav"
            soundfile.write(path, np.concatenate(pieces), sample_rate, subtype="PCM_16")
            wav_scp[f"{spk}-rec"] = str(path)
    write_scp(data_dir / "wav.scp", wav_scp)
    write_scp(data_dir / "utt2spk", utt2spk)
    write_scp(data_dir / "spk2utt", utt2spk_to_spk2utt(utt2spk))
    if segments:
        (data_dir / "segments").write_text("".join(sorted(segment_lines)), encoding="utf-8")
    return data_dir


AUDIO_OVERRIDES = TINY_OVERRIDES + ["data.source=audio", "data.use_vad=false", "data.batch_size=4"]


def make_shard_dir(root: Path, utts_per_shard: int = 3) -> Path:
    """:func:`make_audio_dir`'s 17 utterances in shards of ``utts_per_shard`` (``root/shards``; 6 shards of 3)."""
    from speakernet.data.shards.stage import make_shards

    data_dir = make_audio_dir(root)
    make_shards(data_dir, root / "shards", utts_per_shard=utts_per_shard)
    return data_dir


def free_ports(count: int = 3) -> list[int]:
    """``count`` distinct free TCP ports on 127.0.0.1 (one per DDP rendezvous of a test).

    Drawn below Linux's ephemeral range (32768-60999): a port the OS handed out and took back would be
    handed out again, e.g. to a gloo connection of a test on the other xdist worker, before the test's
    processes bind it (EADDRINUSE). Each port is checked bindable now.
    """
    import random
    import socket

    ports: list[int] = []
    for port in random.SystemRandom().sample(range(20000, 32000), 200):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        ports.append(port)
        if len(ports) == count:
            return ports
    raise RuntimeError(f"no {count} free ports in 20000-32000")


def uninterrupted_run(root: Path, max_steps: int) -> tuple[Path, Path]:
    """:func:`make_feature_dir`'s features and a training of ``max_steps`` on them, never stopped: the
    reference that resume tests compare their stopped-and-resumed runs with (``(feature dir, exp dir)``)."""
    from speakernet.config import load_config
    from speakernet.training.trainer import train

    features = make_feature_dir(root / "corpus")
    train(load_config(None, TINY_OVERRIDES + [f"training.max_steps={max_steps}"]), features, root / "straight")
    return features, root / "straight"
