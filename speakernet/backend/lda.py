"""Kaldi-style LDA and length normalisation of embeddings (the PLDA back-end's front half).

``compute_lda`` is ``ivector-compute-lda --total-covariance-factor=0``: between-class against
within-class scatter as a generalised symmetric eigenproblem; ``length_normalize`` is
``ivector-normalize-length``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

logger = logging.getLogger(__name__)


class ZeroRowError(ValueError):
    """A row that cannot be normalised; ``row`` is its index so that callers can name its key."""

    def __init__(self, row: int, what: str):
        self.row, self.what = row, what
        super().__init__(f"row {row} {what}")

    @classmethod
    def check(cls, values: np.ndarray, what: str) -> None:
        bad = np.flatnonzero(~(values > 0) | ~np.isfinite(values))
        if bad.size:
            raise cls(int(bad[0]), what)


def symmetrize(matrix: np.ndarray) -> np.ndarray:
    """(M + M^T) / 2: removes the rounding asymmetry of products that are symmetric in theory."""
    return (matrix + matrix.T) / 2.0


def length_normalize(matrix: np.ndarray) -> np.ndarray:
    """Scales each row of ``[num, dim]`` to norm ``sqrt(dim)`` (Kaldi's ``ivector-normalize-length``).

    Returns:
        Float64 matrix of the same shape.

    Raises:
        ValueError: if a row has zero or non-finite norm (the message gives its index).
    """
    matrix = np.asarray(matrix, dtype=np.float64)
    norms = np.linalg.norm(matrix, axis=1)
    ZeroRowError.check(norms, "has zero or non-finite norm and cannot be length-normalised")
    return matrix * (np.sqrt(matrix.shape[1]) / norms)[:, None]


def class_stats(matrix: np.ndarray, labels: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-class counts ``[C]``, means ``[C, dim]`` and the pooled within-class scatter ``[dim, dim]``."""
    _, index = np.unique(np.asarray(labels), return_inverse=True)
    index = index.reshape(-1)
    counts = np.bincount(index).astype(np.float64)
    # A sparse one-hot product and scatter = X^T X - sum_c n_c m_c m_c^T avoid [N, dim] temporaries, which
    # cost more than the products on 100k+ rows (np.add.at is slower still); float64 keeps the
    # difference accurate.
    import scipy.sparse  # (imported here, as scipy.linalg below: training needs them, scoring does not)

    one_hot = scipy.sparse.csr_matrix((np.ones(index.size), (index, np.arange(index.size))))
    sums = np.asarray(one_hot @ matrix)
    means = sums / counts[:, None]
    return counts, means, symmetrize(matrix.T @ matrix - sums.T @ means)


def compute_lda(matrix: np.ndarray, labels: Sequence[str], lda_dim: int) -> np.ndarray:
    """Kaldi's LDA (``--total-covariance-factor=0``): solves ``between v = l within v``.

    Within ``= sum_s sum_i (x - xbar_s)(x - xbar_s)^T / N``, between ``= sum_s n_s (xbar_s - xbar)(...)^T / N``,
    so a speaker with one utterance adds to the between-class statistics only (and to ``N``).

    Args:
        matrix: Embeddings ``[N, dim]``, normally mean-subtracted; labels: the speaker of each row.
        lda_dim: Directions kept; capped at ``min(dim, num_speakers - 1)`` (a warning when the
            speakers are the limit).

    Returns:
        Float64 ``[lda_dim, dim]``, rows by decreasing between-class variance, scaled so that the
        projected within-class covariance is the identity.

    Raises:
        ValueError: on fewer than 2 speakers, no more utterances than speakers, or a within-class
            covariance that stays singular after regularisation (a singular one gets a small ridge).
    """
    import scipy.linalg

    matrix = np.asarray(matrix, dtype=np.float64)
    num, dim = matrix.shape
    counts, means, scatter = class_stats(matrix, labels)
    if counts.size < 2 or num <= counts.size:
        raise ValueError(f"LDA needs 2 or more speakers and more utterances than speakers, got {counts.size} "
                         f"speakers and {num} utterances")
    cap = min(dim, counts.size - 1)  # the between-class scatter has rank at most num_speakers - 1
    if lda_dim > cap:
        # Asking for more dimensions than the embeddings have is the usual case with a recipe default
        # (200 for 128-d embeddings) and harmless; fewer speakers than dimensions is worth a warning.
        log = logger.warning if cap < dim else logger.info
        log("LDA dimension %d capped at %d (input dim %d, %d speakers)", lda_dim, cap, dim, counts.size)
        lda_dim = cap
    if lda_dim <= 0:
        raise ValueError(f"LDA dimension must be positive, got {lda_dim}")
    centred_means = means - matrix.mean(axis=0)
    between = symmetrize((centred_means * counts[:, None]).T @ centred_means) / num
    within = scatter / num
    try:
        values, vectors = scipy.linalg.eigh(between, within)
    except np.linalg.LinAlgError:
        # Fewer within-class degrees of freedom than dimensions (a small training set): a ridge of
        # 1e-3 of the mean within-class variance makes the problem solvable, and says so.
        ridge = 1e-3 * max(float(np.trace(within)) / dim, 1e-12)
        logger.warning("LDA: within-class covariance is singular (%d utterances of %d speakers for dimension %d); "
                       "adding %.3g to its diagonal (more training utterances give a better LDA/PLDA)",
                       num, counts.size, dim, ridge)
        try:
            values, vectors = scipy.linalg.eigh(between, within + ridge * np.eye(dim))
        except np.linalg.LinAlgError as error:
            raise ValueError(f"within-class covariance is singular ({num} utterances of {counts.size} speakers "
                             f"for dimension {dim}): {error}") from error
    order = np.argsort(values)[::-1]
    logger.info("LDA %d -> %d: between/within variance ratios kept %.3g .. %.3g, first dropped %s", dim, lda_dim,
                values[order[0]], values[order[lda_dim - 1]],
                f"{values[order[lda_dim]]:.3g}" if lda_dim < dim else "none")
    # eigh scales the vectors so that v^T within v = 1, i.e. the projection whitens the within-class covariance.
    return vectors[:, order[:lda_dim]].T.copy()
