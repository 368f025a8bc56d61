"""speakernet: Kaldi-style speaker verification in PyTorch.

Importing the package is cheap: submodules (and torch) are imported on use.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the real import is deferred to load()
    from speakernet.inference import SpeakerEmbedder

__version__ = "0.1.0"


def load(model_dir: str | os.PathLike, checkpoint: str = "latest", runtime: str | None = None,
         precision: str = "fp32") -> SpeakerEmbedder:
    """The model of an exp dir or an export dir: ``model.embed(audio)``, ``model.verify(a, b)``.

    See :func:`speakernet.inference.load`; torch is imported here, on first use.
    """
    from speakernet.inference import load as _load

    return _load(model_dir, checkpoint, runtime, precision)
