"""A model dir's calibration of its cosine scores: log-likelihood ratios and false-accept thresholds.

The CLI scores a pair of recordings by the cosine of their mean-subtracted embeddings (as the
recipe's cosine back-end does). This module turns such a score into what a decision needs:

* a **log-likelihood ratio** ``llr = a * score + b``, a global affine calibration fitted by
  prior-weighted logistic regression (Brummer's linear calibration, the same objective as the
  QMF fit of :mod:`speakernet.backend.calibration` with the score as its only feature) on the
  cosine scores of the recipe's calibration trials: training speakers, never an evaluation
  speaker, embedded whole like the CLI's input;
* the **posterior** ``P(same | prior) = sigmoid(llr + logit(prior))`` at a stated target prior;
* a **threshold for a false-accept rate**: the sorted non-target scores of the same trials are
  stored, so a threshold for any FAR is read off them, with the number of non-target trials and
  of false accepts behind it (a FAR of 0.001 from 3,000 non-targets rests on 3 errors).

The calibration is one JSON file in the model dir (:data:`CALIBRATION_NAME`), written by the
``speakernet.bin.calibrate`` stage, copied into export dirs, read by ``speakernet verify`` and
``speakernet identify``. It records the SHA-256 of the mean vector and of the checkpoint it was
fitted with: scores made otherwise are refused.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from speakernet.backend.embeddings import read_vector
from speakernet.backend.metrics import compute_cllr, compute_eer
from speakernet.utils.fileio import file_sha256
from speakernet.backend.score_files import trial_labels
from speakernet.backend.scoring import cosine_score_trials, load_trial_tables
from speakernet.backend.speaker_store import model_id
from speakernet.data.kaldi_dir import DataDirError
from speakernet.utils.fileio import PathLike, atomic_write

logger = logging.getLogger(__name__)

FORMAT = "speakernet-cosine-calibration"
VERSION = 1
#: The file in an exp dir (and an export dir) holding the calibration.
CALIBRATION_NAME = "cosine_calibration.json"
#: Where the recipe makes it, for error messages.
MADE_BY = ("stage 8 of tools/sv_stages.sh (python -m speakernet.bin.calibrate), which needs the calibration "
           "trials that stage 3 draws")
#: Fewer false accepts than this behind a FAR threshold make it a rough estimate. Doddington's
#: "rule of 30": 30 errors give a 90 % confidence interval of about +-30 % on the error rate.
RELIABLE_ERRORS = 30


class CalibrationError(ValueError):
    """A missing, malformed or mismatched calibration file (the message names it)."""


def logit(probability: float) -> float:
    """``log(p / (1 - p))``.

    Raises:
        ValueError: on a probability outside (0, 1).
    """
    if not 0.0 < probability < 1.0:
        raise ValueError(f"a prior must be in (0, 1), got {probability}")
    return math.log(probability / (1.0 - probability))


def fit_affine(scores: np.ndarray, labels: np.ndarray, prior: float = 0.5) -> tuple[float, float]:
    """Fits ``llr = a * score + b`` minimising the prior-weighted cross-entropy (Cllr at ``prior``).

    Args:
        scores: Raw scores ``[num_trials]``.
        labels: Boolean targets.
        prior: Effective target prior of the fit, in (0, 1).

    Returns:
        ``(a, b)``.

    Raises:
        ValueError: without both target and non-target trials, or on a prior outside (0, 1).
    """
    from speakernet.backend.calibration import fit_qmf  # (scipy.optimize: only when fitting)

    weights, bias = fit_qmf(np.asarray(scores, dtype=np.float64)[:, None], labels, prior)
    return float(weights[0]), float(bias)


def min_cllr(scores: np.ndarray, labels: np.ndarray) -> float:
    """Cllr after the best monotonic calibration of the scores (pool-adjacent-violators), in bits.

    What any calibration of these scores could reach: Cllr - minCllr is the calibration loss.

    Args:
        scores: Scores ``[num_trials]``.
        labels: Boolean targets (both classes present).

    Returns:
        minCllr in bits.
    """
    from sklearn.isotonic import IsotonicRegression

    labels = np.asarray(labels, dtype=bool)
    posterior = IsotonicRegression(y_min=0.0, y_max=1.0, increasing=True).fit_transform(
        np.asarray(scores, dtype=np.float64), labels.astype(np.float64))
    with np.errstate(divide="ignore"):
        log_odds = np.log(posterior) - np.log1p(-posterior)
    # Posteriors of 0 and 1 (runs of one class only) cost nothing: +-1000 is as good as +-inf there.
    return compute_cllr(np.clip(log_odds - logit(labels.mean()), -1000.0, 1000.0), labels)


@dataclass(frozen=True)
class FarThreshold:
    """A decision threshold chosen for a false-accept rate on the calibration non-targets.

    Attributes:
        threshold: Cosine score at or above which a pair is accepted.
        far: The FAR asked for.
        false_accepts: Calibration non-targets at or above the threshold.
        num_nontargets: Calibration non-targets in all.
    """

    threshold: float
    far: float
    false_accepts: int
    num_nontargets: int

    @property
    def empirical_far(self) -> float:
        """The FAR the threshold has on the calibration non-targets (at most :attr:`far`)."""
        return self.false_accepts / self.num_nontargets

    @property
    def reliable(self) -> bool:
        """Whether enough false accepts stand behind the threshold (:data:`RELIABLE_ERRORS`)."""
        return self.far * self.num_nontargets >= RELIABLE_ERRORS

    def source(self, trials: str) -> str:
        """Where the threshold came from, for a verdict: FAR, how many non-targets of which trial list."""
        text = (f"threshold {self.threshold:.5f} for FAR {self.far:g} from {self.num_nontargets} non-target "
                f"calibration trials in {trials}")
        if not self.reliable:
            text += f" (only {self.far * self.num_nontargets:.1f} false accepts expected among them: a rough estimate)"
        return text


@dataclass(frozen=True)
class ScoreCalibration:
    """The calibration of a model dir's cosine scores (see the module docstring).

    Attributes:
        scale: ``a`` of ``llr = a * score + b``.
        offset: ``b``.
        prior: Effective target prior the fit minimised Cllr at.
        trials: The calibration trial list it was fitted on.
        num_targets: Target trials.
        num_nontargets: Non-target trials.
        cllr: Cllr of the calibrated scores on those trials (bits).
        min_cllr: minCllr of the scores on those trials (bits).
        eer: EER on those trials (fraction).
        eer_threshold: Cosine score at the EER of those trials.
        nontarget_scores: The non-target cosine scores, sorted ascending.
        provenance: SHA-256 of the mean vector (``mean_sha256``) and checkpoint (``model_sha256``)
            the scores were made with, and the embeddings' scp.
    """

    scale: float
    offset: float
    prior: float
    trials: str
    num_targets: int
    num_nontargets: int
    cllr: float
    min_cllr: float
    eer: float
    eer_threshold: float
    nontarget_scores: np.ndarray = field(repr=False)
    provenance: dict[str, Any] = field(default_factory=dict)

    def llr(self, score: float) -> float:
        """The calibrated natural-log likelihood ratio of a cosine score."""
        return self.scale * float(score) + self.offset

    def probability(self, score: float, prior: float = 0.5) -> float:
        """``P(same speaker | score)`` for a target prior in (0, 1)."""
        value = self.llr(score) + logit(prior)
        return 1.0 / (1.0 + math.exp(-value)) if value >= 0 else math.exp(value) / (1.0 + math.exp(value))

    def far_threshold(self, far: float) -> FarThreshold:
        """The lowest threshold whose FAR on the calibration non-targets is at most ``far``.

        Below one non-target in ``1 / far`` (``far * N < 1``) no false accept is allowed: the
        threshold is just above the highest non-target score.

        Raises:
            ValueError: on a FAR outside (0, 1).
        """
        if not 0.0 < far < 1.0:
            raise ValueError(f"a false-accept rate must be in (0, 1), got {far}")
        scores = self.nontarget_scores
        count = len(scores)
        allowed = int(math.floor(far * count + 1e-9))
        if allowed == 0:
            threshold = float(np.nextafter(scores[-1], np.inf))
        else:
            threshold = float(scores[count - allowed])
            if count - np.searchsorted(scores, threshold, side="left") > allowed:  # ties straddle the cut
                above = np.searchsorted(scores, threshold, side="right")
                threshold = float(scores[above]) if above < count else float(np.nextafter(scores[-1], np.inf))
        accepted = int(count - np.searchsorted(scores, threshold, side="left"))
        return FarThreshold(threshold, far, accepted, count)

    def to_dict(self) -> dict[str, Any]:
        """The JSON record (``format``, ``version`` and every attribute)."""
        return {
            "format": FORMAT, "version": VERSION, "scale": self.scale, "offset": self.offset, "prior": self.prior,
            "trials": self.trials, "num_targets": self.num_targets, "num_nontargets": self.num_nontargets,
            "cllr": self.cllr, "min_cllr": self.min_cllr, "eer": self.eer, "eer_threshold": self.eer_threshold,
            "provenance": self.provenance,
            "nontarget_scores": [round(float(value), 7) for value in self.nontarget_scores],
        }

    def save(self, path: PathLike) -> None:
        """Writes the record as JSON, atomically."""
        with atomic_write(path) as handle:
            json.dump(self.to_dict(), handle, indent=1)
            handle.write("\n")

    @classmethod
    def load(cls, path: PathLike) -> ScoreCalibration:
        """Reads a file written by :meth:`save`.

        Raises:
            CalibrationError: naming the file when it is missing (and which stage makes it), not
                JSON, of another format or version, or lacks a field.
        """
        path = Path(path)
        if not path.is_file():
            raise CalibrationError(f"{path} does not exist: the model dir has no score calibration; {MADE_BY} "
                                   "writes it")
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise CalibrationError(f"{path}: not valid JSON ({error}); re-run the calibration stage") from None
        if not isinstance(record, dict) or record.get("format") != FORMAT:
            raise CalibrationError(f"{path} is not a {FORMAT} file")
        if record.get("version") != VERSION:
            raise CalibrationError(f"{path} is version {record.get('version')} of {FORMAT}; this speakernet reads "
                                   f"version {VERSION}")
        try:
            scores = np.asarray(record["nontarget_scores"], dtype=np.float64)
            calibration = cls(
                float(record["scale"]), float(record["offset"]), float(record["prior"]), str(record["trials"]),
                int(record["num_targets"]), int(record["num_nontargets"]), float(record["cllr"]),
                float(record["min_cllr"]), float(record["eer"]), float(record["eer_threshold"]), np.sort(scores),
                dict(record.get("provenance", {})),
            )
        except (KeyError, TypeError, ValueError) as error:
            raise CalibrationError(f"{path}: a missing or malformed field ({type(error).__name__}: {error})") from None
        if len(scores) == 0 or len(scores) != calibration.num_nontargets or not np.isfinite(scores).all():
            raise CalibrationError(f"{path}: needs num_nontargets finite non-target scores")
        return calibration


def fit_score_calibration(scores: np.ndarray, labels: np.ndarray, trials: str, prior: float = 0.5,
                          provenance: dict[str, Any] | None = None) -> ScoreCalibration:
    """Fits the calibration of cosine scores of labelled trials.

    Args:
        scores: Cosine scores ``[num_trials]``.
        labels: Boolean targets.
        trials: Name of the trial list (recorded).
        prior: Effective target prior of the fit.
        provenance: What the scores were made with (recorded).

    Returns:
        The calibration.

    Raises:
        ValueError: without both target and non-target trials, or on a prior outside (0, 1).
    """
    scores, labels = np.asarray(scores, dtype=np.float64), np.asarray(labels, dtype=bool)
    scale, offset = fit_affine(scores, labels, prior)
    eer, eer_threshold = compute_eer(scores, labels)
    return ScoreCalibration(
        scale, offset, prior, trials, int(labels.sum()), int((~labels).sum()),
        compute_cllr(scale * scores + offset, labels), min_cllr(scores, labels), float(eer), float(eer_threshold),
        np.sort(scores[~labels]), dict(provenance or {}),
    )


def calibrate_files(trials_path: PathLike, scp: PathLike, mean_vec: PathLike, out: PathLike,
                    prior: float = 0.5, model_file: PathLike | None = None) -> ScoreCalibration:
    """The ``calibrate`` stage: scores the calibration trials as the CLI would, fits, writes ``out``.

    Args:
        trials_path: Calibration trial list (both sides in ``scp``).
        scp: Embeddings of the calibration utterances (``xvector.scp``), embedded whole.
        mean_vec: The training-set mean the CLI subtracts (the model dir's ``mean.vec``).
        out: The calibration file (JSON), usually ``exp_dir/`` :data:`CALIBRATION_NAME`.
        prior: Effective target prior of the fit.
        model_file: The checkpoint that made the embeddings (its SHA-256 is recorded).

    Returns:
        The calibration.

    Raises:
        DataDirError: on unreadable inputs or trials without both classes (naming the file).
        ValueError: on a prior outside (0, 1).
    """
    logit(prior)  # checks it
    trials, table, _ = load_trial_tables(trials_path, scp, scp)
    scores = cosine_score_trials(trials, table, table, read_vector(mean_vec), trials_path=trials_path,
                                 enroll_source=str(scp), test_source=str(scp))
    provenance = {"mean_sha256": file_sha256(mean_vec), "embeddings": str(scp)}
    if model_file is not None:
        provenance["model_sha256"] = model_id(model_file)  # as a speaker store identifies its model
    try:
        calibration = fit_score_calibration(scores, trial_labels(trials), str(trials_path), prior, provenance)
    except ValueError as error:
        raise DataDirError(trials_path, f"cannot calibrate on these trials: {error}") from None
    calibration.save(out)
    logger.info("calibration on %d target and %d non-target trials of %s: llr = %.4f * score %+.4f (prior %g); "
                "Cllr %.4f bits, minCllr %.4f, EER %.2f%% at %.4f; in %s", calibration.num_targets,
                calibration.num_nontargets, trials_path, calibration.scale, calibration.offset, prior,
                calibration.cllr, calibration.min_cllr, 100 * calibration.eer, calibration.eer_threshold, out)
    return calibration
