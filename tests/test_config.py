"""Config loading: overrides, strict keys, component checks, round trip."""

from __future__ import annotations

from pathlib import Path

import pytest

from speakernet.config import ConfigError, load_config, load_resolved_config, parse_override, save_config


def test_defaults_and_overrides(tmp_path: Path) -> None:
    conf = tmp_path / "c.yaml"
    conf.write_text("model_args: {channels: 64}\ntraining: {epochs: 3}\n")
    config = load_config(conf, ["training.epochs=7", "model_args.embed_dim=32", "data.use_vad=false"])
    assert config["training"]["epochs"] == 7
    assert config["model_args"] == {"channels": 64, "embed_dim": 32}
    assert config["data"]["use_vad"] is False
    assert config["data"]["crop_frames"] == 200  # untouched default


def test_overriding_a_component_drops_the_files_arguments_for_the_old_one(tmp_path: Path) -> None:
    conf = tmp_path / "c.yaml"
    conf.write_text("scheduler: WarmupExponential\nscheduler_args: {warmup_epochs: 1, final_lr: 1.0e-4}\n")
    assert load_config(conf, ["scheduler=Constant"])["scheduler_args"] == {}
    assert load_config(conf, ["scheduler=Constant", "scheduler_args.warmup_epochs=2"])["scheduler_args"] == {
        "warmup_epochs": 2}
    # the same component named again keeps its arguments
    assert load_config(conf, ["scheduler=WarmupExponential"])["scheduler_args"]["final_lr"] == 1.0e-4


def test_parse_override_types() -> None:
    assert parse_override("a.b=3") == {"a": {"b": 3}}
    assert parse_override("a=0.5") == {"a": 0.5}
    assert parse_override("a={x: 1}") == {"a": {"x": 1}}
    with pytest.raises(ConfigError, match="key.sub=value"):
        parse_override("training.epochs")


@pytest.mark.parametrize(
    "override, message",
    [
        ("training.epoch=3", "unknown config key 'training.epoch'.*epochs"),
        ("traning.epochs=3", "unknown config key 'traning'.*training"),
        ("model=ECAPA", "unknown model 'ECAPA'.*ECAPA_TDNN"),
        ("head=ArcFace", "unknown head 'ArcFace'.*AAMSoftmax"),
        ("model_args.chanels=64", "unknown config key 'model_args.chanels'.*channels"),
        ("head_args.num_classes=10", "set by the trainer"),
        ("optimizer_args.momentun=0.9", "momentum"),
        ("training.epochs=2.5", "must be an integer"),
        ("data.use_vad=yes_please", "true or false"),
        ("data.sampler=3", "must be a string"),
        ("data.sampler=speaker", "'data.sampler' must be one of: random, speaker_balanced"),
        ("extract.mode=bogus", "'extract.mode' must be one of: full, multicrop; got 'bogus'"),
        ("extract.batch_size=0", r"^config \+ command-line overrides: config key 'extract.batch_size' must be >= 1, "
                                 "got 0$"),
        ("extract.crop_frames=-5", "'extract.crop_frames' must be >= 1, got -5"),
        ("data.spec_augment.probability=1.5", "'data.spec_augment.probability' must be between 0.0 and 1.0"),
        ("training.log_interval=0", "'training.log_interval' must be >= 1"),
        ("model_args.channels=eight", r"^config \+ command-line overrides: config key 'model_args.channels' must be a "
                                      "number, got 'eight'$"),
        ("optimizer_args.lr=fast", "'optimizer_args.lr' must be a number, got 'fast'"),
        ("head_args.easy_margin=1", "'head_args.easy_margin' must be true or false, got 1"),
    ],
)
def test_bad_keys_and_names_list_valid_choices(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(None, [override])


def test_bad_yaml_file_names_it(tmp_path: Path) -> None:
    conf = tmp_path / "bad.yaml"
    conf.write_text("training: [unclosed\n")
    with pytest.raises(ConfigError, match="bad.yaml"):
        load_config(conf)
    conf.write_text("model: ECAPA_TDNN\nmodel_args: {channels: 64\ntraining:\n  epochs: 3\n")
    with pytest.raises(ConfigError) as info:
        load_config(conf)
    assert str(info.value) == f"config {conf}:3:9: not valid YAML: expected ',' or '}}', but got ':'"
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.yaml")


def test_resolved_config_round_trip(tmp_path: Path) -> None:
    config = load_config(None, ["model_args={channels: 32}", "training.seed=7"])
    save_config(config, tmp_path / "config.yaml")
    assert load_resolved_config(tmp_path) == config
    with pytest.raises(ConfigError, match="run the training stage"):
        load_resolved_config(tmp_path / "nowhere")


def test_arguments_a_component_rejects_name_its_config_section(tmp_path: Path) -> None:
    from speakernet.config import build_component
    from speakernet.training.optim import OPTIMIZERS  # noqa: F401  (registers the optimisers)

    config = load_config(None, ["optimizer_args.lr=-1", "head_args.scale=32.5"])  # a float for an int default
    import torch

    with pytest.raises(ConfigError, match=r"^config key 'optimizer_args' \(optimizer_args of optimizer 'SGD' "
                                          r"\{'lr': -1\}\): Invalid learning rate: -1$"):
        build_component(config, "optimizer", params=[torch.nn.Parameter(torch.zeros(1))])
    head = build_component(config, "head", embed_dim=4, num_classes=3)
    assert head.scale == 32.5


def test_recipe_source_dirs_move_to_the_runs_data_dir(tmp_path: Path) -> None:
    from speakernet.config import relocated_source_overrides

    conf = tmp_path / "aug.yaml"
    conf.write_text("data:\n  source: audio\n  use_vad: false\n  augment:\n    probability: 0.6\n"
                    "    reverb: {dirs: [data/sources/rirs_a, /abs/rirs]}\n"
                    "    noise: {dirs: [mine/noise], snr: [0, 15]}\n    music: {dirs: [data/sources/music]}\n")
    assert relocated_source_overrides(conf, "/runs/d") == [
        "data.augment.reverb.dirs=[/runs/d/sources/rirs_a,/abs/rirs]",
        "data.augment.music.dirs=[/runs/d/sources/music]"]
    assert relocated_source_overrides(conf, "data") == []  # the default: nothing moves
    assert load_config(conf, relocated_source_overrides(conf, "/runs/d"))["data"]["augment"]["music"]["dirs"] == [
        "/runs/d/sources/music"]
    with pytest.raises(ConfigError, match="data.augment.reverb.dirs: '/my data/sources/rirs_a' cannot be passed"):
        relocated_source_overrides(conf, "/my data")


def test_a_quick_load_checks_the_data_keys_without_the_component_registries() -> None:
    quick = load_config(None, ["model=NoSuchModel", "data.source=shards", "data.use_vad=false"],
                        check_components=False)
    assert quick["data"]["source"] == "shards"
    with pytest.raises(ConfigError, match="NoSuchModel"):
        load_config(None, ["model=NoSuchModel"])
    with pytest.raises(ConfigError, match="set data.use_vad: false"):
        load_config(None, ["data.source=shards"], check_components=False)
