"""Fine-tuning from another training's weights (training.init_from): LM fine-tuning and a second stage."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from speakernet.bin.train import main as train_main
from speakernet.config import load_config
from speakernet.training import checkpoint as ckpt
from speakernet.training.trainer import Trainer, train

from training_data import TINY_OVERRIDES, make_feature_dir

ONE_EPOCH = TINY_OVERRIDES + ["training.epochs=1"]


@pytest.fixture
def pretrained(feature_dir: Path, tmp_path: Path) -> Path:
    exp = tmp_path / "pretrained"
    train(load_config(None, ONE_EPOCH + ["training.keep_checkpoints=0"]), feature_dir, exp)
    return exp


def _same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_lm_finetuning_starts_from_the_model_and_head_with_a_fresh_schedule(
        feature_dir: Path, pretrained: Path, tmp_path: Path) -> None:
    source = ckpt.load_checkpoint(ckpt.resolve_checkpoint(pretrained, "latest"))
    exp = tmp_path / "lm"
    lm = ["data.crop_frames=80", "head_args={margin: 0.5, scale: 16}", "margin_schedule.fix_start_epoch=1",
          "optimizer_args={lr: 0.001}", f"training.init_from={pretrained}"]
    trainer = Trainer(load_config(None, ONE_EPOCH + lm), feature_dir, exp)
    assert trainer.step == 0 and trainer.module.head.margin == 0.5
    assert _same_weights(trainer.module.model.state_dict(), source["model"])
    assert _same_weights(trainer.module.head.state_dict(), source["head"])
    assert trainer.speakers == source["speakers"]
    assert trainer.optimizer.param_groups[0]["lr"] < 0.001  # warm-up of the new schedule, not the old lr
    init = ckpt.load_checkpoint(exp / "checkpoints" / ckpt.INIT_NAME)
    assert _same_weights(init["model"], source["model"])  # the fine-tuning's "untrained" row is the source model
    trainer.train()
    tuned = ckpt.load_checkpoint(ckpt.resolve_checkpoint(exp, "latest"))
    assert not _same_weights(tuned["model"], source["model"])
    assert tuned["config"]["training"]["init_from"] == str(pretrained)


def test_a_second_stage_takes_the_model_only_with_a_new_head(feature_dir: Path, pretrained: Path,
                                                              tmp_path: Path) -> None:
    source = ckpt.load_checkpoint(ckpt.resolve_checkpoint(pretrained, "latest"))
    second = ["head=TripletLoss", "head_args={margin: 0.1}", "data.sampler=speaker_balanced",
              "data.speakers_per_batch=3", "data.utts_per_speaker=2", "training.init_head=false",
              f"training.init_from={ckpt.resolve_checkpoint(pretrained, 'latest')}"]  # a file this time
    trainer = Trainer(load_config(None, ONE_EPOCH + second), feature_dir, tmp_path / "triplet")
    assert _same_weights(trainer.module.model.state_dict(), source["model"])
    stats = trainer.train()
    assert stats["loss"] >= 0.0 and 0.0 <= stats["accuracy"] <= 100.0


def test_am_softmax_centres_start_an_aam_finetuning(feature_dir: Path, pretrained: Path, tmp_path: Path) -> None:
    source = ckpt.load_checkpoint(ckpt.resolve_checkpoint(pretrained, "latest"))  # trained with AAMSoftmax
    trainer = Trainer(load_config(None, ONE_EPOCH + [f"training.init_from={pretrained}", "head=AMSoftmax"]),
                      feature_dir, tmp_path / "am")
    assert _same_weights(trainer.module.head.state_dict(), source["head"])


def test_averaged_models_keep_their_head_for_finetuning(feature_dir: Path, tmp_path: Path) -> None:
    exp = tmp_path / "two_epochs"
    train(load_config(None, TINY_OVERRIDES + ["training.epochs=2", "training.keep_checkpoints=0"]), feature_dir, exp)
    path = ckpt.write_average(exp, 2)
    averaged = ckpt.load_checkpoint(path)
    epochs = [ckpt.load_checkpoint(p) for p in ckpt.epoch_checkpoints(exp)]
    weight = next(k for k in averaged["head"])
    torch.testing.assert_close(averaged["head"][weight], (epochs[0]["head"][weight] + epochs[1]["head"][weight]) / 2)
    trainer = Trainer(load_config(None, ONE_EPOCH + [f"training.init_from={path}"]), feature_dir, tmp_path / "lm")
    assert _same_weights(trainer.module.head.state_dict(), averaged["head"])


def test_mismatches_are_named_errors(feature_dir: Path, pretrained: Path, tmp_path: Path, capsys) -> None:
    init = f"training.init_from={pretrained}"
    with pytest.raises(ValueError, match="must build the same model"):
        Trainer(load_config(None, ONE_EPOCH + [init, "model_args={channels: 8, embed_dim: 8}"]), feature_dir,
                tmp_path / "a")
    with pytest.raises(ValueError, match="AAMSoftmax head of .* does not fit this config's Softmax.*init_head=false"):
        Trainer(load_config(None, ONE_EPOCH + [init, "head=Softmax", "head_args={}",
                                               "margin_schedule.enabled=false"]), feature_dir, tmp_path / "b")
    with pytest.raises(ValueError, match="does not fit this config's SubcenterAAMSoftmax"):  # 3 centres per class
        Trainer(load_config(None, ONE_EPOCH + [init, "head=SubcenterAAMSoftmax"]), feature_dir, tmp_path / "b3")
    other_speakers = make_feature_dir(tmp_path / "other", num_speakers=7, feat_dim=20, seed=1)
    with pytest.raises(ValueError, match=r"1 speaker\(s\) the head .* was not trained on \(e.g. 'spk06'\)"):
        Trainer(load_config(None, ONE_EPOCH + [init]), other_speakers, tmp_path / "c")
    with pytest.raises(FileNotFoundError, match="neither a checkpoint file nor an exp dir"):
        Trainer(load_config(None, ONE_EPOCH + [f"training.init_from={tmp_path / 'nothing'}"]), feature_dir,
                tmp_path / "d")
    # the stage: one line naming the problem, exit 1
    code = train_main(["--conf", "/dev/null", "--data-dir", str(feature_dir), "--exp-dir", str(tmp_path / "e"),
                       "--init", str(tmp_path / "missing.pt"), *ONE_EPOCH])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and "missing.pt is neither a checkpoint file nor an exp dir" in err[-1]


def test_a_frozen_model_is_kept_exactly_while_its_new_head_learns(feature_dir: Path, pretrained: Path,
                                                                  tmp_path: Path) -> None:
    source = ckpt.load_checkpoint(ckpt.resolve_checkpoint(pretrained, "latest"))
    new_head = [f"training.init_from={pretrained}", "training.init_head=false"]
    frozen = Trainer(load_config(None, ONE_EPOCH + new_head + ["training.freeze_model_epochs=1"]), feature_dir,
                     tmp_path / "frozen")
    head_before = {k: v.clone() for k, v in frozen.module.head.state_dict().items()}
    frozen.train()
    tuned = ckpt.load_checkpoint(ckpt.resolve_checkpoint(tmp_path / "frozen", "latest"))
    assert _same_weights(tuned["model"], source["model"])  # weights and batch-norm statistics
    assert not _same_weights(tuned["head"], head_before)
    half = Trainer(load_config(None, ONE_EPOCH + new_head + ["training.freeze_model_epochs=0.5"]), feature_dir,
                   tmp_path / "half")
    half.train()
    assert not _same_weights(ckpt.load_checkpoint(ckpt.resolve_checkpoint(tmp_path / "half", "latest"))["model"],
                             source["model"])


def test_frozen_norm_statistics_stay_while_the_weights_learn(feature_dir: Path, pretrained: Path,
                                                             tmp_path: Path) -> None:
    source = ckpt.load_checkpoint(ckpt.resolve_checkpoint(pretrained, "latest"))["model"]
    statistics = [key for key in source if key.endswith(("running_mean", "running_var"))]
    assert statistics
    for freeze in (True, False):
        exp = tmp_path / f"freeze_{freeze}"
        train(load_config(None, ONE_EPOCH + [f"training.init_from={pretrained}", "training.init_head=false",
                                             f"training.freeze_norm_stats={str(freeze).lower()}"]), feature_dir, exp)
        tuned = ckpt.load_checkpoint(ckpt.resolve_checkpoint(exp, "latest"))["model"]
        kept = [torch.equal(tuned[key], source[key]) for key in statistics]
        assert all(kept) if freeze else not any(kept)
        learned = [key for key in tuned if key.endswith(".weight") and not torch.equal(tuned[key], source[key])]
        assert any(key.rsplit(".", 1)[0] + ".running_mean" in source for key in learned)  # a norm's own scale too
        assert len(learned) > len(statistics) // 2


def test_features_of_another_front_end_are_refused(feature_dir: Path, pretrained: Path, tmp_path: Path) -> None:
    from speakernet.features.frontend import save_frontend
    from speakernet.features.sb_fbank import SpeechBrainFbankConfig
    from speakernet.features.fbank import FbankConfig
    from speakernet.features.vad import VadConfig

    save_frontend(pretrained, SpeechBrainFbankConfig(num_mel_bins=20), VadConfig())
    save_frontend(feature_dir, FbankConfig(num_mel_bins=20), VadConfig())
    with pytest.raises(ValueError, match=r"fbank.kind = 'kaldi', but the model was trained on 'speechbrain'.*"
                                         r"make_features --frontend-from"):
        Trainer(load_config(None, ONE_EPOCH + [f"training.init_from={pretrained}"]), feature_dir, tmp_path / "x")


def test_a_conf_may_leave_out_the_model_arguments_it_keeps_at_their_defaults(feature_dir: Path, tmp_path: Path
                                                                              ) -> None:
    exp = tmp_path / "explicit"
    train(load_config(None, ONE_EPOCH + ["model_args={channels: 16, embed_dim: 8, scale: 8}"]), feature_dir, exp)
    implicit = Trainer(load_config(None, ONE_EPOCH + ["model_args={channels: 16, embed_dim: 8}",
                                                      f"training.init_from={exp}"]), feature_dir, tmp_path / "ft")
    assert implicit.step == 0
