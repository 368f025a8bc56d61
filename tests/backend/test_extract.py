"""Embedding extraction: windows, full vs multi-crop, outputs and their consistency."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import kaldiio
import numpy as np
import pytest
import torch

from speakernet.backend.embeddings import load_embeddings, read_vector
from speakernet.backend.extract import crop_starts, embed_long, extract_embeddings, full_windows, prepare_features
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


def test_prepare_features_copies_once_and_matches_the_copying_cmn_bit_for_bit() -> None:
    rng = np.random.default_rng(1)
    feats = (rng.normal(size=(400, 6)) * 7 + 30).astype(np.float32)
    vad = (rng.random(400) > 0.3).astype(np.float32)
    original = feats.copy()
    for mask, min_frames in ((vad, 50), (None, 50), (None, 1000), (np.zeros(400, np.float32), 50)):
        kept = feats[mask > 0.5] if mask is not None and mask.any() else feats
        if len(kept) < min_frames:
            kept = np.pad(kept, ((0, min_frames - len(kept)), (0, 0)), mode="wrap")
        expected = (kept - kept.mean(axis=0, keepdims=True, dtype=np.float64)).astype(np.float32)
        np.testing.assert_array_equal(prepare_features(feats, mask, min_frames), expected)
        np.testing.assert_array_equal(prepare_features(feats.astype(np.float64), mask, min_frames), expected)
        np.testing.assert_array_equal(feats, original)  # the input is left alone
    mine = feats.copy()
    out = prepare_features(mine, None, 50, overwrite=True)  # nothing else copies it: normalised in place
    assert out is mine
    np.testing.assert_array_equal(out, prepare_features(feats, None, 50))


def test_a_long_utterance_says_how_many_windows_and_equals_one_pass_per_window(
        caplog: pytest.LogCaptureFixture) -> None:
    torch.manual_seed(0)
    model = build_model("ECAPA_TDNN", feat_dim=20, channels=16, embed_dim=8, attention_bottleneck=8,
                        se_bottleneck=8).eval()
    feats = np.random.default_rng(2).normal(size=(1234, 20)).astype(np.float32)
    windows = full_windows(feats, 100)
    with torch.inference_mode():
        expected = np.mean([model(torch.from_numpy(window.copy())[None])[0].numpy() for window in windows], axis=0)
        with caplog.at_level(logging.INFO, logger="speakernet.backend.extract"):
            got = embed_long(model, windows, "long.wav", 100)
            np.testing.assert_array_equal(got, expected)
            assert "long.wav: embedding 13 windows of 95 frames" in caplog.text
            caplog.clear()
            embed_long(model, windows[:3], "short.wav", 100)
            assert caplog.text == ""  # a few windows are not worth a line in extraction ...
            embed_long(model, windows[:3], "short.wav", 100, announce_from=2)
            assert "short.wav: embedding 3 windows" in caplog.text  # ... but are for one file (embed)


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


def _documented_starts(num_frames: int, crop_frames: int, num_crops: int) -> list[int]:
    # crop_starts' contract, written out: the first window at frame 0, the last ending at the
    # last frame, the others evenly spaced in between (rounded to the nearest frame)
    last = num_frames - crop_frames
    return [round(i * last / (num_crops - 1)) for i in range(num_crops)]


def test_multicrop_embedding_is_the_mean_over_every_documented_crop(tmp_path: Path,
                                                                     tiny_model: torch.nn.Module) -> None:
    data = make_feature_dir(tmp_path / "corpus", num_speakers=2, utts_per_speaker=1)
    crop_frames, num_crops = 60, 3
    extract_embeddings(tiny_model, data, tmp_path / "emb", mode="multicrop", num_crops=num_crops,
                       crop_frames=crop_frames, batch_size=64)
    keys, matrix = load_embeddings(tmp_path / "emb" / "xvector.scp")
    feats_scp = dict(line.split() for line in (data / "feats.scp").read_text().splitlines())
    vad_scp = dict(line.split() for line in (data / "vad.scp").read_text().splitlines())
    tiny_model.eval()
    for utt, extracted in zip(keys, matrix):
        feats, vad = kaldiio.load_mat(feats_scp[utt]), kaldiio.load_mat(vad_scp[utt])
        voiced = feats[vad > 0.5]
        assert len(voiced) > crop_frames + 50  # the crops really sit at different places
        per_crop = []
        for start in _documented_starts(len(voiced), crop_frames, num_crops):
            window = voiced[start : start + crop_frames].astype(np.float64)
            window = (window - window.mean(axis=0)).astype(np.float32)  # per-crop CMN
            with torch.no_grad():
                per_crop.append(tiny_model(torch.from_numpy(window)[None])[0].numpy())
        per_crop = np.stack(per_crop)
        expected = per_crop.mean(axis=0)  # a plain mean, no length normalisation
        np.testing.assert_allclose(extracted, expected, rtol=1e-4, atol=1e-5)
        # the crops give clearly different embeddings, so any one crop alone would not match
        assert np.abs(per_crop - expected).max(axis=1).min() > 1e-2


def test_multicrop_windows_are_the_documented_slices_of_the_utterance() -> None:
    from speakernet.backend.extract import _windows

    rng = np.random.default_rng(0)
    feats = rng.normal(3.0, 1.0, (437, 4)).astype(np.float32)
    windows = _windows(feats, "multicrop", crop_frames=100, num_crops=4)
    starts = _documented_starts(437, 100, 4)
    assert starts == [0, 112, 225, 337]
    assert windows.shape == (4, 100, 4)
    for window, start in zip(windows, starts):
        expected = feats[start : start + 100]
        np.testing.assert_allclose(window, expected - expected.mean(axis=0), atol=1e-5)
    for i in range(4):
        for j in range(i + 1, 4):
            assert not np.allclose(windows[i], windows[j], atol=0.1), f"crops {i} and {j} hold the same frames"
    # shorter than one crop: repeat-padded to the crop, every crop the same window
    short = _windows(feats[:70], "multicrop", crop_frames=100, num_crops=3)
    padded = np.concatenate([feats[:70], feats[:30]])
    for window in short:
        np.testing.assert_allclose(window, padded - padded.mean(axis=0), atol=1e-5)


def _tiny_exp_dir(exp: Path, model: torch.nn.Module, frontend) -> Path:
    from speakernet.config import load_config, save_config
    from speakernet.features.frontend import save_frontend
    from speakernet.training import checkpoint as ckpt

    config = load_config(None, ["data.feat_dim=20", "model_args={channels: 16, embed_dim: 8, attention_bottleneck: 8, "
                                                    "se_bottleneck: 8}"])
    save_config(config, exp / "config.yaml")
    path = exp / ckpt.CHECKPOINT_DIR / "epoch_001.pt"
    ckpt.save_checkpoint({"model": model.state_dict(), "step": 1, "config": config}, path)
    ckpt.mark_latest(exp, path)
    save_frontend(exp, *frontend)
    return exp


def test_extract_stage_refuses_features_of_another_front_end(tmp_path: Path, tiny_model: torch.nn.Module,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    from speakernet.bin.extract import main as extract_main
    from speakernet.features.fbank import FbankConfig
    from speakernet.features.frontend import save_frontend
    from speakernet.features.vad import VadConfig

    model_frontend = (FbankConfig(num_mel_bins=20), VadConfig())
    exp = _tiny_exp_dir(tmp_path / "exp", tiny_model, model_frontend)
    data = make_feature_dir(tmp_path / "corpus", num_speakers=2, utts_per_speaker=1)
    save_frontend(data, *model_frontend)
    argv = ["--exp-dir", str(exp), "--data-dir", str(data), "--device", "cpu"]
    assert extract_main(argv + ["--out-dir", str(tmp_path / "same")]) == 0  # the same front-end: accepted
    assert (tmp_path / "same" / "xvector.scp").is_file()

    save_frontend(data, FbankConfig(num_mel_bins=20, frame_shift_ms=15.0), VadConfig())
    capsys.readouterr()
    assert extract_main(argv + ["--out-dir", str(tmp_path / "other")]) == 1
    error = capsys.readouterr().err
    assert f"{data / 'frontend.json'}: fbank.frame_shift_ms = 15.0, but the model was trained on 10.0" in error
    assert str(exp / "frontend.json") in error and "re-make the features" in error
    assert not (tmp_path / "other" / "xvector.scp").exists()


def test_extract_stage_embeds_several_dirs_with_one_model_load(tmp_path: Path, tiny_model: torch.nn.Module,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    from speakernet.bin.extract import main as extract_main
    from speakernet.features.fbank import FbankConfig
    from speakernet.features.frontend import save_frontend
    from speakernet.features.vad import VadConfig

    frontend = (FbankConfig(num_mel_bins=20), VadConfig())
    exp = _tiny_exp_dir(tmp_path / "exp", tiny_model, frontend)
    dirs = [make_feature_dir(tmp_path / name, num_speakers=2, utts_per_speaker=2, seed=seed)
            for seed, name in enumerate(["a", "b"])]
    for data in dirs:
        save_frontend(data, *frontend)
    common = ["--exp-dir", str(exp), "--device", "cpu"]
    assert extract_main(common + ["--data-dir", *map(str, dirs), "--out-dir", str(tmp_path / "A"),
                                  str(tmp_path / "B")]) == 0
    for data, together in zip(dirs, ["A", "B"]):  # each dir as it would be embedded alone
        alone = tmp_path / f"alone_{together}"
        assert extract_main(common + ["--data-dir", str(data), "--out-dir", str(alone)]) == 0
        keys, matrix = load_embeddings(tmp_path / together / "xvector.scp")
        alone_keys, alone_matrix = load_embeddings(alone / "xvector.scp")
        assert keys == alone_keys and np.array_equal(matrix, alone_matrix)
    from speakernet.models.precision import bf16_supported

    if bf16_supported():  # the opt-in: close to fp32, not equal
        assert extract_main(common + ["--precision", "bf16", "--data-dir", str(dirs[0]), "--out-dir",
                                      str(tmp_path / "bf16")]) == 0
        _, fast = load_embeddings(tmp_path / "bf16" / "xvector.scp")
        _, exact = load_embeddings(tmp_path / "A" / "xvector.scp")
        cosines = np.sum(fast * exact, axis=1) / np.linalg.norm(fast, axis=1) / np.linalg.norm(exact, axis=1)
        assert cosines.min() > 0.99 and not np.array_equal(fast, exact)
    # --jobs: one process runs several extractions (other modes, checkpoints), each as it would alone
    from speakernet.training import checkpoint as ckpt

    halved = {key: value / 2 if value.is_floating_point() else value for key, value in tiny_model.state_dict().items()}
    ckpt.save_checkpoint({"model": halved, "step": 1}, exp / ckpt.CHECKPOINT_DIR / "halved.pt")
    crop = ["--mode", "multicrop", "--num-crops", "1", "--crop-frames", "60"]
    lines = [common + ["--data-dir", str(dirs[0]), "--out-dir", str(tmp_path / "jobs_A")],
             common + ["--checkpoint", "halved.pt", *crop, "--data-dir", str(dirs[1]), "--out-dir",
                       str(tmp_path / "jobs_B")]]
    (tmp_path / "extract.jobs").write_text("".join(" ".join(line) + "\n" for line in lines))
    assert extract_main(["--jobs", str(tmp_path / "extract.jobs")]) == 0
    assert extract_main(lines[1][:-1] + [str(tmp_path / "alone_halved")]) == 0
    for together, alone in (("jobs_A", "alone_A"), ("jobs_B", "alone_halved")):
        keys, matrix = load_embeddings(tmp_path / together / "xvector.scp")
        alone_keys, alone_matrix = load_embeddings(tmp_path / alone / "xvector.scp")
        assert keys == alone_keys and np.array_equal(matrix, alone_matrix), together
    _, halved_matrix = load_embeddings(tmp_path / "alone_halved" / "xvector.scp")
    _, latest_matrix = load_embeddings(tmp_path / "alone_B" / "xvector.scp")
    assert not np.allclose(halved_matrix, latest_matrix)  # the line's own checkpoint and mode took effect
    # A recipe's pending marker becomes .done as soon as its dir is written: a run that fails (or is
    # killed) at the second line keeps the first line's dir done, and only that one.
    broken = [lines[0][:-1] + [str(tmp_path / "kept")], lines[1][:-1] + [str(tmp_path / "lost")]]
    broken[1][broken[1].index("halved.pt")] = "missing.pt"
    (tmp_path / "broken.jobs").write_text("".join(" ".join(line) + "\n" for line in broken))
    for name in ("kept", "lost"):
        (tmp_path / name).mkdir()
        (tmp_path / name / ".done.pending").write_text(f"signature of {name}")
    assert extract_main(["--jobs", str(tmp_path / "broken.jobs")]) != 0
    assert (tmp_path / "kept" / ".done").read_text() == "signature of kept"
    assert not (tmp_path / "kept" / ".done.pending").exists() and (tmp_path / "kept" / "xvector.scp").is_file()
    assert not (tmp_path / "lost" / ".done").exists() and (tmp_path / "lost" / ".done.pending").is_file()
    capsys.readouterr()
    with pytest.raises(SystemExit):
        extract_main(common + ["--data-dir", *map(str, dirs), "--out-dir", str(tmp_path / "C")])
    assert "--out-dir needs one dir per --data-dir: got 2 data dirs and 1 output dirs" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        extract_main(["--jobs", str(tmp_path / "extract.jobs"), "--device", "cpu"])
    assert "--jobs takes no other option" in capsys.readouterr().err


def test_long_utterances_are_embedded_in_equal_chunks_and_averaged(tmp_path: Path,
                                                                   tiny_model: torch.nn.Module) -> None:
    feats = np.random.default_rng(0).normal(size=(250, 20)).astype(np.float32)
    for whole in (full_windows(feats, 0), full_windows(feats, 250)):
        assert len(whole) == 1 and whole[0] is feats
    chunks = full_windows(feats, 100)  # 3 chunks of 84 frames at 0, 83, 166: every frame covered
    assert [chunk.shape for chunk in chunks] == [(84, 20)] * 3
    for chunk, start in zip(chunks, (0, 83, 166)):
        assert np.shares_memory(chunk, feats)  # views: a long recording's features are not copied
        np.testing.assert_array_equal(chunk, feats[start : start + 84])
    data = make_feature_dir(tmp_path / "corpus", num_speakers=2, utts_per_speaker=1)
    lengths = [len(kaldiio.load_mat(line.split()[1])) for line in (data / "feats.scp").read_text().splitlines()]
    limit = min(lengths) // 2  # every utterance is cut into two or three chunks
    extract_embeddings(tiny_model, data, tmp_path / "chunked", use_vad=False, max_frames=limit)
    extract_embeddings(tiny_model, data, tmp_path / "whole", use_vad=False, max_frames=0)
    _, chunked = load_embeddings(tmp_path / "chunked" / "xvector.scp")
    _, whole = load_embeddings(tmp_path / "whole" / "xvector.scp")
    first = prepare_features(kaldiio.load_mat((data / "feats.scp").read_text().split()[1]), None, 50)
    with torch.no_grad():
        expected = tiny_model.eval()(torch.from_numpy(np.stack(full_windows(first, limit)))).mean(dim=0).numpy()
        direct = tiny_model(torch.from_numpy(first)[None])[0].numpy()
    np.testing.assert_allclose(chunked[0], expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(whole[0], direct, rtol=1e-5, atol=1e-6)
    assert not np.allclose(chunked[0], whole[0], atol=1e-4)  # the chunking took effect
    with pytest.raises(ValueError, match="max_frames must be >= 0, got -1"):
        extract_embeddings(tiny_model, data, tmp_path / "bad", max_frames=-1)


def test_extract_stage_use_vad_switch_and_the_count_of_unvoiced_utterances(
        tmp_path: Path, tiny_model: torch.nn.Module, capsys: pytest.CaptureFixture[str]) -> None:
    from speakernet.bin.extract import main as extract_main
    from speakernet.data.kaldi_dir import read_scp, write_scp
    from speakernet.features.fbank import FbankConfig
    from speakernet.features.frontend import save_frontend
    from speakernet.features.vad import VadConfig

    frontend = (FbankConfig(num_mel_bins=20), VadConfig())
    exp = _tiny_exp_dir(tmp_path / "exp", tiny_model, frontend)  # data.use_vad: true (the default)
    data = make_feature_dir(tmp_path / "corpus", num_speakers=2, utts_per_speaker=2)  # 10 unvoiced frames each
    save_frontend(data, *frontend)
    # one utterance with no voiced frame: embedded from all its frames, counted, not left out
    silent = sorted(read_scp(data / "vad.scp"))[0]
    frames = kaldiio.load_mat(read_scp(data / "feats.scp")[silent]).shape[0]
    vad_scp = read_scp(data / "vad.scp")
    kaldiio.save_ark(str(tmp_path / "silent.ark"), {silent: np.zeros(frames, np.float32)},
                     scp=str(tmp_path / "silent.scp"))
    vad_scp[silent] = read_scp(tmp_path / "silent.scp")[silent]
    write_scp(data / "vad.scp", vad_scp)

    common = ["--exp-dir", str(exp), "--device", "cpu", "--data-dir", str(data), "--out-dir"]
    embedded = {}
    for name, extra in (("default", []), ("on", ["--use-vad", "true"]), ("off", ["--use-vad", "false"])):
        capsys.readouterr()
        assert extract_main(common + [str(tmp_path / name)] + extra) == 0  # the stage sets up its own logging
        log = capsys.readouterr().err
        keys, matrix = load_embeddings(tmp_path / name / "xvector.scp")
        assert len(keys) == 4  # none left out
        embedded[name] = dict(zip(keys, matrix))
        summary = [line for line in log.splitlines() if "utterances have no voiced frame" in line]
        if name == "off":
            assert not summary and "(full mode, VAD off)" in log
        else:
            assert len(summary) == 1 and " WARNING " in summary[0]
            assert f"1 of 4 utterances have no voiced frame and were embedded from all their frames (e.g. {silent})" \
                in summary[0]
            assert "(full mode, VAD on)" in log
    for utt in embedded["default"]:
        assert np.array_equal(embedded["default"][utt], embedded["on"][utt])
        if utt == silent:  # all frames either way
            np.testing.assert_allclose(embedded["off"][utt], embedded["on"][utt], rtol=1e-5, atol=1e-6)
        else:  # the 10 unvoiced frames are embedded too
            assert not np.allclose(embedded["off"][utt], embedded["on"][utt], atol=1e-4)
    with pytest.raises(SystemExit):
        extract_main(common + [str(tmp_path / "bad"), "--use-vad", "maybe"])


def test_a_loaded_model_runs_with_subnormals_flushed(tmp_path: Path, tiny_model: torch.nn.Module) -> None:
    """Trained weights make subnormal activations, 3x slower on x86 unless flushed (precision.flush_denormals)."""
    from speakernet.features.fbank import FbankConfig
    from speakernet.features.vad import VadConfig
    from speakernet.training.checkpoint import load_model

    exp = _tiny_exp_dir(tmp_path / "exp", tiny_model, (FbankConfig(num_mel_bins=20), VadConfig()))
    if not torch.set_flush_denormal(False):
        pytest.skip("this CPU cannot flush subnormals")
    subnormal = torch.tensor([1e-39], dtype=torch.float32)  # made unflushed (a flushing process zeroes it)
    try:
        assert (subnormal * 1.0).item() != 0.0
        load_model(exp)
        assert (subnormal * 1.0).item() == 0.0
    finally:
        torch.set_flush_denormal(False)


def test_every_intra_op_thread_of_an_extraction_process_flushes(tmp_path: Path, tiny_model: torch.nn.Module) -> None:
    """The mode is per thread: load_model must set it before torch starts its threads, or they keep the slow path."""
    import subprocess
    import sys

    from speakernet.features.fbank import FbankConfig
    from speakernet.features.vad import VadConfig

    exp = _tiny_exp_dir(tmp_path / "exp", tiny_model, (FbankConfig(num_mel_bins=20), VadConfig()))
    script = (
        "import sys, numpy as np, torch\n"
        "torch.set_num_threads(2)\n"
        "values = np.full(1 << 20, 1e-39, dtype=np.float32)  # subnormals, made before any flushing\n"
        "from speakernet.training.checkpoint import load_model\n"
        "load_model(sys.argv[1])\n"
        "if not torch.set_flush_denormal(True): print('unsupported'); sys.exit()\n"
        "product = torch.from_numpy(values) * 1.0  # large enough for both threads to take a part\n"
        "print(int(torch.count_nonzero(product)))\n"
    )
    result = subprocess.run([sys.executable, "-c", script, str(exp)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    if result.stdout.strip() == "unsupported":
        pytest.skip("this CPU cannot flush subnormals")
    assert result.stdout.strip() == "0"
