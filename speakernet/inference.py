"""Everyday questions answered from a trained exp dir: embed a wav, compare two wavs."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from speakernet.backend.extract import prepare_features
from speakernet.data.audio import load_audio
from speakernet.features.fbank import FbankConfig, compute_fbank_and_energy
from speakernet.features.frontend import load_frontend
from speakernet.features.vad import VadConfig, compute_vad
from speakernet.export import load_exported, read_export_info
from speakernet.training.checkpoint import load_model

logger = logging.getLogger(__name__)

#: Less voiced audio than this (frames of 10 ms) gets a warning: training never saw shorter crops.
MIN_RELIABLE_FRAMES = 100


class SpeakerEmbedder:
    """Turns audio files into embeddings with the model of an exp dir.

    The front-end is the one the training features were made with (``exp_dir/frontend.json``:
    fbank and energy VAD options), followed by CMN as in extraction, so CLI scores match the
    recipe's scores for the same audio.

    An export dir (:mod:`speakernet.export`) works the same way: its ONNX graph runs with
    onnxruntime (or its TorchScript model with ``runtime="torchscript"``), the training code is not used.

    Args:
        exp_dir: Training output dir, or an export dir.
        checkpoint: ``latest``, ``init`` or a checkpoint file (exp dirs only).
        runtime: For an export dir, ``onnx`` (the default when exported) or ``torchscript``.
    """

    def __init__(self, exp_dir: str | Path, checkpoint: str = "latest", runtime: str | None = None):
        info = read_export_info(exp_dir)
        if info is None:
            self.model, self.config = load_model(exp_dir, checkpoint)
        else:
            formats = info["formats"]
            runtime = runtime or ("onnx" if "onnx" in formats else next(iter(formats)))
            if runtime not in formats:
                raise ValueError(f"{exp_dir} holds no {runtime} export (it has: {', '.join(formats)})")
            self.model = load_exported(Path(exp_dir) / formats[runtime]["file"], runtime)
            self.config = {"model": info["model"], "data": {"feat_dim": info["feat_dim"], "use_vad": info["use_vad"]}}
            logger.info("using the %s export of %s (from %s)", runtime, info["model"], info["source"])
        frontend = load_frontend(exp_dir)
        if frontend is None:  # an exp dir trained on features without a record: the stage defaults
            frontend = FbankConfig(num_mel_bins=self.config["data"]["feat_dim"]), VadConfig()
        self.fbank_config, self.vad_config = frontend
        self.use_vad = self.config["data"]["use_vad"]

    @torch.inference_mode()
    def embed(self, audio: str) -> np.ndarray:
        """The embedding of one audio file (any soundfile format or a ``cmd |`` pipe).

        Returns:
            float32 ``[embed_dim]``.
        """
        return self.embed_with_speech(audio)[0]

    @torch.inference_mode()
    def embed_with_speech(self, audio: str) -> tuple[np.ndarray, float]:
        """The embedding of one audio file and the seconds of speech the VAD found in it.

        Returns:
            ``(embedding, speech_seconds)``: float32 ``[embed_dim]``, and the voiced duration
            (the whole duration without VAD).
        """
        waveform, _ = load_audio(audio, self.fbank_config.sample_rate)
        fbank, energy = compute_fbank_and_energy(waveform, self.fbank_config)
        if len(fbank) == 0:
            raise ValueError(f"{audio}: too short for one {self.fbank_config.frame_length_ms:g} ms frame")
        vad = compute_vad(energy, **self.vad_config.to_dict()) if self.use_vad else None
        voiced = len(fbank) if vad is None else int(np.count_nonzero(vad > 0.5))
        speech = voiced * self.fbank_config.frame_shift_ms / 1000
        if voiced == 0:
            logger.warning("%s: energy VAD finds no speech (silence?); using all %d frames", audio, len(fbank))
        elif voiced < MIN_RELIABLE_FRAMES:
            logger.warning("%s: only %.2f s of speech; embeddings of so little audio are unreliable", audio, speech)
        feats = prepare_features(fbank, vad, min_frames=50)
        return self.model(torch.from_numpy(feats)[None])[0].numpy(), speech

    def compare(self, audio_a: str, audio_b: str, mean: np.ndarray | None = None) -> float:
        """Cosine similarity of two recordings' embeddings (after optional mean subtraction)."""
        return self.compare_with_speech(audio_a, audio_b, mean)[0]

    def compare_with_speech(self, audio_a: str, audio_b: str,
                            mean: np.ndarray | None = None) -> tuple[float, dict[str, float]]:
        """Cosine similarity of two recordings, and each one's seconds of speech."""
        (a, speech_a), (b, speech_b) = self.embed_with_speech(audio_a), self.embed_with_speech(audio_b)
        if mean is not None:
            a, b = a - mean, b - mean
        score = float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-12))
        return score, {audio_a: speech_a, audio_b: speech_b}


MIN_RELIABLE_SECONDS = MIN_RELIABLE_FRAMES / 100  # at the 10 ms frame shift of every recipe


def describe(score: float, threshold: float, speech: dict[str, float] | None = None) -> dict[str, Any]:
    """The verdict for a cosine score at a decision threshold.

    Args:
        score: Cosine score.
        threshold: Decision threshold (same speaker at or above it).
        speech: Seconds of speech of each recording; with less than :data:`MIN_RELIABLE_SECONDS`
            in either, the verdict is withheld (``same_speaker`` None): silence against silence
            scores near 1 under any model, and a tenth of a second carries no identity.

    Returns:
        ``score``, ``threshold``, ``same_speaker`` (True, False or None), ``reliable`` and, when
        not reliable, ``reason``.
    """
    verdict: dict[str, Any] = {"score": score, "threshold": threshold, "same_speaker": score >= threshold,
                               "reliable": True}
    short = {audio: seconds for audio, seconds in (speech or {}).items() if seconds < MIN_RELIABLE_SECONDS}
    if short:
        verdict.update(same_speaker=None, reliable=False, reason="; ".join(
            f"{audio} has {'no speech' if seconds == 0 else f'only {seconds:.2f} s of speech'}"
            for audio, seconds in short.items()) + f" (at least {MIN_RELIABLE_SECONDS:g} s are needed)")
    return verdict
