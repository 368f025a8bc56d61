"""Embedding extraction: windows, full vs multi-crop, outputs and their consistency."""

from __future__ import annotations

import sys
from pathlib import Path

import kaldiio
import numpy as np
import pytest
import torch

from speakernet.backend.embeddings import load_embeddings, read_vector
from speakernet.backend.extract import crop_starts, extract_embeddings, prepare_features
from speakernet.models import build_model

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "training"))
from training_data import make_feature_dir  # noqa: E402


def test_crop_starts_cover_the_utterance() -> None:
    assert crop_starts(1000, 300, 5) == [0, 175, 350, 525, 700]
    assert crop_starts(300, 300, 3) == [0, 0, 0]
    assert crop_starts(500, 300, 1) == [100]


def test_prepare_features_vad_pad_and_cmn() -> None:
    feats = np.arange(20, dtype=np.float32).reshape(10, 2)
    vad = np.array([0, 1, 1, 0, 1, 0, 0, 0, 0, 0], dtype=np.float32)
    out = prepare_features(feats, vad, min_frames=5)
    # voiced frames 1, 2, 4 -> wrap-padded to 5 frames (1, 2, 4, 1, 2), then mean-removed
    expected = feats[[1, 2, 4, 1, 2]]
    np.testing.assert_allclose(out, expected - expected.mean(axis=0))
    # no voiced frame: falls back to every frame instead of failing
    assert prepare_features(feats, np.zeros(10, np.float32), 5).shape == (10, 2)


@pytest.fixture
def tiny_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model("ECAPA_TDNN", feat_dim=20, channels=16, embed_dim=8, attention_bottleneck=8, se_bottleneck=8)


def test_full_mode_matches_a_direct_forward_and_writes_means(tmp_path: Path, tiny_model: torch.nn.Module) -> None:
    data = make_feature_dir(tmp_path / "corpus", num_speakers=3, utts_per_speaker=2)
    stats = extract_embeddings(tiny_model, data, tmp_path / "emb", mode="full", use_vad=True)
    assert stats["utterances"] == 6
    keys, matrix = load_embeddings(tmp_path / "emb" / "xvector.scp")
    assert keys == sorted(keys) and matrix.shape == (6, 8)
    # the first utterance by hand: VAD, CMN, one forward pass
    feats = kaldiio.load_mat((data / "feats.scp").read_text().split()[1])
    vad = kaldiio.load_mat((data / "vad.scp").read_text().split()[1])
    x = prepare_features(feats, vad, 50)
    with torch.no_grad():
        direct = tiny_model.eval()(torch.from_numpy(x)[None])[0].numpy()
    np.testing.assert_allclose(matrix[0], direct, rtol=1e-5, atol=1e-6)
    spk_keys, spk_matrix = load_embeddings(tmp_path / "emb" / "spk_xvector.scp")
    assert spk_keys == ["spk00", "spk01", "spk02"]
    np.testing.assert_allclose(spk_matrix[0], matrix[:2].mean(axis=0), rtol=1e-5)
    np.testing.assert_allclose(read_vector(tmp_path / "emb" / "mean.vec"), matrix.mean(axis=0), rtol=1e-5, atol=1e-7)


def test_multicrop_batches_give_the_same_as_one_by_one(tmp_path: Path, tiny_model: torch.nn.Module) -> None:
    data = make_feature_dir(tmp_path / "corpus", num_speakers=2, utts_per_speaker=3)
    extract_embeddings(tiny_model, data, tmp_path / "a", mode="multicrop", num_crops=3, crop_frames=60, batch_size=64)
    extract_embeddings(tiny_model, data, tmp_path / "b", mode="multicrop", num_crops=3, crop_frames=60, batch_size=3)
    _, a = load_embeddings(tmp_path / "a" / "xvector.scp")
    _, b = load_embeddings(tmp_path / "b" / "xvector.scp")
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="unknown extraction mode"):
        extract_embeddings(tiny_model, data, tmp_path / "d", mode="random")


def test_multicrop_windows_are_mean_normalised_each() -> None:
    from speakernet.backend.extract import _windows

    feats = np.cumsum(np.ones((400, 3), dtype=np.float32), axis=0)  # a ramp: crops differ in mean
    windows = _windows(feats, "multicrop", crop_frames=100, num_crops=3)
    assert windows.shape == (3, 100, 3)
    np.testing.assert_allclose(windows.mean(axis=1), 0.0, atol=1e-4)
    np.testing.assert_allclose(windows[0], windows[2], atol=1e-4)  # same shape of ramp, mean removed
    assert _windows(feats, "full", 100, 3).shape == (1, 400, 3)
