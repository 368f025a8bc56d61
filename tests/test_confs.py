"""Every recipe conf in egs/*/v1/conf loads and trains two steps.

A main conf trains its model at its own size. A fine-tuning conf (``*_lm``, ``*_triplet``) must build
its main conf's model (what ``training.init_from`` insists on), so that model's size is trained
already; it trains two steps with a tiny model of the same family, which exercises what it changes
(head, margin, optimiser, schedule, sampler).
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
import yaml

from speakernet.config import load_config
from speakernet.training import checkpoint as ckpt
from speakernet.training.trainer import Trainer

from tiny_models import TINY_MODEL_ARGS
from training.training_data import make_audio_dir, make_feature_dir

ROOT = Path(__file__).resolve().parents[1]
CONFS = sorted(ROOT.glob("egs/*/v1/conf/*.yaml"))
# Small batches of 20-frame crops of a tiny corpus (the model keeps the conf's size; 20 frames is above every
# model's minimum, XVEC's 15, and costs the full-size 2-D CNNs a third less than 40); no frozen phase
# (conf/ecapa_sb_finetune.yaml freezes the model for half an epoch: two steps would not change it).
SMOKE = ["training.max_steps=2", "training.num_threads=1", "data.num_workers=0", "data.batch_size=2",
         "data.crop_frames=20", "data.min_frames=20", "data.speakers_per_batch=2", "data.utts_per_speaker=2",
         "training.freeze_model_epochs=0"]


FINETUNING = tuple(p for p in CONFS if p.stem.endswith(("_lm", "_triplet")))


def _distinct_confs() -> list[Path]:
    # VoxCeleb and CN-Celeb share most confs word for word (only the comments differ): train each once.
    seen, distinct = [], []
    for path in CONFS:
        body = yaml.safe_load(path.read_text())
        if body not in seen:
            seen.append(body)
            distinct.append(path)
    return distinct


@pytest.fixture(scope="module")
def feature_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_feature_dir(tmp_path_factory.mktemp("confs"), num_speakers=4, utts_per_speaker=3, feat_dim=80)


@pytest.fixture(scope="module")
def audio_sources(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """An audio data dir (with its shards, of 2 utterances each) for the confs that train from audio or shards, and
    a noise source dir for their augmentation."""
    import numpy as np
    import soundfile

    from speakernet.data.prepare.noise_dir import prepare_noise_dir
    from speakernet.data.shards.stage import make_shards

    root = tmp_path_factory.mktemp("audio_confs")
    (root / "noise").mkdir()
    soundfile.write(root / "noise" / "n.wav", 0.1 * np.random.default_rng(0).standard_normal(8000), 16000)
    prepare_noise_dir(root / "noise", root / "noise_dir")
    audio_dir = make_audio_dir(root / "audio")
    make_shards(audio_dir, root / "shards", utts_per_shard=2)
    return audio_dir, root / "noise_dir"


def test_the_confs_are_found() -> None:
    names = {path.stem for path in CONFS}
    assert {"ecapa_c512", "resnet34", "resnet293", "campplus", "repvgg_b1", "xvec", "rescnn_softmax"} <= names
    assert len(_distinct_confs()) < len(CONFS)


@pytest.mark.parametrize("path", _distinct_confs(), ids=lambda p: f"{p.parents[2].name}/{p.stem}")
def test_conf_builds_and_trains_two_steps(path: Path, feature_dir: Path, audio_sources: tuple[Path, Path],
                                         tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    torch.set_num_threads(1)
    # Checkpoints are not written: a full-size model's are hundreds of MB each, and saving does not depend on
    # the conf (tests/training/test_checkpoint.py); the trainer must still have asked for them.
    saved = []
    monkeypatch.setattr(ckpt, "save_checkpoint", lambda state, path: saved.append(Path(path).name))
    body = yaml.safe_load(path.read_text())
    smoke = list(SMOKE)
    if body.get("data", {}).get("augment"):  # the conf's own sources are a recipe's stage 0: a tiny one here
        body["data"]["augment"] = {"probability": 1.0, "noise": {"dirs": [str(audio_sources[1])]}}
        path = tmp_path / path.name
        path.write_text(yaml.safe_dump(body))
    config = load_config(path, smoke)
    if config["data"]["source"] in ("audio", "shards"):
        feature_dir = audio_sources[0]
    if path in FINETUNING:
        # The named RepVGG presets have no width options; the generic RepVGG is the same blocks.
        model = "RepVGG" if config["model"].startswith("RepVGG_") else config["model"]
        config = load_config(path, smoke + [f"model={model}", f"model_args={TINY_MODEL_ARGS[model]}"])
    trainer = Trainer(config, feature_dir, tmp_path / "exp")
    before = copy.deepcopy(trainer.module.model.state_dict())
    stats = trainer.train()
    assert trainer.step == 2 and torch.isfinite(torch.tensor(stats["loss"]))
    assert saved[0] == ckpt.INIT_NAME and len(saved) >= 2
    after = trainer.module.model.state_dict()
    assert any(not torch.equal(before[key], after[key]) for key in after if after[key].is_floating_point())


@pytest.mark.parametrize("path", FINETUNING, ids=lambda p: f"{p.parents[2].name}/{p.stem}")
def test_a_finetuning_conf_builds_its_main_confs_model(path: Path) -> None:
    main = path.with_name(path.stem.rsplit("_", 1)[0] + ("_softmax" if path.stem.endswith("_triplet") else "")
                          + ".yaml")
    assert main.is_file(), f"{path.name} has no main conf {main.name}"
    tuned, trained = load_config(path), load_config(main)
    assert (tuned["model"], tuned["model_args"], tuned["data"]["feat_dim"]) == \
        (trained["model"], trained["model_args"], trained["data"]["feat_dim"])  # what training.init_from insists on
