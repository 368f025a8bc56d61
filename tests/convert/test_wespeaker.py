"""WeSpeaker's models imported: embeddings equal WeSpeaker's own (tests/fixtures/wespeaker_tiny.npz).

The fixture was made once by ``tools/make_wespeaker_fixture.py`` with WeSpeaker's own model code (commit
recorded in it): tiny ResNet34, ResNet18 (TAP), ResNet50 (ASTP, two embedding layers), ECAPA_TDNN_GLOB_c512,
ECAPA_TDNN_c1024 (TSTP, emb_bn) and CAMPPlus, each a ``state_dict`` under WeSpeaker's key names with
its training head, and WeSpeaker's embeddings of two feature batches. Each test writes the state
as ``avg_model.pt`` beside a ``config.yaml`` in WeSpeaker's format and imports that dir.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml

from speakernet.bin import import_model as import_bin
from speakernet.convert import ConversionError
from speakernet.features.fbank import FbankConfig
from speakernet.features.frontend import load_frontend
from speakernet.importing import IMPORT_INFO_NAME, import_model
from speakernet.inference import SpeakerEmbedder


def read_import_info(model_dir: Path) -> dict:
    """The ``import.json`` an import wrote into ``model_dir``."""
    return json.loads((Path(model_dir) / IMPORT_INFO_NAME).read_text(encoding="utf-8"))


FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "wespeaker_tiny.npz"
CASES = ("resnet34", "resnet18_tap", "resnet50_astp_two_emb", "ecapa_glob_c512", "ecapa_c1024_tstp_emb_bn", "campplus")
#: The bar: max abs difference to WeSpeaker's embeddings (float32 rounding; the embeddings are about 0.3).
MAX_ABS_DIFF = 1e-5


@pytest.fixture(scope="module")
def reference() -> dict[str, np.ndarray]:
    with np.load(FIXTURE) as data:
        return {key: data[key] for key in data.files}


def wespeaker_state(reference: dict[str, np.ndarray], case: str) -> dict[str, torch.Tensor]:
    """The case's ``state_dict`` under WeSpeaker's names, in the dtypes WeSpeaker saved."""
    values, state, offset = reference[f"{case}/state"], {}, 0
    for key, shape, dtype in json.loads(str(reference[f"{case}/keys"])):
        size = int(np.prod(shape))
        flat = torch.from_numpy(values[offset:offset + size].astype(np.float32))
        state[key] = flat.reshape(shape).to(getattr(torch, dtype))
        offset += size
    assert offset == len(values)
    return state


def wespeaker_config(model: str, model_args: dict[str, Any], num_mel_bins: int) -> dict[str, Any]:
    """A ``config.yaml`` as WeSpeaker's training writes it (the parts a published model dir has)."""
    return {
        "exp_dir": "exp/tiny", "num_avg": 10, "seed": 42,
        "dataset_args": {"resample_rate": 16000, "speed_perturb": True, "num_frms": 200, "aug_prob": 0.6,
                         "fbank_args": {"num_mel_bins": num_mel_bins, "frame_shift": 10, "frame_length": 25,
                                        "dither": 1.0},
                         "spec_aug": False},
        "model": model, "model_init": None, "model_args": model_args,
        "projection_args": {"project_type": "arc_margin", "scale": 32.0, "easy_margin": False},
        "loss": "CrossEntropyLoss", "optimizer": "SGD",
    }


def write_wespeaker_dir(directory: Path, state: dict[str, torch.Tensor], config: dict[str, Any] | None) -> Path:
    directory.mkdir(parents=True)
    torch.save(state, directory / "avg_model.pt")
    if config is not None:
        (directory / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return directory


def case_dir(tmp_path: Path, reference: dict, case: str, **config_changes: Any) -> Path:
    config = json.loads(str(reference[f"{case}/config"]))
    return write_wespeaker_dir(tmp_path / f"ws_{case}", wespeaker_state(reference, case),
                               {**wespeaker_config(config["model"], config["model_args"], 16), **config_changes})


def max_abs_diff(model_dir: Path, reference: dict, case: str) -> float:
    model = SpeakerEmbedder(model_dir).model
    assert not model.training
    worst = 0.0
    with torch.inference_mode():
        for batch in ("long", "short"):
            feats = torch.from_numpy(reference[f"feats_{batch}"].astype(np.float32))
            embeddings = model(feats).numpy()
            assert embeddings.shape == reference[f"{case}/{batch}"].shape
            worst = max(worst, float(np.abs(embeddings - reference[f"{case}/{batch}"]).max()))
    return worst


@pytest.mark.parametrize("case", CASES)
def test_embeddings_equal_wespeakers(tmp_path: Path, reference: dict, case: str) -> None:
    torch.set_num_threads(1)
    out = tmp_path / "imported"
    assert import_bin.main(["--format", "wespeaker", "--source", str(case_dir(tmp_path, reference, case)),
                            "--out-dir", str(out)]) == 0
    diff = max_abs_diff(out, reference, case)
    print(f"{case}: max abs diff {diff:.2e}")
    assert diff < MAX_ABS_DIFF
    info = read_import_info(out)
    assert info["format"] == "wespeaker" and info["wespeaker"]["model"] == json.loads(
        str(reference[f"{case}/config"]))["model"]
    assert info["dropped"]["parameters"] == {"projection.weight": [5, 16]} and info["dropped"]["training_classes"] == 5
    assert [Path(s["file"]).name for s in info["sources"]] == ["avg_model.pt", "config.yaml"]
    fbank, _ = load_frontend(out)
    assert fbank == FbankConfig(num_mel_bins=16, window_type="hamming", dither=0.0)  # WeSpeaker's extraction


def test_a_bare_checkpoint_takes_the_model_as_options(tmp_path: Path, reference: dict) -> None:
    source = write_wespeaker_dir(tmp_path / "bare", wespeaker_state(reference, "resnet34"), None) / "avg_model.pt"
    with pytest.raises(ConversionError, match="no config.yaml beside it: name the WeSpeaker model"):
        import_model("wespeaker", source, tmp_path / "a")
    out = import_model("wespeaker", source, tmp_path / "b", {"model": "ResNet34", "model_args": {"feat_dim": 16}})
    assert max_abs_diff(out, reference, "resnet34") < MAX_ABS_DIFF
    assert read_import_info(out)["options"] == {"model": "ResNet34", "model_args": {"feat_dim": 16}}
    # options override the config's entries key by key
    with_config = case_dir(tmp_path, reference, "resnet34", model="ResNet18")
    with pytest.raises(ConversionError, match="has an extra 'stages.0.2.conv1.weight'"):
        import_model("wespeaker", with_config, tmp_path / "c")
    out = import_model("wespeaker", with_config, tmp_path / "d", {"model": "ResNet34"})
    assert max_abs_diff(out, reference, "resnet34") < MAX_ABS_DIFF


@pytest.mark.parametrize("name", ["ResNet34", "ResNet293", "ECAPA_TDNN_GLOB_c512", "ECAPA_TDNN_GLOB_c1024",
                                  "CAMPPlus", "CAMPPlus+ASTP"])
def test_published_layouts_convert_with_wespeakers_parameter_counts(tmp_path: Path, reference: dict,
                                                                   name: str) -> None:
    layout = json.loads(str(reference["published_layouts"]))[name]
    state = {key: torch.zeros(shape, dtype=torch.int64 if key.endswith("num_batches_tracked") else torch.float32)
             for key, shape in layout["keys"].items()}
    for key in [key for key in state if name.startswith("CAMPPlus") and key.startswith("pool.")]:
        # CAM++ holds its pooling twice (one module): the same tensor under both names
        state[key] = state["xvector.stats." + key[len("pool."):]]
    state["projection.weight"] = torch.zeros(7, layout["model_args"]["embed_dim"])
    source = write_wespeaker_dir(tmp_path / "ws", state, wespeaker_config(layout["model"], layout["model_args"], 80))
    info = read_import_info(import_model("wespeaker", source, tmp_path / "out"))
    assert info["parameters"] == layout["parameters"]  # REFERENCE.md: 6.634/28.626/6.19/14.65/7.176 M
    assert "widths_from_weights" not in info["wespeaker"]  # the published widths are the ones WeSpeaker fixes
    if name == "CAMPPlus+ASTP":
        twin = dict(state, **{"pool.linear1.bias": torch.ones(128)})
        source = write_wespeaker_dir(tmp_path / "ws2", twin, wespeaker_config("CAMPPlus", layout["model_args"], 80))
        with pytest.raises(ConversionError, match="unexpected parameter 'pool.linear1.bias' .not the twin"):
            import_model("wespeaker", source, tmp_path / "out2")


def test_unknown_and_missing_parameters_are_named(tmp_path: Path, reference: dict) -> None:
    state = wespeaker_state(reference, "ecapa_glob_c512")
    config = wespeaker_config("ECAPA_TDNN_GLOB_c512", json.loads(str(reference["ecapa_glob_c512/config"]))[
        "model_args"], 16)
    extra = write_wespeaker_dir(tmp_path / "extra", {**state, "layer5.conv.weight": torch.zeros(3)}, config)
    with pytest.raises(ConversionError, match=f"{extra / 'avg_model.pt'}: unexpected parameter 'layer5.conv.weight'"):
        import_model("wespeaker", extra, tmp_path / "a")
    partial = write_wespeaker_dir(tmp_path / "partial", {k: v for k, v in state.items() if k != "bn.running_var"},
                                  config)
    with pytest.raises(ConversionError, match="avg_model.pt: lacks 'pooling_bn.running_var'"):
        import_model("wespeaker", partial, tmp_path / "b")
    headless = write_wespeaker_dir(tmp_path / "headless", {k: v for k, v in state.items() if k != "conv.weight"},
                                   config)
    with pytest.raises(ConversionError, match="has no 'conv.weight': not a WeSpeaker ECAPA_TDNN_GLOB_c512"):
        import_model("wespeaker", headless, tmp_path / "c")
    # a checkpoint of another architecture than the config names
    other = write_wespeaker_dir(tmp_path / "other", state, {**config, "model": "ResNet34"})
    with pytest.raises(ConversionError, match="has no 'conv1.weight': not a WeSpeaker ResNet34 checkpoint"):
        import_model("wespeaker", other, tmp_path / "d")
    # WeSpeaker's training checkpoints may wrap the table
    wrapped = write_wespeaker_dir(tmp_path / "wrapped", {"state_dict": state}, config)  # type: ignore[dict-item]
    assert max_abs_diff(import_model("wespeaker", wrapped, tmp_path / "e"), reference, "ecapa_glob_c512") < 1e-5
    assert not any((tmp_path / name).exists() for name in "abcd")


@pytest.mark.parametrize(("changes", "message"), [
    ({"model": "XVEC"}, "WeSpeaker model 'XVEC' is not supported by the wespeaker converter .it reads: ResNet18"),
    ({"model": "REPVGG_TINY_A0"}, "'REPVGG_TINY_A0' is not supported"),
    ({"model_args": {"feat_dim": 16, "embed_dim": 16, "pooling_func": "MQMHASTP"}},
     "pooling_func 'MQMHASTP' is not supported"),
    ({"model_args": {"feat_dim": 16, "embed_dim": 16, "m_channels": 2}}, "model_args m_channels not supported"),
    ({"model_args": {"feat_dim": 16, "embed_dim": 16, "config_str": "batchnorm"}},
     "CAMPPlus with config_str 'batchnorm' is not supported"),
    ({"dataset_args": {"frontend": "s3prl"}}, "dataset_args.frontend 's3prl' is not supported"),
    ({"dataset_args": {"cmvn_args": {"norm_var": True}}}, "only per-utterance mean normalisation"),
    ({"dataset_args": {"fbank_args": {"num_mel_bins": 80}}}, "num_mel_bins is 80, but the model takes feat_dim 16"),
    ({"dataset_args": {"fbank_args": {"num_mel_bins": 16, "window_type": "povey"}}}, "unknown fbank_args window_type"),
])
def test_unsupported_configs_are_refused(tmp_path: Path, reference: dict, changes: dict, message: str) -> None:
    source = case_dir(tmp_path, reference, "campplus", **changes)
    with pytest.raises(ConversionError, match=message):
        import_model("wespeaker", source, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_bad_sources_and_options_are_named(tmp_path: Path, reference: dict, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(ConversionError, match="avg_model.pt does not exist"):
        import_model("wespeaker", tmp_path, tmp_path / "a")
    source = case_dir(tmp_path, reference, "resnet34")
    with pytest.raises(ConversionError, match="unknown option.s. dilations .it takes: model, model_args, fbank_args"):
        import_model("wespeaker", source, tmp_path / "b", {"dilations": [1]})
    (source / "avg_model.pt").write_text("not a checkpoint\n")
    assert import_bin.main(["--format", "wespeaker", "--source", str(source), "--out-dir", str(tmp_path / "d")]) == 1
    assert "avg_model.pt: not a readable torch checkpoint" in capsys.readouterr().err
    (source / "config.yaml").write_text("model: [unclosed\n")
    with pytest.raises(ConversionError, match="config.yaml: not a YAML file"):
        import_model("wespeaker", source, tmp_path / "c")
