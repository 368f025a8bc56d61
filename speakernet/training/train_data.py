"""What a training reads: the dataset of ``data.source`` (offline features, or audio, from files or
shards, with speed perturbation and online augmentation), the front-end record it leaves in the exp
dir, and its thread count."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from speakernet.config import ConfigError, audio_frontend
from speakernet.data.audio_dataset import AudioCropDataset, base_speakers, speed_perturbed_speakers
from speakernet.data.augment.augmenter import Augmenter
from speakernet.data.dataset import FeatureCropDataset
from speakernet.data.shards.dataset import ShardDataset
from speakernet.data.spec_augment import SpecAugment
from speakernet.features.frontend import FRONTEND_CONFIG_NAME, load_frontend, save_frontend
from speakernet.features.vad import VadConfig

logger = logging.getLogger(__name__)


def training_threads(num_threads: int, world_size: int = 1) -> int:
    """Torch intra-op threads of each training process, for ``training.num_threads``.

    ``num_threads`` > 0 is taken as it is. 0 means ``OMP_NUM_THREADS`` when it is set (a job
    scheduler's share, the user's, or ``torchrun``'s 1 for several processes), else the CPUs
    shared out among the processes, at least 1. On 2 otherwise idle cores, 2 threads trained the
    mini and pooled recipes' ECAPA-TDNNs 1.6-1.7x faster than 1 (``benches/bench_train_threads.py``);
    beside another CPU-bound job 2 threads fell to 0.2-0.9x of 1 thread's speed, so a shared machine
    wants ``training.num_threads=1`` (or ``OMP_NUM_THREADS=1``). The rule stays fixed rather than
    following the load, so that a re-run computes the same.

    Args:
        num_threads: The config's ``training.num_threads``.
        world_size: Training processes on this machine (DDP).

    Raises:
        ValueError: on an ``OMP_NUM_THREADS`` that is not a positive integer.
    """
    if num_threads > 0:
        return num_threads
    omp = os.environ.get("OMP_NUM_THREADS", "").strip()
    if omp:
        try:
            value = int(omp)
        except ValueError:
            value = 0
        if value < 1:
            raise ValueError(f"OMP_NUM_THREADS={omp!r} is not a positive thread count (training.num_threads is 0, "
                             "so it sets the training's threads); set it to a number or unset it")
        return value
    return max(1, (os.cpu_count() or 1) // world_size)


def build_dataset(data_cfg: dict[str, Any], data_dir: Path, speakers: list[str], resumed: bool, seed: int = 0,
                  rank: int = 0, world_size: int = 1) -> tuple[FeatureCropDataset | AudioCropDataset | ShardDataset,
                                                               list[str]]:
    """The training dataset of ``data.source``, and the head's class names.

    Args:
        data_cfg: The config's ``data`` section.
        data_dir: The training data dir.
        speakers: The class names: the data's speakers, or the checkpoint's classes when ``resumed``
            (speed-perturbed ones included) or when taking an initial model's head.
        resumed: Whether ``speakers`` come from the checkpoint being resumed.
        seed: The training's seed (the shards' epoch plan).
        rank: This process's DDP rank (the shards' epoch plan).
        world_size: Number of DDP processes (the shards' epoch plan).

    Returns:
        ``(dataset, classes)``: with speed perturbation, the classes are three per speaker.

    Raises:
        ConfigError: on a ``data.augment`` section the Augmenter refuses.
        ValueError: when resuming a speed-perturbed training from a checkpoint of other classes.
    """
    spec_augment = SpecAugment.from_config(data_cfg["spec_augment"])
    classes = list(speakers)
    if data_cfg["source"] == "features":
        return FeatureCropDataset(data_dir, data_cfg["crop_frames"], data_cfg["min_frames"], data_cfg["use_vad"],
                                  {spk: i for i, spk in enumerate(speakers)}, spec_augment), classes
    base = list(speakers)
    if data_cfg["speed_perturb"]:
        try:  # classes of a speed-perturbed training already: a resumed one, or an initial model's head
            base = base_speakers(speakers)
        except ValueError as error:
            if resumed:
                raise ValueError(f"data.speed_perturb is on, but the checkpoint's classes are not those of a "
                                 f"speed-perturbed training: {error}") from None
            classes = speed_perturbed_speakers(base)
    augment = None
    if data_cfg["augment"]:
        try:
            augment = Augmenter(data_cfg["augment"])
        except (ValueError, FileNotFoundError) as error:
            raise ConfigError(f"config key 'data.augment': {error}") from None
        kinds = (["reverb"] if augment.reverb is not None else []) + [kind.name for kind in augment.additive]
        logger.info("online augmentation of %.0f%% of the crops: %s", 100 * augment.probability, ", ".join(kinds))
    spk2label = {spk: i for i, spk in enumerate(base)}
    if data_cfg["source"] == "shards":
        return ShardDataset(data_dir, spk2label, data_cfg["crop_frames"], data_cfg["min_frames"],
                            audio_frontend(data_cfg), spec_augment, augment, data_cfg["speed_perturb"],
                            data_cfg["batch_size"], data_cfg["shard_lanes"], data_cfg["shuffle_buffer"], seed, rank,
                            world_size), classes
    return AudioCropDataset(data_dir, data_cfg["crop_frames"], data_cfg["min_frames"], spk2label,
                            audio_frontend(data_cfg), spec_augment, augment=augment,
                            speed_perturb=data_cfg["speed_perturb"]), classes


def record_frontend(data_cfg: dict[str, Any], data_dir: Path, exp_dir: Path) -> None:
    """Writes the front-end record into the exp dir (see features.frontend): the training features'
    record, or for training from audio (or shards) the config's front-end (and the default VAD, which is off).

    Raises:
        ValueError: when ``data.feat_dim`` is not the features' number of mel bins.
    """
    if data_cfg["source"] != "features":
        save_frontend(exp_dir, audio_frontend(data_cfg), VadConfig())
        return
    frontend = load_frontend(data_dir)
    if frontend is None:
        logger.warning("%s has no %s: extraction cannot check its features against the model's",
                       data_dir, FRONTEND_CONFIG_NAME)
        return
    fbank, vad = frontend
    if fbank.num_mel_bins != data_cfg["feat_dim"]:
        raise ValueError(f"data.feat_dim={data_cfg['feat_dim']} but the features of {data_dir} "
                         f"have {fbank.num_mel_bins} mel bins")
    save_frontend(exp_dir, fbank, vad)
