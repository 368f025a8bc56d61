"""ONNX and TorchScript export (parity, onnxruntime inference) and the Python API over exp and export dirs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch

from speakernet.config import load_config
from speakernet.export import ExportError, OnnxModel, export_model, load_exported
from speakernet.features.fbank import FbankConfig
from speakernet.features.frontend import save_frontend
from speakernet.features.vad import VadConfig
from speakernet.inference import SpeakerEmbedder
from speakernet.training import checkpoint as ckpt
from speakernet.training.trainer import train

from training_data import TINY_OVERRIDES

pytest.importorskip("onnxruntime", reason="the export extra (pip install -e .[export]) is not installed")

# x-vector: the quickest model to export (torch.export traces every block)
XVEC = ["model=XVEC", "model_args.hid_dim=16", "model_args.stats_dim=24", "model_args.embed_dim=8",
        "training.max_steps=2"]


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from training_data import make_feature_dir

    root = tmp_path_factory.mktemp("export")
    exp = root / "exp"
    train(load_config(None, TINY_OVERRIDES + XVEC), make_feature_dir(root / "corpus"), exp)
    save_frontend(exp, FbankConfig(num_mel_bins=20), VadConfig())  # the tiny features were made without one
    (exp / "threshold").write_text("0.25\n")
    export_model(exp, root / "export", "latest")
    return {"exp": exp, "export": root / "export"}


def test_exports_equal_the_pytorch_model_on_lengths_and_batches_they_were_not_traced_with(
        exported: dict[str, Path]) -> None:
    info = json.loads((exported["export"] / "export.json").read_text())
    assert set(info["formats"]) == {"onnx", "torchscript"} and info["feat_dim"] == 20 and info["embed_dim"] == 8
    assert all(record["max_abs_diff"] <= 1e-4 for record in info["formats"].values())
    assert info["source"] == str(ckpt.resolve_checkpoint(exported["exp"], "latest").resolve())
    model, _ = ckpt.load_model(exported["exp"], "latest")
    onnx_model = OnnxModel(exported["export"] / "model.onnx")
    scripted = load_exported(exported["export"] / "model.torchscript", "torchscript")
    for batch, frames in ((1, 60), (3, 333), (2, 1001)):
        feats = torch.randn(batch, frames, 20)
        with torch.inference_mode():
            expected = model(feats)
            assert expected.shape == (batch, 8)
            torch.testing.assert_close(onnx_model(feats), expected, rtol=0, atol=1e-4)
            torch.testing.assert_close(scripted(feats), expected, rtol=0, atol=1e-4)
    # the exp dir's threshold travels with the export, for the CLI
    assert (exported["export"] / "threshold").read_text() == "0.25\n"
    assert (exported["export"] / "frontend.json").read_bytes() == (exported["exp"] / "frontend.json").read_bytes()


def test_the_embedder_runs_an_export_dir_like_its_exp_dir(exported: dict[str, Path], tmp_path: Path) -> None:
    wav = tmp_path / "a.wav"
    t = np.arange(32000) / 16000
    soundfile.write(wav, (0.3 * np.sin(2 * np.pi * 180 * t) * (1 + np.sin(2 * np.pi * 3 * t))).astype(np.float32),
                    16000)
    expected = SpeakerEmbedder(exported["exp"]).embed(str(wav))
    for runtime in (None, "onnx", "torchscript"):
        got = SpeakerEmbedder(exported["export"], runtime=runtime).embed(str(wav))
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-4)
    with pytest.raises(ValueError, match="holds no torchscript export"):
        info = json.loads((exported["export"] / "export.json").read_text())
        only_onnx = tmp_path / "only_onnx"
        only_onnx.mkdir()
        for name in ("model.onnx", "frontend.json"):
            (only_onnx / name).write_bytes((exported["export"] / name).read_bytes())
        info["formats"].pop("torchscript")
        (only_onnx / "export.json").write_text(json.dumps(info))
        SpeakerEmbedder(only_onnx, runtime="torchscript")


def test_an_export_that_differs_is_refused_and_removed(exported: dict[str, Path], tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from speakernet import export

    monkeypatch.setattr(export, "_parity", lambda *args: 0.5)
    with pytest.raises(ExportError, match=r"model\.torchscript: its embeddings differ from the PyTorch model's by up "
                                          r"to 0\.5 \(tolerance 0\.0001\); the export was removed"):
        export_model(exported["exp"], tmp_path / "bad", formats=["torchscript"])
    assert not (tmp_path / "bad" / "model.torchscript").exists() and not (tmp_path / "bad" / "export.json").exists()
    with pytest.raises(ExportError, match="unknown export format"):
        export_model(exported["exp"], tmp_path / "bad", formats=["tflite"])
    (tmp_path / "model.onnx").write_bytes(b"not a graph")
    with pytest.raises(ExportError, match=r"model\.onnx: onnxruntime cannot load it"):
        OnnxModel(tmp_path / "model.onnx")


def _voice(seconds: float, rate: int, pitch: float) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * pitch * t) * (1 + np.sin(2 * np.pi * 3 * t))).astype(np.float32)


def test_python_api_takes_files_waveforms_and_lists(exported: dict[str, Path], tmp_path: Path) -> None:
    import speakernet

    model = speakernet.load(exported["exp"])
    wav = tmp_path / "a.wav"
    soundfile.write(wav, _voice(2.0, 16000, 180), 16000)
    from_file = model.embed(str(wav))
    assert from_file.shape == (8,) and from_file.dtype == np.float32
    samples, _ = soundfile.read(wav, dtype="float32")
    np.testing.assert_allclose(model.embed(samples, sample_rate=16000), from_file, rtol=0, atol=1e-6)
    np.testing.assert_allclose(model.embed(torch.from_numpy(samples), sample_rate=16000), from_file, rtol=0, atol=1e-6)
    pcm, _ = soundfile.read(wav, dtype="int16")
    np.testing.assert_allclose(model.embed(pcm, sample_rate=16000), from_file, rtol=0, atol=1e-6)
    # another rate is resampled as a file at that rate would be
    wav8 = tmp_path / "a8k.wav"
    soundfile.write(wav8, _voice(2.0, 8000, 180), 8000)
    samples8, _ = soundfile.read(wav8, dtype="float32")  # the file's 16-bit samples
    np.testing.assert_allclose(model.embed(samples8, sample_rate=8000), model.embed(wav8), rtol=0, atol=1e-6)
    other = _voice(2.0, 16000, 260)
    batch = model.embed([wav, other], sample_rate=16000)
    assert batch.shape == (2, 8)
    np.testing.assert_allclose(batch[0], from_file, rtol=0, atol=1e-6)
    np.testing.assert_allclose(batch[1], model.embed(other, sample_rate=16000), rtol=0, atol=1e-6)
    for bad, message in ((np.zeros((2, 16000)), "must be 1-D"), (samples, "give sample_rate="),
                         (np.full(16000, np.nan), "NaN or Inf")):
        with pytest.raises(ValueError, match=message):
            model.embed(bad, sample_rate=None if bad is samples else 16000)


def test_a_long_recording_is_embedded_in_windows_it_names(exported: dict[str, Path],
                                                          caplog: pytest.LogCaptureFixture) -> None:
    import logging

    from speakernet.backend.extract import full_windows, prepare_features
    from speakernet.features.fbank import compute_fbank_and_energy
    from speakernet.features.vad import compute_vad

    model = SpeakerEmbedder(exported["exp"])
    model.max_frames = 120  # a 6 s recording stands in for an hour at 6000 frames
    waveform = _voice(6.0, 16000, 200)
    with caplog.at_level(logging.INFO, logger="speakernet.backend.extract"):
        embedding = model.embed(waveform, sample_rate=16000)
    fbank, energy = compute_fbank_and_energy(waveform, model.fbank_config)
    prepared = prepare_features(fbank, compute_vad(energy, **model.vad_config.to_dict()), 50)
    windows = full_windows(prepared, 120)
    assert len(windows) > 2 and f"embedding {len(windows)} windows of {len(windows[0])} frames" in caplog.text
    with torch.inference_mode():  # one window per pass, averaged: exactly
        expected = np.mean([model.model(torch.from_numpy(w.copy())[None])[0].numpy() for w in windows], axis=0)
    np.testing.assert_array_equal(embedding, expected)


def test_verify_scores_like_compare_at_the_model_dirs_threshold(exported: dict[str, Path], tmp_path: Path) -> None:
    import speakernet

    a, b = _voice(2.0, 16000, 180), _voice(2.0, 16000, 260)
    for model_dir in (exported["exp"], exported["export"]):
        model = speakernet.load(model_dir)
        assert model.threshold == 0.25 and model.mean is None  # the fixture wrote a threshold, no mean
        verdict = model.verify(a, b, sample_rate=16000)
        score = model.compare(a, b, sample_rate=16000)
        assert verdict["score"] == pytest.approx(score, abs=1e-6) and verdict["threshold"] == 0.25
        assert verdict["same_speaker"] is (score >= 0.25) and verdict["reliable"] is True
        assert model.verify(a, b, threshold=score - 1e-3, sample_rate=16000)["same_speaker"] is True
        assert model.verify(a, b, threshold=score + 1e-3, sample_rate=16000)["same_speaker"] is False
        assert model.verify(a, a, sample_rate=16000)["score"] == pytest.approx(1.0, abs=1e-5)
        silence = model.verify(np.zeros(32000, dtype=np.float32), a, sample_rate=16000)
        assert silence["same_speaker"] is None and "has no speech" in silence["reason"]
    (tmp_path / "no_threshold").mkdir()
    for name in ("model.onnx", "frontend.json", "export.json"):
        (tmp_path / "no_threshold" / name).write_bytes((exported["export"] / name).read_bytes())
    with pytest.raises(ValueError, match="threshold does not exist .* pass threshold="):
        speakernet.load(tmp_path / "no_threshold").verify(a, b, sample_rate=16000)


def test_cli_enrolls_identifies_and_removes_speakers(exported: dict[str, Path], tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    from speakernet.bin import cli

    files = {}
    for name, pitch in (("low", 120), ("high", 300)):
        for take in range(2):
            files[name, take] = tmp_path / f"{name}{take}.wav"
            soundfile.write(files[name, take], _voice(2.0 + 0.3 * take, 16000, pitch + 5 * take), 16000)
    store = tmp_path / "store"
    for model_dir in (exported["exp"],):
        for name in ("low", "high"):
            assert cli.main(["enroll", "--exp-dir", str(model_dir), "--store", str(store), "--speaker", name,
                             str(files[name, 0])]) == 0
        assert "2 speaker(s)" in capsys.readouterr().out
        assert cli.main(["identify", "--exp-dir", str(model_dir), "--store", str(store), str(files["low", 1]),
                         "--json", "--threshold", "-1"]) == 0
        result = json.loads(capsys.readouterr().out)
        model = SpeakerEmbedder(model_dir)
        test = model.embed(files["low", 1])
        expected = {name: float(np.dot(model.embed(files[name, 0]), test) / np.linalg.norm(model.embed(
            files[name, 0])) / np.linalg.norm(test)) for name in ("low", "high")}
        assert {entry["speaker"]: entry["score"] for entry in result["ranking"]} == pytest.approx(expected, abs=1e-5)
        assert result["speaker"] == max(expected, key=expected.get)
        assert cli.main(["identify", "--exp-dir", str(model_dir), "--store", str(store), str(files["low", 1]),
                         "--threshold", "1.01"]) == 0
        assert capsys.readouterr().out.startswith("unknown (best score")
    # another model's embeddings are refused; removing a speaker needs no model
    assert cli.main(["identify", "--exp-dir", str(exported["exp"]), "--checkpoint", "init", "--store", str(store),
                     str(files["low", 1])]) == 1
    assert "enrolled with another model" in capsys.readouterr().err
    assert cli.main(["enroll", "--exp-dir", str(exported["exp"]), "--store", str(store), "--speaker", "low",
                     "--remove"]) == 0
    assert "1 speaker(s) enrolled" in capsys.readouterr().out
