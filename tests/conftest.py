"""Suite-wide test setup: ``tests/`` on ``sys.path``, so that any test module can import ``tiny_models``;
the longest test files first, so that ``-n auto --dist loadfile`` does not end with one worker busy."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

#: Files that each take a large share of the suite (whole recipe runs, DDP, full-size confs, every model
#: exported), longest first: a long file that starts last keeps one worker busy after the other has finished.
#: Ordered by each file's total in ``--durations=0`` of a whole run (2026-12-03, a loaded machine: 227 s for the
#: first, 21 s for the last); test_world_size_resume.py (failed in that run) by an earlier measurement.
LONG_FILES = ("test_recipes_corpora.py", "test_recipe_mini.py", "test_recipe_custom.py", "test_models_common.py",
              "test_shard_training.py", "test_confs.py", "test_finetune.py", "test_trainer.py",
              "test_world_size_resume.py", "test_make_features.py", "test_faults.py", "test_zoo_training.py",
              "test_multinode.py", "test_export.py", "test_parsers_properties.py", "test_synth.py",
              "test_audio_training.py", "test_shards.py", "test_train_metrics.py", "test_repvgg.py",
              "test_full_disk.py", "test_launch.py", "test_learning.py", "test_wespeaker.py", "test_resnet.py",
              "test_recipe_options.py")


def pytest_configure(config: pytest.Config) -> None:
    """Keeps pytest-xdist's work queue in collection order (see :func:`pytest_collection_modifyitems`).

    By default xdist (3.6 on) hands out the files of ``--dist loadfile`` by their number of tests, most
    first, which put the recipe runs (a few long tests each) at the very end, each on a worker of its own.
    """
    if getattr(config.option, "loadscopereorder", False):
        config.option.loadscopereorder = False


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Moves the tests of :data:`LONG_FILES` to the front (stable: each file's tests keep their order)."""
    rank = {name: index for index, name in enumerate(LONG_FILES)}
    items.sort(key=lambda item: rank.get(item.path.name, len(LONG_FILES)))
