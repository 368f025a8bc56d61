"""ONNX and TorchScript export (parity, onnxruntime inference) and the Python API over exp and export dirs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch

from speakernet.backend.score_calibration import CALIBRATION_NAME, ScoreCalibration, fit_score_calibration
from speakernet.config import load_config
from speakernet.export import PARITY_TOLERANCE, ExportError, OnnxModel, export_model, export_onnx, load_exported
from speakernet.features.fbank import FbankConfig
from speakernet.features.frontend import save_frontend
from speakernet.features.vad import VadConfig
from speakernet.inference import SpeakerEmbedder
from speakernet.models import build_model
from speakernet.training import checkpoint as ckpt
from speakernet.training.trainer import train

from tiny_models import TINY_FEAT_DIM, TINY_MODEL_ARGS, randomise_batch_norms
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


def test_precision_is_an_exp_dir_option_and_onnx_threads_follow_torch(exported: dict[str, Path]) -> None:
    import speakernet
    from speakernet.models.precision import Bfloat16Autocast, bf16_supported

    assert not isinstance(speakernet.load(exported["exp"]).model, Bfloat16Autocast)  # exact fp32 by default
    if bf16_supported():
        assert isinstance(speakernet.load(exported["exp"], precision="bf16").model, Bfloat16Autocast)
    with pytest.raises(ValueError, match="is an export dir, which runs in fp32"):
        SpeakerEmbedder(exported["export"], precision="bf16")
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)  # one thread for torch is one for onnxruntime too (a fair comparison, a shared CPU)
        options = OnnxModel(exported["export"] / "model.onnx").session.get_session_options()
        assert options.intra_op_num_threads == 1
        assert options.get_session_config_entry("session.set_denormal_as_zero") == "1"  # flushes as torch does
    finally:
        torch.set_num_threads(threads)


def test_an_export_that_differs_is_refused_and_removed(exported: dict[str, Path], tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from speakernet import export

    monkeypatch.setattr(export, "_parity", lambda *args: (0.5, 2.0))
    with pytest.raises(ExportError, match=r"model\.torchscript: its embeddings differ from the PyTorch model's by up "
                                          r"to 0\.5 \(tolerance 0\.0001 x their scale 2\); the export was removed"):
        export_model(exported["exp"], tmp_path / "bad", formats=["torchscript"])
    assert not (tmp_path / "bad" / "model.torchscript").exists() and not (tmp_path / "bad" / "export.json").exists()
    # the tolerance scales with the embeddings (SpeechBrain's ECAPA has values near 20)
    monkeypatch.setattr(export, "_parity", lambda *args: (2.5e-3, 20.0))
    with pytest.raises(ExportError, match="by up to 0.0025"):
        export_model(exported["exp"], tmp_path / "bad", formats=["torchscript"])
    monkeypatch.setattr(export, "_parity", lambda *args: (1.5e-4, 20.0))
    assert export_model(exported["exp"], tmp_path / "ok", formats=["torchscript"])["formats"]["torchscript"][
        "scale"] == 20.0
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


def _calibrated_copy(exported: dict[str, Path], tmp_path: Path) -> tuple[Path, ScoreCalibration]:
    """A copy of the fixture's exp dir with a calibration of its latest checkpoint (Gaussian scores)."""
    import shutil

    from speakernet.backend.speaker_store import model_id

    exp = tmp_path / "exp"
    shutil.copytree(exported["exp"], exp)
    rng = np.random.default_rng(0)
    scores = np.concatenate([rng.normal(0.7, 0.1, 300), rng.normal(0.2, 0.15, 3000)])
    labels = np.arange(len(scores)) < 300
    calibration = fit_score_calibration(scores, labels, "exp/calibration/trials", 0.5, {
        "model_sha256": model_id(ckpt.resolve_checkpoint(exp, "latest"))})
    calibration.save(exp / CALIBRATION_NAME)
    return exp, ScoreCalibration.load(exp / CALIBRATION_NAME)  # (the file rounds the scores to 7 decimals)


def test_cli_verify_prints_llr_probability_and_a_far_threshold_with_its_source(
        exported: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from speakernet.bin import cli

    a, b = tmp_path / "a.wav", tmp_path / "b.wav"
    soundfile.write(a, _voice(2.0, 16000, 180), 16000)
    soundfile.write(b, _voice(2.5, 16000, 260), 16000)
    # no calibration: one line naming the file and the stage that writes it
    assert cli.main(["verify", "--exp-dir", str(exported["exp"]), str(a), str(b)]) == 1
    error = capsys.readouterr().err
    assert "cosine_calibration.json does not exist" in error and "stage 8 of tools/sv_stages.sh" in error
    exp, calibration = _calibrated_copy(exported, tmp_path)
    score = SpeakerEmbedder(exp).compare(str(a), str(b))
    assert cli.main(["verify", "--exp-dir", str(exp), str(a), str(b), "--far", "0.01", "--json"]) == 0
    verdict = json.loads(capsys.readouterr().out)
    chosen = calibration.far_threshold(0.01)
    assert verdict["score"] == pytest.approx(score, abs=1e-6)
    assert verdict["llr"] == pytest.approx(calibration.scale * score + calibration.offset, abs=1e-5)
    assert verdict["probability"] == pytest.approx(1 / (1 + np.exp(-verdict["llr"])), abs=1e-6)
    assert verdict["threshold"] == chosen.threshold and verdict["same_speaker"] is (score >= chosen.threshold)
    assert verdict["threshold_source"].startswith(
        f"threshold {chosen.threshold:.5f} for FAR 0.01 from 3000 non-target calibration trials in "
        "exp/calibration/trials")
    assert verdict["false_accepts"] == 30 and verdict["num_nontargets"] == 3000 and verdict["far_reliable"]
    # a stated prior moves the probability, not the LLR; a FAR below 1/30 of the non-targets is said to be rough
    assert cli.main(["verify", "--exp-dir", str(exp), str(a), str(b), "--far", "0.001", "--prior", "0.01",
                     "--json"]) == 0
    rare = json.loads(capsys.readouterr().out)
    assert rare["llr"] == pytest.approx(verdict["llr"]) and rare["prior"] == 0.01
    assert rare["probability"] == pytest.approx(1 / (1 + np.exp(-(rare["llr"] + np.log(0.01 / 0.99)))), abs=1e-6)
    assert "a rough estimate" in rare["threshold_source"] and rare["far_reliable"] is False
    # without --far: the model dir's EER threshold, named; the text form says all of it
    assert cli.main(["verify", "--exp-dir", str(exp), str(a), str(b)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == ("same speaker" if score >= 0.25 else "different speakers")
    assert lines[1].startswith(f"score        {score:.5f}") and lines[2].startswith("LLR          ")
    assert lines[3].startswith("P(same)      ") and lines[3].endswith("at prior 0.5")
    assert lines[4] == f"threshold    0.25000: threshold ({exp / 'threshold'})"
    for bad in (["--far", "0"], ["--prior", "1.5"]):
        with pytest.raises(SystemExit):
            cli.main(["verify", "--exp-dir", str(exp), str(a), str(b), *bad])
        assert "must be in (0, 1)" in capsys.readouterr().err
    # a calibration of another checkpoint, or fitted with another mean, is refused
    assert cli.main(["verify", "--exp-dir", str(exp), "--checkpoint", "init", str(a), str(b)]) == 1
    assert "fitted on the embeddings of another checkpoint" in capsys.readouterr().err
    record = json.loads((exp / "cosine_calibration.json").read_text())
    record["provenance"]["mean_sha256"] = "0" * 64
    (exp / "cosine_calibration.json").write_text(json.dumps(record))
    assert cli.main(["verify", "--exp-dir", str(exp), str(a), str(b)]) == 1
    assert "fitted with another mean vector" in capsys.readouterr().err


def test_an_export_carries_the_calibration_of_its_checkpoint_only(exported: dict[str, Path], tmp_path: Path) -> None:
    exp, calibration = _calibrated_copy(exported, tmp_path)
    export_model(exp, tmp_path / "export", "latest")
    assert (tmp_path / "export" / "cosine_calibration.json").read_bytes() == (exp / "cosine_calibration.json"
                                                                              ).read_bytes()
    a, b = _voice(2.0, 16000, 180), _voice(2.0, 16000, 230)
    from_export = SpeakerEmbedder(tmp_path / "export").verify(a, b, sample_rate=16000, far=0.01)
    from_exp = SpeakerEmbedder(exp).verify(a, b, sample_rate=16000, far=0.01)
    assert from_export["threshold"] == from_exp["threshold"] == calibration.far_threshold(0.01).threshold
    assert from_export["llr"] == pytest.approx(from_exp["llr"], abs=1e-4)
    export_model(exp, tmp_path / "export_init", "init")  # another checkpoint: its calibration does not apply
    assert not (tmp_path / "export_init" / "cosine_calibration.json").exists()


def test_cli_identify_ranks_with_calibrated_scores_and_a_far_threshold(
        exported: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from speakernet.bin import cli

    exp, calibration = _calibrated_copy(exported, tmp_path)
    files = {}
    for name, pitch in (("low", 120), ("high", 300)):
        files[name] = tmp_path / f"{name}.wav"
        soundfile.write(files[name], _voice(2.0, 16000, pitch), 16000)
        assert cli.main(["enroll", "--exp-dir", str(exp), "--store", str(tmp_path / "store"), "--speaker", name,
                         str(files[name])]) == 0
    probe = tmp_path / "probe.wav"
    soundfile.write(probe, _voice(2.4, 16000, 125), 16000)
    capsys.readouterr()
    assert cli.main(["identify", "--exp-dir", str(exp), "--store", str(tmp_path / "store"), str(probe),
                     "--far", "0.01", "--prior", "0.2", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    threshold = calibration.far_threshold(0.01).threshold
    assert result["threshold"] == threshold and "for FAR 0.01 from 3000 non-target calibration trials" in \
        result["threshold_source"] and "about K times that for K speakers" in result["threshold_source"]
    for entry in result["ranking"]:
        assert entry["llr"] == pytest.approx(calibration.llr(entry["score"]))
        assert entry["probability"] == pytest.approx(calibration.probability(entry["score"], 0.2))
    assert result["speaker"] == (result["ranking"][0]["speaker"] if result["score"] >= threshold else None)
    assert cli.main(["identify", "--exp-dir", str(exp), "--store", str(tmp_path / "store"), str(probe)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "threshold 0.25000" in lines[0] and "LLR " in lines[1] and "P(same | prior 0.5)" in lines[1]


# ECAPA_TDNN_SB's inference rewrites (tests/models/test_ecapa_sb.py) export: here, where the exporter's
# first call (seconds of imports and warm-up) is paid anyway
def test_the_onnx_export_of_the_rewritten_speechbrain_ecapa_equals_it(tmp_path: Path) -> None:
    torch.manual_seed(3)
    model = build_model("ECAPA_TDNN_SB", feat_dim=TINY_FEAT_DIM, **TINY_MODEL_ARGS["ECAPA_TDNN_SB"]).eval()
    randomise_batch_norms(model, seed=3)
    export_onnx(model, tmp_path / "model.onnx", TINY_FEAT_DIM)
    exported = OnnxModel(tmp_path / "model.onnx")
    for batch, frames in ((1, 9), (2, 333)):  # neither is the tracing length
        feats = torch.randn(batch, frames, TINY_FEAT_DIM)
        with torch.inference_mode():
            expected = model(feats)
        scale = max(1.0, float(expected.abs().max()))
        assert float((exported(feats) - expected).abs().max()) <= PARITY_TOLERANCE * scale
