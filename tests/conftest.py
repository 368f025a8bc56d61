"""Suite-wide test setup: ``tests/`` on ``sys.path``, so that any test module can import ``tiny_models``."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
