"""ECAPA_TDNN_SB's inference rewrites equal the formulas they replace; inference precision (fp32, bf16)."""

from __future__ import annotations

import pytest
import torch

from speakernet.models import build_model
from speakernet.models.ecapa_sb import MaskedAttentiveStatsPool, SERes2BlockSB
from speakernet.models.precision import Bfloat16Autocast, bf16_supported, with_precision

from tiny_models import TINY_FEAT_DIM, TINY_MODEL_ARGS, randomise_batch_norms


def _pool_by_concatenation(pool: MaskedAttentiveStatsPool, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """SpeechBrain's formula: the attention convolves [frames; mean; std] repeated over time, masked statistics."""
    weights = torch.ones_like(x[:, :1]) if mask is None else mask
    weights = weights / weights.sum(dim=2, keepdim=True)

    def stats(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean = (w * x).sum(dim=2)
        return mean, torch.sqrt((w * (x - mean.unsqueeze(2)) ** 2).sum(dim=2).clamp(min=pool.eps))

    mean, std = stats(weights)
    frames = x.shape[2]
    context = torch.cat([x, mean.unsqueeze(2).expand(-1, -1, frames), std.unsqueeze(2).expand(-1, -1, frames)], dim=1)
    scores = pool.attention_out(torch.tanh(pool.attention_hidden(context)))
    if mask is not None:
        scores = scores.masked_fill(mask == 0, float("-inf"))
    return torch.cat(stats(torch.softmax(scores, dim=2)), dim=1)


@pytest.mark.parametrize("masked", [False, True])
def test_pooling_without_the_concatenated_input_equals_the_formula(masked: bool) -> None:
    torch.manual_seed(0)
    pool = MaskedAttentiveStatsPool(channels=12, attention_channels=6).eval()
    randomise_batch_norms(pool)
    x = torch.randn(3, 12, 41) * 3 + 1
    mask = (torch.arange(41)[None, :] < torch.tensor([41, 30, 7])[:, None]).float().unsqueeze(1) if masked else None
    with torch.inference_mode():
        torch.testing.assert_close(pool(x, mask), _pool_by_concatenation(pool, x, mask), rtol=1e-5, atol=1e-5)


def test_the_block_adds_the_gated_output_to_its_input() -> None:
    torch.manual_seed(1)
    block = SERes2BlockSB(16, 16, kernel_size=3, dilation=2, scale=4, se_channels=4).eval()
    randomise_batch_norms(block, seed=1)
    x = torch.randn(2, 16, 30)
    with torch.inference_mode():
        hidden = block.tdnn2(block.res2(block.tdnn1(x)))
        torch.testing.assert_close(block(x), x + block.se(hidden), rtol=1e-5, atol=1e-5)


def test_a_layer_without_padding_does_not_pad() -> None:
    model = build_model("ECAPA_TDNN_SB", feat_dim=TINY_FEAT_DIM, **TINY_MODEL_ARGS["ECAPA_TDNN_SB"])
    assert model.aggregation.conv.padding_mode == "zeros"  # kernel 1: F.pad would only copy the input
    assert model.input_layer.conv.padding_mode == "reflect"


def test_precision_names_its_choices() -> None:
    model = torch.nn.Linear(2, 2)
    assert with_precision(model, "fp32") is model  # the default runs the model itself
    with pytest.raises(ValueError, match="unknown precision 'fp16'; choose one of: fp32, bf16"):
        with_precision(model, "fp16")


@pytest.mark.skipif(not bf16_supported(), reason="no native bfloat16 on this CPU")
def test_bf16_embeddings_are_float32_and_close_to_fp32() -> None:
    torch.manual_seed(2)
    model = build_model("ECAPA_TDNN_SB", feat_dim=TINY_FEAT_DIM, **TINY_MODEL_ARGS["ECAPA_TDNN_SB"]).eval()
    fast = with_precision(model, "bf16")
    assert isinstance(fast, Bfloat16Autocast)
    feats, lengths = torch.randn(2, 80, TINY_FEAT_DIM), torch.tensor([1.0, 0.5])
    with torch.inference_mode():
        for args in ((feats,), (feats, lengths)):
            expected, output = model(*args), fast(*args)
            assert output.dtype == torch.float32
            assert torch.nn.functional.cosine_similarity(output, expected).min() > 0.999
            assert not torch.equal(output, expected)  # it did run in bfloat16


def test_bf16_is_refused_where_it_would_be_emulated(monkeypatch: pytest.MonkeyPatch) -> None:
    from speakernet.models import precision

    monkeypatch.setattr(precision, "bf16_supported", lambda: False)
    with pytest.raises(ValueError, match="needs a CPU with AVX512-BF16 or AMX"):
        with_precision(torch.nn.Linear(2, 2), "bf16")
