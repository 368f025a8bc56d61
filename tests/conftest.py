"""Suite-wide test setup: ``tests/`` on ``sys.path``, so that any test module can import ``tiny_models``;
the longest test files first, so that ``-n auto --dist loadfile`` does not end with one worker busy."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

#: Files that each take a large share of the suite (whole recipe runs, DDP, full-size confs), longest first.
LONG_FILES = ("test_recipe_mini.py", "test_faults.py", "test_recipe_custom.py", "test_recipes_corpora.py",
              "test_confs.py", "test_trainer.py", "test_zoo_training.py", "test_learning.py")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Moves the tests of :data:`LONG_FILES` to the front (stable: each file's tests keep their order)."""
    rank = {name: index for index, name in enumerate(LONG_FILES)}
    items.sort(key=lambda item: rank.get(item.path.name, len(LONG_FILES)))
