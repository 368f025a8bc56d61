"""Enrolled speakers on disk, and open-set identification against them.

A store is a directory::

    S/xvector.ark, S/xvector.scp   one embedding per enrolment recording (Kaldi, keys <speaker>-<nnnn>)
    S/utt2spk                      recording key -> speaker
    S/sources                      recording key -> the audio it came from
    S/store.json                   the model it was made with (``model_id``), embedding size, format

Every change (adding recordings, removing a speaker) writes a new store under a temporary name
and renames it into place while holding ``S.lock`` beside it, so a crash or a concurrent change
never leaves half a store. No pickle anywhere: Kaldi tables and JSON.

A speaker's model is the mean of its recordings' embeddings; scores are the recipe's cosine
back-end (the model dir's training-set mean subtracted from both sides).
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any, Sequence

import kaldiio
import numpy as np

from speakernet.backend.embeddings import write_embeddings
from speakernet.data.kaldi_dir import c_sort_key, read_scp, write_scp
from speakernet.utils.fileio import PathLike, atomic_dir, atomic_write, exclusive_lock, file_sha256

logger = logging.getLogger(__name__)

STORE_FORMAT = "speakernet-speaker-store"
STORE_INFO = "store.json"
_SPEAKER_NAME = re.compile(r"^[^\s/\\]+$")


class StoreError(ValueError):
    """A store that is missing, damaged, or made with another model (the message names it)."""


def model_id(path: PathLike) -> str:
    """SHA-256 of a model file (a checkpoint, or an export's ``model.onnx``): which model made a store."""
    return file_sha256(path)


class SpeakerStore:
    """The enrolment recordings' embeddings of a store dir, loaded.

    Args:
        path: Store dir (need not exist: an empty store).
    """

    def __init__(self, path: PathLike):
        self.path = Path(path)
        self.info: dict[str, Any] = {}
        self.keys: list[str] = []
        self.matrix = np.zeros((0, 0), dtype=np.float32)
        self.utt2spk: dict[str, str] = {}
        self.sources: dict[str, str] = {}
        if not (self.path / STORE_INFO).is_file():
            if self.path.exists() and any(self.path.iterdir()):
                raise StoreError(f"{self.path} is not a speaker store (no {STORE_INFO}); give a new or empty dir")
            return
        try:
            self.info = json.loads((self.path / STORE_INFO).read_text(encoding="utf-8"))
        except json.JSONDecodeError as error:
            raise StoreError(f"{self.path / STORE_INFO}:{error.lineno}: not valid JSON ({error.msg})") from None
        if self.info.get("format") != STORE_FORMAT:
            raise StoreError(f"{self.path / STORE_INFO} is not a {STORE_FORMAT} record")
        self.utt2spk = read_scp(self.path / "utt2spk")
        self.sources = read_scp(self.path / "sources")
        if self.utt2spk:  # read from the archive itself, so a store dir can be moved or copied
            try:
                table = list(kaldiio.load_ark(str(self.path / "xvector.ark")))
            except (OSError, ValueError) as error:
                raise StoreError(f"{self.path / 'xvector.ark'}: cannot read it ({error}); the store is damaged "
                                 "(re-enrol its speakers)") from None
            self.keys = [key for key, _ in table]
            self.matrix = np.stack([np.asarray(vector, dtype=np.float32) for _, vector in table])
        if set(self.keys) != set(self.utt2spk):
            raise StoreError(f"{self.path}: xvector.scp and utt2spk hold different recordings; the store is "
                             "damaged (re-enrol its speakers)")

    @property
    def speakers(self) -> list[str]:
        """Enrolled speakers, C-sorted."""
        return sorted(set(self.utt2spk.values()), key=c_sort_key)

    def check_model(self, identity: str) -> None:
        """Raises :class:`StoreError` unless the store was made with the model ``identity`` (or is empty)."""
        stored = self.info.get("model_id")
        if stored is not None and stored != identity:
            raise StoreError(f"{self.path} was enrolled with another model ({self.info.get('model_dir')}); embeddings "
                             "of different models cannot be compared: use a store per model")

    def speaker_models(self, mean: np.ndarray | None) -> tuple[list[str], np.ndarray]:
        """Each speaker's mean embedding, mean-subtracted and unit-length: ``(speakers, [S, D])``."""
        speakers = self.speakers
        rows = {speaker: [] for speaker in speakers}
        for key, vector in zip(self.keys, self.matrix):
            rows[self.utt2spk[key]].append(vector)
        means = np.stack([np.mean(rows[speaker], axis=0) for speaker in speakers]).astype(np.float64)
        return speakers, _unit(means - (0.0 if mean is None else mean))

    def _write(self, keys: list[str], matrix: np.ndarray, utt2spk: dict[str, str], sources: dict[str, str],
               info: dict[str, Any]) -> None:
        with atomic_dir(self.path) as work:
            if keys:  # the scp names the archive where it will be once the dir is renamed into place
                write_embeddings(work / "xvector.ark", work / "xvector.scp", keys, matrix,
                                 scp_ark_path=self.path / "xvector.ark")
            write_scp(work / "utt2spk", utt2spk)
            write_scp(work / "sources", sources)
            with atomic_write(work / STORE_INFO) as handle:
                json.dump(info, handle, indent=2)


def _unit(matrix: np.ndarray) -> np.ndarray:
    return matrix / np.maximum(np.linalg.norm(matrix, axis=-1, keepdims=True), 1e-12)


def _lock(path: Path) -> Any:
    return exclusive_lock(path.with_name(f"{path.name}.lock"), "a change of this speaker store")


def enroll(store_dir: PathLike, speaker: str, embeddings: np.ndarray, sources: Sequence[str], identity: str,
           model_dir: str) -> SpeakerStore:
    """Adds recordings of ``speaker`` (new or enrolled) to a store, atomically.

    Args:
        store_dir: Store dir (created on first use).
        speaker: Speaker name (no whitespace or slashes).
        embeddings: ``[N, D]`` embeddings of the recordings.
        sources: The N recordings they came from (recorded in ``sources``).
        identity: :func:`model_id` of the model that made them.
        model_dir: Its dir, for messages.

    Returns:
        The store as written.

    Raises:
        StoreError: on a bad name, another model's store, or another embedding size.
    """
    if not _SPEAKER_NAME.match(speaker):
        raise StoreError(f"speaker name '{speaker}' must be non-empty, without whitespace or slashes")
    store_dir = Path(store_dir)
    with _lock(store_dir):
        store = SpeakerStore(store_dir)
        store.check_model(identity)
        embeddings = np.atleast_2d(np.asarray(embeddings, dtype=np.float32))
        if store.keys and embeddings.shape[1] != store.matrix.shape[1]:
            raise StoreError(f"{store_dir} holds {store.matrix.shape[1]}-dim embeddings, not {embeddings.shape[1]}")
        taken = {key for key, owner in store.utt2spk.items() if owner == speaker}
        keys, utt2spk, source_map = list(store.keys), dict(store.utt2spk), dict(store.sources)
        number = len(taken)
        new_keys = []
        for source in sources:
            while f"{speaker}-{number:04d}" in taken:
                number += 1
            key = f"{speaker}-{number:04d}"
            taken.add(key)
            new_keys.append(key)
            utt2spk[key], source_map[key] = speaker, source
        keys += new_keys
        matrix = np.concatenate([store.matrix.reshape(-1, embeddings.shape[1]), embeddings])
        info = {"format": STORE_FORMAT, "version": 1, "model_id": identity, "model_dir": model_dir,
                "embed_dim": int(embeddings.shape[1])}
        store._write(keys, matrix, utt2spk, source_map, info)
    logger.info("enrolled %d recording(s) of %s in %s", len(new_keys), speaker, store_dir)
    return SpeakerStore(store_dir)


def remove_speaker(store_dir: PathLike, speaker: str) -> SpeakerStore:
    """Removes a speaker and all its recordings from a store, atomically.

    Raises:
        StoreError: if the store does not hold ``speaker``.
    """
    store_dir = Path(store_dir)
    with _lock(store_dir):
        store = SpeakerStore(store_dir)
        if speaker not in store.speakers:
            listing = ", ".join(store.speakers) or "none"
            raise StoreError(f"{store_dir} has no speaker '{speaker}' (enrolled: {listing})")
        kept = [index for index, key in enumerate(store.keys) if store.utt2spk[key] != speaker]
        keys = [store.keys[index] for index in kept]
        store._write(keys, store.matrix[kept], {key: store.utt2spk[key] for key in keys},
                     {key: store.sources[key] for key in keys}, store.info)
    logger.info("removed speaker %s from %s", speaker, store_dir)
    return SpeakerStore(store_dir)


def identify(store: SpeakerStore, embedding: np.ndarray, mean: np.ndarray | None, threshold: float,
             top: int = 5) -> dict[str, Any]:
    """Ranks the enrolled speakers for one test embedding (open set: ``unknown`` under the threshold).

    Args:
        store: A loaded store.
        embedding: ``[D]`` test embedding.
        mean: Training-set mean subtracted from both sides (the model dir's ``mean.vec``), or None.
        threshold: Cosine score at or above which the best speaker is accepted.
        top: Ranked speakers to return.

    Returns:
        ``{"speaker": name or None, "score", "threshold", "ranking": [{"speaker", "score"}, ...]}``.

    Raises:
        StoreError: if the store holds no speaker.
    """
    if not store.keys:
        raise StoreError(f"{store.path} holds no enrolled speaker; enrol some first")
    speakers, models = store.speaker_models(mean)
    test = _unit(np.asarray(embedding, dtype=np.float64) - (0.0 if mean is None else mean))
    scores = models @ test
    order = np.argsort(-scores, kind="stable")[: max(1, top)]
    ranking = [{"speaker": speakers[index], "score": float(scores[index])} for index in order]
    best = ranking[0]
    return {"speaker": best["speaker"] if best["score"] >= threshold else None, "score": best["score"],
            "threshold": threshold, "ranking": ranking}
