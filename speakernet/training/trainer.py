"""The training loop: one code path for a single process and for DDP under ``torchrun``."""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import random
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from speakernet.config import audio_frontend, build_component, save_config
from speakernet.data.dataset import collate_crops
from speakernet.data.kaldi_dir import DataDirError, c_sort_key, read_scp, write_scp
from speakernet.data.sampler import BatchPlan
from speakernet.data.shards.dataset import ShardDataset, ShardPlan
from speakernet.models.precision import flush_denormals
from speakernet.training import checkpoint as ckpt
from speakernet.training.position import EpochPosition
from speakernet.training.train_metrics import METRICS_NAME, truncate_train_metrics
from speakernet.training.train_data import build_dataset, record_frontend, training_threads
from speakernet.training.finetune import (apply_init, check_init_audio_frontend, check_init_frontend, init_speakers,
                                         load_init)
from speakernet.training.distributed import DistributedContext, all_reduce_mean, barrier, cleanup, init_distributed
from speakernet.utils.dropped import TRAIN_DROPPED_NAME, log_dropped, write_dropped
from speakernet.utils.faults import fault_point
from speakernet.utils.fileio import exclusive_lock
from speakernet.utils.logging import format_duration

logger = logging.getLogger(__name__)

FRAME_SHIFT_S = 0.01
NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)  # what training.freeze_norm_stats keeps


class EmbeddingTrainingModel(nn.Module):
    """The embedding model and its training head as one module (one DDP wrapper for both)."""

    def __init__(self, model: nn.Module, head: nn.Module):
        super().__init__()
        self.model = model
        self.head = head
        #: Run the model without gradients (a frozen model in one process: only the head learns, and the
        #: model's backward pass is saved; under DDP every parameter must take part in each backward).
        self.model_without_grad = False

    def forward(self, feats: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns ``(loss, margin-free logits)`` for ``feats [B, T, F]`` and ``labels [B]``."""
        if self.model_without_grad:
            with torch.no_grad():
                embeddings = self.model(feats)
            return self.head(embeddings, labels)
        return self.head(self.model(feats), labels)


def _embed_dim(model: nn.Module, feat_dim: int) -> int:
    dim = getattr(model, "embed_dim", None)
    if dim is None:
        with torch.no_grad():
            was_training = model.training
            model.eval()
            dim = model(torch.zeros(1, 200, feat_dim)).shape[-1]
            model.train(was_training)
    return int(dim)


def margin_at(config: dict[str, Any], epoch_progress: float) -> float | None:
    """The head's margin at a (fractional) epoch under the config's margin schedule."""
    from speakernet.losses import margin_schedule

    schedule = config["margin_schedule"]
    final = config["head_args"].get("margin")
    if not schedule["enabled"] or final is None:
        return None
    return margin_schedule(epoch_progress, final, schedule["increase_start_epoch"], schedule["fix_start_epoch"])


class Trainer(EpochPosition):
    """Trains an embedding model on the features of a data dir.

    Args:
        config: Resolved config (:func:`speakernet.config.load_config`).
        data_dir: Training data dir (``feats.scp``, ``utt2spk``, ``vad.scp``).
        exp_dir: Output dir: ``config.yaml``, ``spk2label``, ``checkpoints/``.
        resume: None to start afresh, or a checkpoint as
            :func:`speakernet.training.checkpoint.resolve_checkpoint` takes it.
        device: ``cpu``/``cuda``; None picks CUDA when available.
    """

    def __init__(
        self,
        config: dict[str, Any],
        data_dir: str | Path,
        exp_dir: str | Path,
        resume: str | None = None,
        device: str | None = None,
    ):
        # First, before torch starts its threads: a pretrained model's subnormal activations would run 3x slower
        flush_denormals()
        self.config = config
        self.exp_dir = Path(exp_dir)
        self.context: DistributedContext = init_distributed(device)
        train_cfg, data_cfg = config["training"], config["data"]
        threads = training_threads(train_cfg["num_threads"], self.context.local_world_size)
        torch.set_num_threads(threads)

        resume_state = None
        if resume is not None:
            resume_path = ckpt.resolve_checkpoint(self.exp_dir, resume)
            resume_state = ckpt.load_checkpoint(resume_path)
            ckpt.require_entries(resume_state, resume_path, ckpt.TRAINING_ENTRIES, "resuming a training",
                                 f"to start a new training from its weights, use --init {resume_path}")
            logger.info("resuming from %s (step %d)", resume_path, resume_state["step"])

        # Labels come from the checkpoint when resuming, so a changed data dir cannot shuffle classes.
        init = load_init(config) if resume_state is None else None
        init_head = train_cfg["init_head"]
        if resume_state is not None:
            speakers = list(resume_state["speakers"])
        else:
            speakers = sorted(set(read_scp(Path(data_dir) / "utt2spk").values()), key=c_sort_key)
            if init is not None:
                if data_cfg["source"] != "features":
                    check_init_audio_frontend(init, audio_frontend(data_cfg))
                else:
                    check_init_frontend(init, Path(data_dir))
                speakers = init_speakers(init, speakers, init_head)
        self.dataset, speakers = build_dataset(config["data"], Path(data_dir), speakers,
                                               resumed=resume_state is not None, seed=train_cfg["seed"],
                                               rank=self.context.rank, world_size=self.context.world_size)
        if len(np.unique(self.dataset.labels)) < 2:
            # One class gives a loss of 0 from the first step: nothing to learn a speaker space from.
            raise DataDirError(Path(data_dir) / "utt2spk", f"training needs at least 2 speakers, got "
                               f"{len(np.unique(self.dataset.labels))} (after leaving out utterances too short)")
        self.plan: BatchPlan | ShardPlan = self.dataset.plan if isinstance(self.dataset, ShardDataset) else BatchPlan(
            self.dataset.labels,
            batch_size=data_cfg["batch_size"],
            sampler=data_cfg["sampler"],
            speakers_per_batch=data_cfg["speakers_per_batch"],
            utts_per_speaker=data_cfg["utts_per_speaker"],
            seed=train_cfg["seed"],
            rank=self.context.rank,
            world_size=self.context.world_size,
        )

        torch.manual_seed(train_cfg["seed"])
        np.random.seed(train_cfg["seed"] % 2**32)
        random.seed(train_cfg["seed"])
        model = build_component(config, "model", feat_dim=data_cfg["feat_dim"])
        head = build_component(config, "head", embed_dim=_embed_dim(model, data_cfg["feat_dim"]),
                               num_classes=len(speakers))
        if getattr(head, "needs_speaker_balanced", False) and data_cfg["sampler"] != "speaker_balanced":
            raise ValueError(f"head {config['head']} compares the utterances of a batch: set data.sampler: "
                             f"speaker_balanced (data.sampler is {data_cfg['sampler']!r})")
        if init is not None:
            apply_init(init, model, head, init_head, config["head"])
        self.module = EmbeddingTrainingModel(model, head).to(self.context.device)
        self.speakers = speakers
        self.optimizer = build_component(config, "optimizer", params=self.module.parameters())
        self.scheduler = build_component(config, "scheduler", optimizer=self.optimizer,
                                         steps_per_epoch=len(self.plan), total_epochs=train_cfg["epochs"])
        self.use_amp = bool(train_cfg["amp"]) and self.context.device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.use_amp)
        self.epoch, self.batch_in_epoch, self.step = 0, 0, 0
        # Global batches of the current epoch done by another world size before a resume on this
        # one (0 unless the number of processes changed mid-epoch); the epoch continues from there.
        self.epoch_offset = 0
        # Loss sum, correct, examples since the last regular log line; checkpointed, so a resumed
        # run completes the interval it was stopped in and logs the same numbers.
        self.log_totals = torch.zeros(3, dtype=torch.float64)  # float64: sums stay exact-ish over resumes
        self.seconds_before, self.train_started = 0.0, time.perf_counter()
        self.steps_at_start = 0

        if resume_state is not None:
            self._load_state(resume_state, resume_path)
        if self.context.is_distributed:
            self.ddp_module: nn.Module = nn.parallel.DistributedDataParallel(
                self.module, device_ids=[self.context.local_rank] if self.context.device.type == "cuda" else None
            )
        else:
            self.ddp_module = self.module

        if self.context.is_main:
            save_config(config, self.exp_dir / "config.yaml")
            write_scp(self.exp_dir / "spk2label", {spk: str(i) for i, spk in enumerate(speakers)})
            dropped = self.dataset.dropped
            log_dropped(logger, f"{data_dir}: training", dropped, len(dropped) + len(self.dataset),
                        write_dropped(self.exp_dir / TRAIN_DROPPED_NAME, dropped), "lower data.min_frames to keep them")
            record_frontend(config["data"], Path(data_dir), self.exp_dir)
            # A line at the resumed step is a partial interval (forced by max_steps) when the
            # checkpoint holds an open interval; the resumed run logs that interval in full.
            self.seconds_before = truncate_train_metrics(
                self.exp_dir / METRICS_NAME, self.step, keep_at_step=float(self.log_totals[2]) == 0
            )
            if resume_state is None:
                path = self.exp_dir / ckpt.CHECKPOINT_DIR / ckpt.INIT_NAME
                ckpt.save_checkpoint(self._state(), path)
                logger.info("saved the untrained model as %s", path)
        barrier(self.context)
        num_params = sum(p.numel() for p in model.parameters())
        logger.info(
            "%s: %.2f M parameters (without the %d-class head); %d batches/epoch of %d per process x %d "
            "process(es); %d threads per process",
            config["model"], num_params / 1e6, len(speakers), len(self.plan), self.plan.batch_size,
            self.context.world_size, threads,
        )

    # --- state ---------------------------------------------------------------------------

    def _state(self) -> dict[str, Any]:
        return {
            "model": self.module.model.state_dict(),
            "head": self.module.head.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "epoch": self.epoch,
            "batch_in_epoch": self.batch_in_epoch,
            "step": self.step,
            "epoch_offset": self.epoch_offset,
            "log_totals": self.log_totals.clone(),
            "rng": ckpt.rng_state(),
            "speakers": list(self.speakers),
            "world_size": self.context.world_size,
            "config": self.config,
        }

    def _load_state(self, state: dict[str, Any], path: Path) -> None:
        try:
            self.module.model.load_state_dict(state["model"])
            self.module.head.load_state_dict(state["head"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
            self.scaler.load_state_dict(state["scaler"])
        except (RuntimeError, ValueError, KeyError) as error:  # another model, head, optimiser or scheduler
            detail = " ".join(str(error).split())[:300]
            raise ckpt.CheckpointError(
                f"checkpoint {path} does not fit this config ({self.config['model']} {self.config['model_args']}, "
                f"{self.config['head']}, {self.config['optimizer']}, {self.config['scheduler']}): {detail}; resume "
                "with the config it was trained with (its config.yaml), or train into a new --exp-dir") from None
        self.epoch, self.batch_in_epoch, self.step = state["epoch"], state["batch_in_epoch"], state["step"]
        self.epoch_offset = int(state.get("epoch_offset", 0))
        if "log_totals" in state:
            self.log_totals.copy_(state["log_totals"])
        if state["world_size"] != self.context.world_size:
            self._map_position(int(state["world_size"]))
        ckpt.set_rng_state(state["rng"])

    def save(self) -> Path | None:
        """Writes a full checkpoint of the current position (main process only) and marks it latest."""
        path = None
        # Every process resumes with the cross-process mean of the open interval, which keeps the
        # next all-reduced mean the same as without the interruption.
        self.log_totals.copy_(all_reduce_mean(self.log_totals, self.context))
        if self.context.is_main:
            end_of_epoch = self.batch_in_epoch == self._steps_this_epoch()
            epochs_done = self.epoch + 1 if end_of_epoch else self.epoch
            name = ckpt.checkpoint_name(epochs_done, self.step, end_of_epoch)
            path = self.exp_dir / ckpt.CHECKPOINT_DIR / name
            ckpt.save_checkpoint(self._state(), path)
            ckpt.mark_latest(self.exp_dir, path)
            ckpt.prune_checkpoints(self.exp_dir, self.config["training"]["keep_checkpoints"])
            logger.info("saved checkpoint %s", path)
        barrier(self.context)
        return path

    # --- loop ----------------------------------------------------------------------------

    def _loader(self, epoch: int, start: int) -> torch.utils.data.DataLoader:
        if isinstance(self.dataset, ShardDataset):  # it batches itself, following its own plan
            self.dataset.set_epoch(epoch, start)
            batching: dict[str, Any] = {"batch_size": None}
        else:
            batching = {"batch_sampler": list(self.plan.batches(epoch, start, self.epoch_offset)),
                        "collate_fn": collate_crops}
        return torch.utils.data.DataLoader(
            self.dataset,
            num_workers=self.config["data"]["num_workers"],
            prefetch_factor=self.config["data"]["prefetch_factor"] if self.config["data"]["num_workers"] > 0 else None,
            **batching,
            # Its own generator: without one, every loader draws its base seed from the global torch
            # RNG, and a mid-epoch resume (one loader more) would shift the model's random draws.
            generator=torch.Generator().manual_seed(
                int(np.random.SeedSequence([self.config["training"]["seed"], epoch, start]).generate_state(1)[0])),
        )

    def train(self) -> dict[str, float]:
        """Runs until the configured epochs (or ``training.max_steps``) are done.

        Returns:
            Statistics of the last logged interval (loss, accuracy, lr).
        """
        train_cfg = self.config["training"]
        epochs, max_steps = train_cfg["epochs"], train_cfg["max_steps"]
        if self.batch_in_epoch >= self._steps_this_epoch():
            self._next_epoch()
        stats: dict[str, float] = {}
        stopped = False
        self.train_started = time.perf_counter()
        self.steps_at_start = self.step
        while self.epoch < epochs and not stopped:
            epoch_started = time.perf_counter()
            stats, stopped = self._train_epoch(self._steps_this_epoch(), max_steps)
            if not stopped:
                if self.context.is_main:
                    logger.info("epoch %d of %d done in %s; ETA %s", self.epoch + 1, epochs,
                                format_duration(time.perf_counter() - epoch_started), self._eta())
                self._next_epoch()
        self._check_replicas()
        cleanup(self.context)
        return stats

    def _next_epoch(self) -> None:
        continued = self.epoch_offset > 0  # from another world size: it may end a step off this one's schedule
        self.epoch, self.batch_in_epoch, self.epoch_offset = self.epoch + 1, 0, 0
        if continued:
            self._sync_schedule()

    def _train_epoch(self, steps_per_epoch: int, max_steps: int) -> tuple[dict[str, float], bool]:
        train_cfg = self.config["training"]
        self.module.train()
        loader = self._loader(self.epoch, self.batch_in_epoch)
        show_bar = self.context.is_main and sys.stderr.isatty()
        bar = tqdm(total=steps_per_epoch, initial=self.batch_in_epoch, desc=f"epoch {self.epoch + 1}",
                   disable=not show_bar)
        totals = self.log_totals
        interval_start, interval_frames = time.perf_counter(), 0
        interval_wait = 0.0  # seconds the loop waited for batches in this interval
        stats: dict[str, float] = {}
        freeze_steps = round(train_cfg["freeze_model_epochs"] * len(self.plan))
        # Batch norms whose running statistics stay as they are (training.freeze_norm_stats), found once
        frozen_norms = [module for module in self.module.model.modules() if isinstance(module, NORMS)] \
            if train_cfg["freeze_norm_stats"] else []
        batches = iter(loader)
        while True:
            wait_started = time.perf_counter()
            try:
                feats, labels = next(batches)
            except StopIteration:
                break
            interval_wait += time.perf_counter() - wait_started
            frozen = self._schedule_position() < freeze_steps
            # A frozen model runs as in evaluation (batch-norm statistics kept) and gets no update.
            self.module.model.train(not frozen)
            if not frozen:
                for norm in frozen_norms:
                    norm.eval()
            self.module.model_without_grad = frozen and not self.context.is_distributed
            margin = margin_at(self.config, self._epoch_progress())
            if margin is not None and hasattr(self.module.head, "update_margin"):
                self.module.head.update_margin(margin)
            feats, labels = feats.to(self.context.device), labels.to(self.context.device)
            with torch.autocast(self.context.device.type, enabled=self.use_amp):
                loss, logits = self.ddp_module(feats, labels)
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            if frozen:  # after backward, so every DDP rank still reduces the same gradients
                for parameter in self.module.model.parameters():
                    parameter.grad = None
            self.scaler.unscale_(self.optimizer)
            max_norm = train_cfg["grad_clip"] if train_cfg["grad_clip"] > 0 else float("inf")
            grad_norm = nn.utils.clip_grad_norm_(self.module.parameters(), max_norm)
            if torch.isfinite(grad_norm):
                self.scaler.step(self.optimizer)
            elif not self.use_amp:
                # With AMP the scaler skips the step and lowers its scale; without it, skip here,
                # so one bad batch cannot write NaN into the weights.
                logger.warning("step %d: non-finite gradient norm, the update is skipped", self.step)
            else:
                self.scaler.step(self.optimizer)
            self.scaler.update()
            self.scheduler.step()
            self.step += 1
            self.batch_in_epoch += 1
            bar.update(1)
            fault_point("train.step")

            hits = self.module.head.correct(logits.detach(), labels)
            totals += torch.tensor([loss.item() * hits.numel(), hits.sum().item(), hits.numel()])
            interval_frames += feats.shape[0] * feats.shape[1]
            last_of_epoch = self.batch_in_epoch == steps_per_epoch
            reached_max = max_steps > 0 and self.step >= max_steps
            regular = self.step % train_cfg["log_interval"] == 0 or last_of_epoch
            if regular or reached_max:
                stats = self._log(totals, interval_frames, time.perf_counter() - interval_start, margin, interval_wait)
                bar.set_postfix(loss=f"{stats['loss']:.3f}", acc=f"{stats['accuracy']:.1f}%")
                if regular:  # a line forced by max_steps leaves the interval open for a resumed run
                    totals.zero_()
                    interval_start, interval_frames, interval_wait = time.perf_counter(), 0, 0.0
            interval = train_cfg["checkpoint_interval"]
            if reached_max or last_of_epoch or (interval > 0 and self.step % interval == 0):
                self.save()
            if reached_max:
                bar.close()
                logger.info("reached training.max_steps=%d", max_steps)
                return stats, True
        bar.close()
        return stats, False

    def total_steps(self) -> int:
        """Optimiser steps of the whole training: all epochs, or ``training.max_steps`` when it stops earlier."""
        epochs = self.config["training"]["epochs"]
        total = self.step
        if self.epoch < epochs:  # the steps left: of this epoch (on this world size), then of the later ones
            total += self._steps_this_epoch() - self.batch_in_epoch + (epochs - self.epoch - 1) * len(self.plan)
        max_steps = self.config["training"]["max_steps"]
        return min(total, max_steps) if max_steps > 0 else total

    def _eta(self) -> str:
        """Time to the end of the training at this run's average speed so far."""
        done = self.step - self.steps_at_start
        if done <= 0:
            return "?"
        seconds_per_step = (time.perf_counter() - self.train_started) / done
        return format_duration(max(0, self.total_steps() - self.step) * seconds_per_step)

    def _log(self, totals: torch.Tensor, frames: int, seconds: float, margin: float | None,
             data_wait: float = 0.0) -> dict[str, float]:
        """Logs an interval's line and appends its record to ``train_metrics.jsonl``.

        Args:
            data_wait: Seconds of the interval's ``seconds`` the loop waited for batches; the line
                and the record give its fraction (``data_wait``: near 1, loading is the bottleneck).
        """
        totals = all_reduce_mean(totals, self.context)
        loss = float(totals[0] / max(totals[2], 1))
        accuracy = float(100.0 * totals[1] / max(totals[2], 1))
        lr = self.scheduler.get_last_lr()[0]
        audio_seconds = frames * FRAME_SHIFT_S * self.context.world_size
        speed = audio_seconds / max(seconds, 1e-9)
        utts_per_s = float(totals[2]) * self.context.world_size / max(seconds, 1e-9)
        wait_fraction = min(1.0, data_wait / max(seconds, 1e-9))
        if self.context.is_main:
            logger.info(
                "epoch %d batch %d/%d step %d/%d: loss %.4f acc %.2f%% lr %.3g margin %s | %.1f utts/s, %.1fx real "
                "time, %.0f%% data wait, ETA %s",
                self.epoch + 1, self.batch_in_epoch, self._steps_this_epoch(), self.step, self.total_steps(), loss,
                accuracy, lr,
                "-" if margin is None else f"{margin:.3f}", utts_per_s, speed, 100 * wait_fraction, self._eta(),
            )
            record = {
                "epoch": self.epoch + 1,
                "progress": self._epoch_progress(),
                "step": self.step,
                "loss": loss,
                "accuracy": accuracy,
                "lr": lr,
                "margin": margin,
                "utts_per_s": utts_per_s,
                "data_wait": wait_fraction,
                "seconds": self.seconds_before + time.perf_counter() - self.train_started,
            }
            # null instead of NaN/inf keeps every line valid JSON
            record = {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in record.items()}
            with open(self.exp_dir / METRICS_NAME, "a", encoding="utf-8") as handle:
                handle.write(json.dumps(record) + "\n")
        return {"loss": loss, "accuracy": accuracy, "lr": lr}

    def _check_replicas(self) -> None:
        """Under DDP, checks that every process ends with the same weights."""
        if not self.context.is_distributed:
            return
        checksum = torch.stack([p.detach().double().sum() for p in self.module.parameters()]).sum().reshape(1)
        gathered = [torch.zeros_like(checksum) for _ in range(self.context.world_size)]
        torch.distributed.all_gather(gathered, checksum)
        values = [float(g) for g in gathered]
        if max(values) - min(values) > 1e-6 * max(1.0, abs(values[0])):
            raise RuntimeError(f"DDP replicas diverged: parameter checksums {values}")
        logger.info("DDP replicas in sync: parameter checksum %.6f on all %d processes", values[0], len(values))


LOCK_NAME = ".lock"  # in the exp dir, held by rank 0 while a training runs


def previous_training(exp_dir: str | Path) -> list[Path]:
    """The outputs of an earlier training in ``exp_dir`` that a fresh start would mix with its own.

    Its epoch, mid-epoch and averaged checkpoints and the ``latest`` pointer. Not among them: the
    untrained ``init.pt`` (a fresh start rewrites it identically) and ``train_metrics.jsonl``
    (a fresh start truncates it; a run killed before its first checkpoint leaves only those two).
    """
    directory = Path(exp_dir) / ckpt.CHECKPOINT_DIR
    if not directory.is_dir():
        return []
    return sorted(path for pattern in ("epoch_*.pt", "step_*.pt", "avg*.pt", ckpt.LATEST)
                  for path in directory.glob(pattern))


def _start_afresh(exp_dir: Path, overwrite: bool) -> None:
    """Refuses to start a new training over an earlier one, or (``overwrite``) removes the earlier one's outputs."""
    earlier = previous_training(exp_dir)
    if not earlier:
        return
    if not overwrite:
        names = ", ".join(path.name for path in earlier[:4]) + (f" and {len(earlier) - 4} more" if len(earlier) > 4
                                                                 else "")
        raise ValueError(f"{exp_dir} already holds a training ({names}): add --resume to continue it, --overwrite "
                         "to start again (its checkpoints are removed), or use another --exp-dir")
    for path in earlier:
        path.unlink()
    logger.warning("--overwrite: removed %d outputs of the earlier training in %s", len(earlier), exp_dir)


def train(config: dict[str, Any], data_dir: str | Path, exp_dir: str | Path, resume: str | None = None,
          device: str | None = None, overwrite: bool = False) -> dict[str, float]:
    """Builds a :class:`Trainer` and runs it; see there for the other arguments.

    The first process (rank 0) holds ``exp_dir/.lock`` throughout, so a second training into the
    same exp dir stops with an error instead of silently replacing the first one's checkpoints.
    A new training (no ``resume``) into an exp dir that already holds one stops with an error
    too: its checkpoints would be mixed with the new ones (model averaging would average both).

    Args:
        overwrite: Start a new training there all the same, removing the earlier one's
            checkpoints and metrics first.

    Raises:
        ValueError: if ``exp_dir`` holds an earlier training and neither ``resume`` nor
            ``overwrite`` is given.
    """
    first = os.environ.get("RANK", "0") == "0"
    lock = exclusive_lock(Path(exp_dir) / LOCK_NAME, "a training") if first else contextlib.nullcontext()
    with lock:
        if first and resume is None:
            _start_afresh(Path(exp_dir), overwrite)
        return Trainer(config, data_dir, exp_dir, resume=resume, device=device).train()


__all__ = ["Trainer", "train", "previous_training", "margin_at",
           "EmbeddingTrainingModel"]
