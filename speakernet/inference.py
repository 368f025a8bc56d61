"""Everyday questions answered from a trained exp dir: embed a wav, compare two wavs."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Sequence, Union

import numpy as np
import torch

from speakernet.backend.extract import MAX_FULL_FRAMES, embed_long, full_windows, prepare_features
from speakernet.backend.embeddings import read_vector
from speakernet.utils.fileio import file_sha256
from speakernet.backend.score_calibration import CALIBRATION_NAME, CalibrationError, ScoreCalibration
from speakernet.backend.speaker_store import model_id
from speakernet.data.audio import load_audio, resample
from speakernet.features.fbank import FbankConfig
from speakernet.features.frontend import compute_features_and_energy, load_frontend
from speakernet.features.vad import VadConfig, compute_vad
from speakernet.export import load_exported, read_export_info
from speakernet.models.precision import with_precision
from speakernet.training.checkpoint import load_model, resolve_checkpoint

logger = logging.getLogger(__name__)

#: What :meth:`SpeakerEmbedder.embed` takes: a file path (or ``cmd |`` pipe), or mono samples.
Audio = Union[str, os.PathLike, np.ndarray, torch.Tensor]

#: Less voiced audio than this (frames of 10 ms) gets a warning: training never saw shorter crops.
MIN_RELIABLE_FRAMES = 100


def _name(audio: Audio, position: str = "") -> str:
    """How messages and verdicts name an input: its path, or which waveform it is and its length."""
    if isinstance(audio, (str, os.PathLike)):
        return str(audio)
    which = f"{position} waveform" if position else "waveform"
    return f"the {which} ({np.shape(audio)[-1] if np.ndim(audio) else 0} samples)"


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
        precision: ``fp32`` (exact, the default) or ``bf16`` (lossy, about twice as fast on a CPU with
            AVX512-BF16; :mod:`speakernet.models.precision`); exp dirs only.

    Raises:
        ValueError: on ``bf16`` for an export dir, or where the CPU has no native bfloat16.
    """

    def __init__(self, exp_dir: str | Path, checkpoint: str = "latest", runtime: str | None = None,
                 precision: str = "fp32"):
        #: The dir of the model's weights and front-end: ``exp_dir``, or the model an evaluation of a
        #: pretrained model scored (its exp dir holds the mean, threshold and calibration, not the model).
        self.weights_dir = evaluated_model_dir(exp_dir)
        info = read_export_info(self.weights_dir)
        if info is None:
            self.model, self.config = load_model(self.weights_dir, checkpoint)
            self.model = with_precision(self.model, precision)
            #: The file the weights came from (what a speaker store records, see backend.speaker_store).
            self.model_file = resolve_checkpoint(self.weights_dir, checkpoint)
        else:
            if precision != "fp32":
                raise ValueError(f"{exp_dir} is an export dir, which runs in fp32: precision {precision} needs "
                                 "the exp dir it was exported from")
            formats = info["formats"]
            runtime = runtime or ("onnx" if "onnx" in formats else next(iter(formats)))
            if runtime not in formats:
                raise ValueError(f"{exp_dir} holds no {runtime} export (it has: {', '.join(formats)})")
            self.model_file = self.weights_dir / formats[runtime]["file"]
            self.model = load_exported(self.model_file, runtime)
            self.config = {"model": info["model"], "data": {"feat_dim": info["feat_dim"], "use_vad": info["use_vad"]},
                           "extract": {"max_frames": info.get("max_frames", MAX_FULL_FRAMES)}}
            logger.info("using the %s export of %s (from %s)", runtime, info["model"], info["source"])
        frontend = load_frontend(self.weights_dir)
        if frontend is None:  # an exp dir trained on features without a record: the stage defaults
            frontend = FbankConfig(num_mel_bins=self.config["data"]["feat_dim"]), VadConfig()
        self.fbank_config, self.vad_config = frontend
        self.use_vad = self.config["data"]["use_vad"]
        #: Longer recordings are embedded in chunks of at most this many frames, averaged, as extraction does.
        self.max_frames = self.config.get("extract", {}).get("max_frames", MAX_FULL_FRAMES)

        self.model_dir = Path(exp_dir)
        mean_path, threshold_path = self.model_dir / "mean.vec", self.model_dir / "threshold"
        #: The training-set mean the recipe's scoring subtracted, and its EER threshold (None when the
        #: recipe did not write them); :meth:`verify` uses both.
        self.mean = read_vector(mean_path) if mean_path.is_file() else None
        threshold_record = threshold_path.read_text().split(maxsplit=1) if threshold_path.is_file() else None
        self.threshold = float(threshold_record[0]) if threshold_record else None
        #: Where :attr:`threshold` came from, for verdicts that say so.
        self.threshold_source = (f"{threshold_record[1].strip() if len(threshold_record) > 1 else 'threshold'} "
                                 f"({threshold_path})" if threshold_record else None)
        self._calibration: ScoreCalibration | None = None
        self._exported = info is not None

    @property
    def has_calibration(self) -> bool:
        """Whether the model dir holds a score calibration (:mod:`speakernet.backend.score_calibration`)."""
        return (self.model_dir / CALIBRATION_NAME).is_file()

    @property
    def calibration(self) -> ScoreCalibration:
        """The model dir's score calibration, checked against its mean and (in an exp dir) checkpoint.

        Raises:
            CalibrationError: when there is none (naming the stage that makes it), or it was
                fitted with another mean vector or checkpoint than this model's.
        """
        if self._calibration is None:
            path = self.model_dir / CALIBRATION_NAME
            calibration = ScoreCalibration.load(path)
            recorded_mean = calibration.provenance.get("mean_sha256")
            mean_path = self.model_dir / "mean.vec"
            if recorded_mean and (not mean_path.is_file() or file_sha256(mean_path) != recorded_mean):
                raise CalibrationError(f"{path} was fitted with another mean vector than {mean_path}: re-run the "
                                       "calibration stage for this model dir")
            recorded_model = calibration.provenance.get("model_sha256")
            if recorded_model and not self._exported and model_id(self.model_file) != recorded_model:
                raise CalibrationError(f"{path} was fitted on the embeddings of another checkpoint than "
                                       f"{self.model_file}: it calibrates the model the recipe evaluated last")
            self._calibration = calibration
        return self._calibration

    def _waveform(self, audio: Audio, sample_rate: int | None) -> tuple[np.ndarray, str]:
        """A mono float32 waveform at the front-end's rate, and a name for messages."""
        rate = self.fbank_config.sample_rate
        if isinstance(audio, (str, os.PathLike)):
            return load_audio(str(audio), rate)[0], str(audio)
        array = audio.detach().cpu().numpy() if isinstance(audio, torch.Tensor) else np.asarray(audio)
        name = _name(audio)
        if array.ndim != 1:
            raise ValueError(f"{name}: a waveform must be 1-D (mono samples), got shape {array.shape}")
        if sample_rate is None:
            raise ValueError(f"{name}: give sample_rate= with a waveform (the model expects {rate} Hz)")
        if np.issubdtype(array.dtype, np.integer):  # PCM samples, e.g. int16 from a WAV
            array = array / float(np.iinfo(array.dtype).max + 1)
        array = array.astype(np.float32, copy=False)
        if not np.all(np.isfinite(array)):
            raise ValueError(f"{name}: the waveform holds NaN or Inf")
        return (resample(array, sample_rate, rate) if sample_rate != rate else array), name

    @torch.inference_mode()
    def embed(self, audio: Audio | Sequence[Audio], sample_rate: int | None = None) -> np.ndarray:
        """Embeddings of audio: a file (any soundfile format or a ``cmd |`` pipe) or a waveform.

        Args:
            audio: A path, a 1-D numpy array or torch tensor of samples, or a list of these.
            sample_rate: Rate of waveform inputs in Hz (resampled to the model's when it differs).

        Returns:
            float32 ``[embed_dim]`` for one input, ``[len(audio), embed_dim]`` for a list.
        """
        if isinstance(audio, (list, tuple)):
            return np.stack([self.embed_with_speech(item, sample_rate)[0] for item in audio])
        return self.embed_with_speech(audio, sample_rate)[0]

    @torch.inference_mode()
    def embed_with_speech(self, audio: Audio, sample_rate: int | None = None) -> tuple[np.ndarray, float]:
        """The embedding of one recording and the seconds of speech the VAD found in it.

        Returns:
            ``(embedding, speech_seconds)``: float32 ``[embed_dim]``, and the voiced duration
            (the whole duration without VAD).
        """
        waveform, name = self._waveform(audio, sample_rate)
        fbank, energy = compute_features_and_energy(waveform, self.fbank_config)
        del waveform  # a long recording's samples are not needed past here
        if len(fbank) == 0:
            raise ValueError(f"{name}: too short for one {self.fbank_config.frame_length_ms:g} ms frame")
        vad = compute_vad(energy, **self.vad_config.to_dict()) if self.use_vad else None
        voiced = len(fbank) if vad is None else int(np.count_nonzero(vad > 0.5))
        speech = voiced * self.fbank_config.frame_shift_ms / 1000
        if voiced == 0:
            logger.warning("%s: energy VAD finds no speech (silence?); using all %d frames", name, len(fbank))
        elif voiced < MIN_RELIABLE_FRAMES:
            logger.warning("%s: only %.2f s of speech; embeddings of so little audio are unreliable", name, speech)
        prepared = prepare_features(fbank, vad, min_frames=50, overwrite=True)  # the fbank is ours
        del fbank
        # Views of the features, a chunk per pass; any chunking is logged (how many windows) with a progress bar.
        embedding = embed_long(self.model, full_windows(prepared, self.max_frames), name, self.max_frames,
                               announce_from=2)
        return embedding, speech

    def compare(self, audio_a: Audio, audio_b: Audio, mean: np.ndarray | None = None,
                sample_rate: int | None = None) -> float:
        """Cosine similarity of two recordings' embeddings (after optional mean subtraction)."""
        return self.compare_with_speech(audio_a, audio_b, mean, sample_rate)[0]

    def compare_with_speech(self, audio_a: Audio, audio_b: Audio, mean: np.ndarray | None = None,
                            sample_rate: int | None = None) -> tuple[float, dict[str, float]]:
        """Cosine similarity of two recordings, and each one's seconds of speech (keyed by name)."""
        (a, speech_a), (b, speech_b) = (self.embed_with_speech(audio_a, sample_rate),
                                        self.embed_with_speech(audio_b, sample_rate))
        if mean is not None:
            a, b = a - mean, b - mean
        score = float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-12))
        return score, {_name(audio_a, "first"): speech_a, _name(audio_b, "second"): speech_b}

    def verify(self, audio_a: Audio, audio_b: Audio, threshold: float | None = None,
               sample_rate: int | None = None, far: float | None = None, prior: float | None = None) -> dict[str, Any]:
        """Same speaker or not, scored as the recipe's cosine back-end scored its trials.

        The model dir's training-set mean is subtracted. The decision threshold is ``threshold``
        if given, else the one for the false-accept rate ``far`` on the calibration trials, else
        the model dir's EER threshold (see :func:`decide` for the verdict, withheld for too little
        speech). With a calibration in the model dir (or when ``far`` or ``prior`` ask for one) the
        verdict also holds the log-likelihood ratio and ``P(same | prior)``.

        Args:
            audio_a: First recording (as :meth:`embed` takes it).
            audio_b: Second recording.
            threshold: Decision threshold on the cosine score.
            sample_rate: Rate of waveform inputs in Hz.
            far: False-accept rate in (0, 1) to choose the threshold for (needs a calibration).
            prior: Target prior of the probability (default 0.5; needs a calibration).

        Raises:
            ValueError: if no threshold is given and the model dir has none.
            CalibrationError: if ``far`` or ``prior`` is given and the model dir has no calibration.
        """
        calibration = self.calibration if (far is not None or prior is not None or self.has_calibration) else None
        if threshold is None and far is None and self.threshold is None and calibration is None:
            raise ValueError(f"{self.model_dir / 'threshold'} does not exist (the recipe's metrics stage writes it): "
                             "pass threshold=")
        score, speech = self.compare_with_speech(audio_a, audio_b, self.mean, sample_rate)
        return decide(score, speech, calibration, threshold, far, 0.5 if prior is None else prior,
                      self.threshold, self.threshold_source)


def decide(score: float, speech: dict[str, float], calibration: ScoreCalibration | None,
           threshold: float | None = None, far: float | None = None, prior: float = 0.5,
           default_threshold: float | None = None, default_source: str | None = None) -> dict[str, Any]:
    """The verdict for a cosine score: calibrated when a calibration is given, with its threshold's source.

    The threshold is, in this order: ``threshold`` (given), the one for ``far`` on the
    calibration's non-target trials, ``default_threshold`` (the model dir's EER threshold), or
    the EER threshold of the calibration trials.

    Args:
        score: Cosine score.
        speech: Seconds of speech of each recording (see :func:`describe`).
        calibration: The model dir's calibration, or None.
        threshold: Given decision threshold.
        far: False-accept rate to choose the threshold for (needs ``calibration``).
        prior: Target prior of ``probability``.
        default_threshold: The threshold without ``threshold`` or ``far``.
        default_source: Where ``default_threshold`` came from.

    Returns:
        :func:`describe`'s verdict plus ``threshold_source``; with a calibration also ``llr``,
        ``prior`` and ``probability``; with ``far`` also ``far``, ``false_accepts``,
        ``num_nontargets`` and ``far_reliable`` (enough false accepts behind the threshold).

    Raises:
        ValueError: if no threshold can be chosen, or on ``far`` without a calibration.
    """
    extra: dict[str, Any] = {}
    if threshold is not None:
        source = "given"
    elif far is not None:
        if calibration is None:
            raise ValueError("a threshold for a false-accept rate needs the model dir's calibration")
        chosen = calibration.far_threshold(far)
        threshold = chosen.threshold
        source = chosen.source(calibration.trials)
        extra = {"far": far, "false_accepts": chosen.false_accepts, "num_nontargets": chosen.num_nontargets,
                 "far_reliable": chosen.reliable}
    elif default_threshold is not None:
        threshold, source = default_threshold, default_source or "the model dir's threshold"
    elif calibration is not None:
        threshold = calibration.eer_threshold
        source = (f"EER threshold of the {calibration.num_targets + calibration.num_nontargets} calibration trials "
                  f"in {calibration.trials}")
    else:
        raise ValueError("no decision threshold: give one")
    verdict = describe(score, threshold, speech)
    verdict["threshold_source"] = source
    if calibration is not None:
        verdict.update(llr=calibration.llr(score), prior=prior, probability=calibration.probability(score, prior))
    verdict.update(extra)
    return verdict


#: In the exp dir of a pretrained model's evaluation (``sv_stages.sh --pretrained DIR``): the path of DIR.
MODEL_POINTER_NAME = "model_dir"


def evaluated_model_dir(exp_dir: str | os.PathLike) -> Path:
    """``exp_dir``, or the model dir that its ``model_dir`` file names (an evaluation without a training).

    Args:
        exp_dir: A training's exp dir, an export dir, or an evaluation's exp dir.

    Returns:
        Where the weights and the front-end are.

    Raises:
        FileNotFoundError: if ``model_dir`` names a dir that does not exist.
    """
    exp_dir = Path(exp_dir)
    pointer = exp_dir / MODEL_POINTER_NAME
    if (exp_dir / "config.yaml").is_file() or not pointer.is_file():
        return exp_dir
    target = Path(pointer.read_text(encoding="utf-8").strip())
    target = target if target.is_absolute() else exp_dir / target
    if not target.is_dir():
        raise FileNotFoundError(f"{pointer}: the evaluated model dir {target} does not exist")
    return target


def load(model_dir: str | os.PathLike, checkpoint: str = "latest", runtime: str | None = None,
         precision: str = "fp32") -> SpeakerEmbedder:
    """The model of an exp dir or an export dir, ready to embed and verify audio.

    Example::

        import speakernet
        model = speakernet.load("egs/mini/v1/exp/ecapa_mini")
        model.verify("a.wav", "b.wav")   # {"score": ..., "same_speaker": ..., ...}

    Args:
        model_dir: Training output dir, an export dir (:mod:`speakernet.export`), or the exp dir of a
            pretrained model's evaluation (its ``model_dir`` file names the model).
        checkpoint: ``latest``, ``init``, ``avgN`` or a checkpoint file (exp dirs only).
        runtime: For an export dir, ``onnx`` (default) or ``torchscript``.
        precision: ``fp32`` (exact, default) or ``bf16`` (lossy, faster; exp dirs only).
    """
    return SpeakerEmbedder(model_dir, checkpoint, runtime, precision)


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
    reason = too_little_speech(speech or {})
    if reason:
        verdict.update(same_speaker=None, reliable=False, reason=reason)
    return verdict


def too_little_speech(speech: dict[str, float]) -> str | None:
    """Why a decision on these recordings would be unreliable (None when each has enough speech).

    Args:
        speech: Seconds of speech per recording name.
    """
    short = {audio: seconds for audio, seconds in speech.items() if seconds < MIN_RELIABLE_SECONDS}
    if not short:
        return None
    return "; ".join(f"{audio} has {'no speech' if seconds == 0 else f'only {seconds:.2f} s of speech'}"
                     for audio, seconds in short.items()) + f" (at least {MIN_RELIABLE_SECONDS:g} s are needed)"
