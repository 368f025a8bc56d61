"""The arithmetic an embedding model runs in at inference: exact float32 (the default) or bfloat16.

``bf16`` runs the convolutions and linear layers under ``torch.autocast`` in bfloat16 (float32
accumulation; reductions, softmax and the output stay float32). On a CPU with AVX512-BF16 (or AMX)
the matrix products, nearly all of the time of ECAPA-TDNN, then run at about twice the float32 rate.
It is lossy: an opt-in, never the default (README, "Pretrained models": its cosine to float32 and its
EER, measured).
"""

from __future__ import annotations

import torch
from torch import nn

#: The precisions inference takes; the first is the default.
PRECISIONS = ("fp32", "bf16")


class Bfloat16Autocast(nn.Module):
    """Runs ``model`` under bfloat16 autocast on its input's device and returns float32 embeddings.

    Args:
        model: The embedding model, in float32.
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, feats: torch.Tensor, *args: torch.Tensor) -> torch.Tensor:
        """The model's output for ``feats`` (and its further arguments, e.g. lengths), as float32."""
        with torch.autocast(feats.device.type, dtype=torch.bfloat16):
            return self.model(feats, *args).float()


def flush_denormals() -> bool:
    """Makes this process's float math flush subnormal numbers to zero (the CPU's FTZ/DAZ modes).

    Trained weights drive some activations into the subnormal range (below 1.2e-38), where x86
    float units take a slow path: SpeechBrain's imported ECAPA-TDNN ran 2.9x slower on one CPU thread
    without this (README, "Pretrained models"). A flushed value is off
    by less than 1.2e-38, far below float32's rounding at any embedding's scale. The mode belongs to a
    thread, and torch's intra-op threads take it from the thread that starts them: call this before
    the process's first parallel torch operation (load_model and the trainer do), or those threads
    keep the slow path. GPUs are not affected.

    Returns:
        Whether this CPU supports it (x86 with SSE3; elsewhere torch leaves the math as it is).
    """
    return bool(torch.set_flush_denormal(True))


def bf16_supported() -> bool:
    """Whether this CPU has native bfloat16 matrix products (oneDNN's AVX512-BF16 or AMX kernels)."""
    return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())


def with_precision(model: nn.Module, precision: str = "fp32") -> nn.Module:
    """``model`` to run in ``precision`` (one of :data:`PRECISIONS`).

    Args:
        model: An embedding model in float32, in eval mode.
        precision: ``fp32`` (the model itself) or ``bf16`` (wrapped in :class:`Bfloat16Autocast`).

    Returns:
        The model to call for embeddings.

    Raises:
        ValueError: on an unknown precision, or ``bf16`` on a CPU without native bfloat16 (emulated,
            it would be slower than float32).
    """
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose one of: {', '.join(PRECISIONS)}")
    if precision == "fp32":
        return model
    if not bf16_supported():
        raise ValueError("precision bf16 needs a CPU with AVX512-BF16 or AMX (this one would emulate bfloat16, "
                         "slower than fp32); use fp32")
    return Bfloat16Autocast(model).eval()
