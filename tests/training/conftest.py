"""Fixtures for training tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from training_data import make_feature_dir


@pytest.fixture
def feature_dir(tmp_path: Path) -> Path:
    """A 6-speaker, 30-utterance, 20-dim feature data dir."""
    return make_feature_dir(tmp_path / "corpus")
