"""Speaker store: enrol, remove, identify (open set), atomic changes, one model per store."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from speakernet.backend import speaker_store as ss


def _voices(seed: int = 0, dim: int = 16) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {name: rng.normal(size=dim) for name in ("alice", "bob", "carol")}


def _recordings(centre: np.ndarray, count: int, seed: int) -> np.ndarray:
    return (centre + 0.3 * np.random.default_rng(seed).normal(size=(count, centre.size))).astype(np.float32)


def test_enrol_identify_and_remove(tmp_path: Path) -> None:
    store_dir = tmp_path / "store"
    voices = _voices()
    for seed, name in enumerate(("alice", "bob")):
        ss.enroll(store_dir, name, _recordings(voices[name], 3, seed), [f"{name}{i}.wav" for i in range(3)], "m1",
                  "exp")
    store = ss.enroll(store_dir, "alice", _recordings(voices["alice"], 2, 7), ["a3.wav", "a4.wav"], "m1", "exp")
    assert store.speakers == ["alice", "bob"]
    assert sorted(key for key, owner in store.utt2spk.items() if owner == "alice") == [
        f"alice-{n:04d}" for n in range(5)]
    assert store.sources["alice-0004"] == "a4.wav"
    from speakernet.backend.embeddings import load_embeddings

    assert load_embeddings(store_dir / "xvector.scp")[0] == store.keys  # Kaldi tools read the store too
    # a speaker's model is the mean of its recordings; scores are cosine after the mean subtraction
    speakers, models = store.speaker_models(None)
    alice = np.mean([v for k, v in zip(store.keys, store.matrix) if store.utt2spk[k] == "alice"], axis=0)
    np.testing.assert_allclose(models[0], alice / np.linalg.norm(alice), rtol=1e-6)
    result = ss.identify(store, voices["alice"] + 0.1, None, threshold=0.5)
    assert result["speaker"] == "alice" and [r["speaker"] for r in result["ranking"]] == ["alice", "bob"]
    assert result["ranking"][0]["score"] > result["ranking"][1]["score"]
    assert result["score"] == pytest.approx(float(models[0] @ ((voices["alice"] + 0.1) / np.linalg.norm(
        voices["alice"] + 0.1))))
    stranger = ss.identify(store, voices["carol"], None, threshold=0.9)
    assert stranger["speaker"] is None and stranger["ranking"][0]["score"] < 0.9
    mean = voices["alice"]  # subtracting a mean changes the scores
    with_mean = ss.identify(store, voices["bob"], mean, 0.0)["score"]
    assert with_mean != ss.identify(store, voices["bob"], None, 0.0)["score"]
    store = ss.remove_speaker(store_dir, "bob")
    assert store.speakers == ["alice"] and len(store.keys) == 5
    with pytest.raises(ss.StoreError, match=r"has no speaker 'bob' \(enrolled: alice\)"):
        ss.remove_speaker(store_dir, "bob")
    store = ss.remove_speaker(store_dir, "alice")
    with pytest.raises(ss.StoreError, match="holds no enrolled speaker"):
        ss.identify(store, voices["alice"], None, 0.5)


def test_one_model_per_store_and_named_errors(tmp_path: Path) -> None:
    store_dir = tmp_path / "store"
    ss.enroll(store_dir, "alice", np.ones((1, 4)), ["a.wav"], "m1", "exp/one")
    with pytest.raises(ss.StoreError, match=r"enrolled with another model \(exp/one\)"):
        ss.enroll(store_dir, "bob", np.ones((1, 4)), ["b.wav"], "m2", "exp/two")
    with pytest.raises(ss.StoreError, match="holds 4-dim embeddings, not 3"):
        ss.enroll(store_dir, "bob", np.ones((1, 3)), ["b.wav"], "m1", "exp/one")
    with pytest.raises(ss.StoreError, match="must be non-empty, without whitespace"):
        ss.enroll(store_dir, "bob smith", np.ones((1, 4)), ["b.wav"], "m1", "exp/one")
    ss.SpeakerStore(store_dir).check_model("m1")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine\n")
    with pytest.raises(ss.StoreError, match="is not a speaker store"):
        ss.enroll(tmp_path / "other", "alice", np.ones((1, 4)), ["a.wav"], "m1", "exp")
    assert (tmp_path / "other" / "notes.txt").read_text() == "mine\n"


def test_a_failed_change_leaves_the_store_as_it_was(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store_dir = tmp_path / "store"
    ss.enroll(store_dir, "alice", np.ones((2, 4)), ["a.wav", "b.wav"], "m1", "exp")
    before = {path.name: path.read_bytes() for path in store_dir.iterdir()}

    def full_disk(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ss, "write_scp", full_disk)
    with pytest.raises(OSError):
        ss.enroll(store_dir, "bob", np.ones((1, 4)), ["c.wav"], "m1", "exp")
    with pytest.raises(OSError):
        ss.remove_speaker(store_dir, "alice")
    assert {path.name: path.read_bytes() for path in store_dir.iterdir()} == before
    assert sorted(path.name for path in tmp_path.iterdir()) == ["store", "store.lock"]  # no temporary left
