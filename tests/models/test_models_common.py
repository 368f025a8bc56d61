"""Checks that every registered model must pass, written once and run over ``MODELS.names()``.

Each model is built from its tiny constructor arguments (``tests/tiny_models.py``) for
``TINY_FEAT_DIM``-dim features; a few option variants that add parameters or change the output
path (:data:`VARIANTS`) run through the same checks. What only one family has (published layouts
and parameter counts, RepVGG deployment, CAM++ segment pooling, XVEC's two embeddings, ResCNN's
unit norm, ...) is tested in that family's own file.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable
from typing import Any

import pytest
import torch
from torch import nn

from speakernet.models import MODELS, POOLINGS, build_model
from tiny_models import TINY_FEAT_DIM, TINY_MODEL_ARGS, one_thread  # noqa: F401  (one_thread: autouse)

BIG_MODELS = frozenset({"RepVGG_A1", "RepVGG_B0", "RepVGG_B1"})
"""Named sizes without width options: 13 to 55 M parameters even at 20 bins."""

EXPENSIVE_SKIPS: dict[str, str] = {
    **{name: "full-width RepVGG (seconds per check); RepVGG runs the same code at tiny widths"
       for name in ("RepVGG_TINY_A0", "RepVGG_A0", *sorted(BIG_MODELS))},
    "ResNet34": "ResNet18's basic-block code, only deeper; ResNet18 runs it",
    **{name: "ResNet50's bottleneck code, only deeper (seconds per export); ResNet50 runs it"
       for name in ("ResNet101", "ResNet152", "ResNet221", "ResNet293")},
    "ECAPA_TDNN+embed_bn": "adds one batch norm to ECAPA_TDNN's graph; its gradient is checked",
}
"""Cases left out of the expensive checks (TorchScript, export, every pooling), with the reason: one
case per code path runs them, which keeps ``tests/models`` within about 25 s on two busy cores. The
skipped ones still get the shape, attribute, gradient, batch-independence and input checks."""

MIN_FRAMES: dict[str, int] = {"XVEC": 15, "ECAPA_TDNN_SB": 5}
"""Documented minimum frame count of a model's forward, where it is not 1 (XVEC: its receptive field; ECAPA_TDNN_SB:
its reflection padding of 4 frames)."""

EXPORT_MIN_FRAMES: dict[str, int] = {"ECAPA_TDNN": 2, "ECAPA_TDNN_SB": 5, "CAMPPlus": 3, "XVEC": 16, "ResCNN": 17}
"""``min`` of the named dynamic frame ``Dim`` for ``torch.export``, from the models' docstrings.

Export treats a size of 1 specially, so the narrowest time axis inside the model needs 2 frames:
after CAM++'s stride-2 TDNN layer, after XVEC's 15-frame receptive field, after ResCNN's four
stride-2 stages (``2 ** len(channels) + 1``). Models not listed (ResNet, RepVGG) reject a named
``Dim`` with a range and are exported with ``Dim.DYNAMIC``; the program then checks for at least
:data:`DYNAMIC_EXPORT_MIN_FRAMES` frames itself.
"""

DYNAMIC_EXPORT_MIN_FRAMES = 9
"""Frames an exported ResNet or RepVGG needs (its map must keep more than one frame after the 8-fold stride)."""

VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "ResNet18+two_emb_layer": ("ResNet18", {"two_emb_layer": True}),
    "ECAPA_TDNN+embed_bn": ("ECAPA_TDNN", {"embed_bn": True}),
    "XVEC+embedding_layer_a": ("XVEC", {"embedding_layer": "a"}),
}
"""Case name -> (registered model, arguments over its tiny ones): options that change the output path."""

UNTRAINABLE_VARIANTS = frozenset({"XVEC+embedding_layer_a"})
"""Variants meant for extraction only: with ``embedding_layer="a"`` XVEC's ``seg_2`` gets no gradient."""

CASES: dict[str, tuple[str, dict[str, Any]]] = {**{name: (name, {}) for name in MODELS.names()}, **VARIANTS}
"""Every registered model (by its name, with no overrides) and every variant."""

POOLING_CHOICES: list[tuple[str, dict[str, Any] | None]] = [
    ("TAP", None),
    ("TSTP", None),
    ("ASTP", {"bottleneck_dim": 8, "global_context": False}),
    ("MHASP", {"num_heads": 2, "bottleneck_dim": 8}),
]
"""Pooling name and ``pooling_args`` each model that takes ``pooling`` is built with."""


def select_cases(cases: Iterable[str] = CASES, *, expensive: bool = False, trainable: bool = False) -> list[Any]:
    """Parameters for a parametrisation over ``cases`` (keys of :data:`CASES`).

    Args:
        cases: The cases to select from (all of :data:`CASES` by default).
        expensive: Whether the check is an expensive one: the models of :data:`EXPENSIVE_SKIPS` are then
            marked skipped, with their reason.
        trainable: Whether to leave out :data:`UNTRAINABLE_VARIANTS`.

    Returns:
        Case names, and ``pytest.param`` entries for the skipped ones, in order.
    """
    selected: list[Any] = []
    for case in cases:
        if trainable and case in UNTRAINABLE_VARIANTS:
            continue
        if expensive and case in EXPENSIVE_SKIPS:
            selected.append(pytest.param(case, marks=pytest.mark.skip(reason=EXPENSIVE_SKIPS[case])))
        else:
            selected.append(case)
    return selected


def build_case(case: str, **overrides: Any) -> nn.Module:
    """Builds a case of :data:`CASES` from its tiny arguments (seeded), with further ``overrides``."""
    name, variant_args = CASES[case]
    torch.manual_seed(0)
    return build_model(name, feat_dim=TINY_FEAT_DIM, **{**TINY_MODEL_ARGS[name], **variant_args, **overrides})


def min_frames(case: str) -> int:
    """The documented minimum frame count of the case's model."""
    return MIN_FRAMES.get(CASES[case][0], 1)


def feats(batch: int, frames: int, seed: int = 1, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Random features ``[batch, frames, TINY_FEAT_DIM]`` from a fixed seed."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch, frames, TINY_FEAT_DIM, generator=generator).to(dtype)


def set_batch_norm_statistics(model: nn.Module, frames: int, dtype: torch.dtype = torch.float32) -> None:
    """Gives every batch norm random affine parameters and the running statistics of one random batch.

    Leaves the model in eval mode. Running statistics equal to one batch's (cumulative average),
    rather than a 10% step from the initial ones, keep deep models' eval-mode activations in range.

    Args:
        model: The model, with parameters of ``dtype``.
        frames: Frames of the batch, at least the model's minimum.
        dtype: Dtype of the batch.
    """
    norms = [module for module in model.modules() if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d))]
    momenta = [norm.momentum for norm in norms]
    with torch.no_grad():
        for norm in norms:
            norm.reset_running_stats()
            norm.momentum = None
            if norm.affine:
                norm.weight.uniform_(0.5, 1.5)
                norm.bias.normal_(0.0, 0.3)
        model.train()
        model(feats(4, frames, seed=2, dtype=dtype))
    for norm, momentum in zip(norms, momenta):
        norm.momentum = momentum
    model.eval()


def test_every_registered_model_has_tiny_args() -> None:
    missing = sorted(set(MODELS.names()) - set(TINY_MODEL_ARGS))
    assert not missing, f"add tiny constructor arguments for {missing} to tests/tiny_models.py"
    stale = sorted(set(TINY_MODEL_ARGS) - set(MODELS.names()))
    assert not stale, f"tests/tiny_models.py has arguments for unregistered models {stale}"


def test_the_per_model_tables_name_registered_models() -> None:
    tables = {"BIG_MODELS": BIG_MODELS, "MIN_FRAMES": MIN_FRAMES,
              "EXPORT_MIN_FRAMES": EXPORT_MIN_FRAMES, "VARIANTS": {name for name, _ in VARIANTS.values()}}
    for table, names in tables.items():
        assert set(names) <= set(MODELS.names()), f"{table} names unregistered models"
    assert set(EXPENSIVE_SKIPS) | UNTRAINABLE_VARIANTS <= set(CASES)


def test_registry_errors_name_the_model() -> None:
    with pytest.raises(KeyError) as unknown:
        build_model("NoSuchModel")
    assert all(name in str(unknown.value) for name in MODELS.names())
    for name in MODELS.names():
        with pytest.raises(TypeError, match=f"model '{name}'"):
            build_model(name, no_such_argument=1)


@pytest.mark.parametrize("case", select_cases())
def test_output_shape_and_attributes(case: str) -> None:
    name = CASES[case][0]
    model = build_case(case).eval()
    embed_dim = TINY_MODEL_ARGS[name]["embed_dim"]
    assert model.feat_dim == TINY_FEAT_DIM and model.embed_dim == embed_dim
    lowest = min_frames(case)
    # The minimum and one above it, odd counts (47: CAM++'s segments of 10 frames after its stride 2
    # end in a partial one), and longer crops except for the big models (a second each).
    counts = sorted({lowest, lowest + 1, 9, 17} | (set() if name in BIG_MODELS else {47, 201}))
    for frames in (count for count in counts if count >= lowest):
        with torch.no_grad():
            embeddings = model(feats(3, frames))
        assert embeddings.shape == (3, embed_dim), f"{frames} frames"
        assert torch.isfinite(embeddings).all(), f"{frames} frames"


@pytest.mark.parametrize("case", select_cases(trainable=True))
def test_gradients_reach_every_parameter_and_are_finite(case: str) -> None:
    model = build_case(case).train()
    embeddings = model(feats(3, max(min_frames(case), 17)))
    # A random projection, not the squared norm, which is constant for length-normalised embeddings.
    weights = torch.randn(embeddings.shape, generator=torch.Generator().manual_seed(3))
    (embeddings * weights).sum().backward()
    parameters = dict(model.named_parameters())
    missing = [key for key, parameter in parameters.items() if parameter.grad is None]
    assert not missing, f"no gradient for {missing}"
    not_finite = [key for key, parameter in parameters.items() if not torch.isfinite(parameter.grad).all()]
    assert not not_finite, f"non-finite gradient for {not_finite}"
    zero = [key for key, parameter in parameters.items() if not parameter.grad.abs().sum() > 0]
    assert not zero, f"all-zero gradient for {zero}"


@pytest.mark.parametrize("case", select_cases())
def test_eval_output_is_deterministic_and_batch_independent(case: str) -> None:
    # In float64: with random batch norms, the deep models amplify float32's rounding differences between
    # batch sizes to 1e-3 of the output; in float64 they stay near 1e-15, while a batch statistic leaking
    # into eval mode would change the output by O(1).
    frames = max(min_frames(case), 12)
    model = build_case(case).double()
    set_batch_norm_statistics(model, frames, torch.float64)
    batch = feats(3, frames, dtype=torch.float64)
    with torch.no_grad():
        first = model(batch)
        second = model(batch)
        alone = model(batch[1:2])
    assert torch.isfinite(first).all()
    torch.testing.assert_close(first, second, rtol=0, atol=0)
    torch.testing.assert_close(first[1:2], alone, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("name", MODELS.names())
def test_bad_input_shapes_raise_value_errors_naming_the_model(name: str) -> None:
    # On the meta device: the checks come before any arithmetic.
    with torch.device("meta"):
        model = build_case(name)
        frames = 30  # not TINY_FEAT_DIM, so that the transposed input is wrong too
        bad_inputs = {
            "wrong feature dim": torch.empty(2, frames, TINY_FEAT_DIM + 1),
            "transposed": torch.empty(2, TINY_FEAT_DIM, frames),
            "2-d": torch.empty(frames, TINY_FEAT_DIM),
            "4-d": torch.empty(2, 1, frames, TINY_FEAT_DIM),
        }
        for problem, bad in bad_inputs.items():
            try:
                model(bad)
            except ValueError as error:
                assert f"{name} expects feats [batch, frames, {TINY_FEAT_DIM}]" in str(error), problem
            else:
                pytest.fail(f"{name} accepted a {problem} input {list(bad.shape)}")


@pytest.mark.parametrize("name", MODELS.names())
def test_too_few_frames_raise_a_value_error_naming_the_model(name: str) -> None:
    with torch.device("meta"):
        model = build_case(name).eval()
        with pytest.raises(ValueError, match=f"{name} needs at least"):
            model(torch.empty(2, min_frames(name) - 1, TINY_FEAT_DIM))


def takes_pooling(name: str) -> bool:
    """Whether the registered model ``name`` takes a ``pooling`` argument."""
    return "pooling" in inspect.signature(MODELS.get(name)).parameters


@pytest.mark.parametrize("name", select_cases(filter(takes_pooling, MODELS.names()), expensive=True))
def test_pooling_by_name(name: str) -> None:
    in_dim = build_case(name).pooling.in_dim  # the frame features do not depend on the pooling
    frames = max(min_frames(name), 23)
    for pooling, pooling_args in POOLING_CHOICES:
        model = build_case(name, pooling=pooling, pooling_args=pooling_args).eval()
        assert type(model.pooling) is POOLINGS.get(pooling), pooling
        assert model.pooling.in_dim == in_dim, pooling
        if pooling == "ASTP":
            assert not model.pooling.global_context and model.pooling.attention_hidden.out_channels == 8
        if pooling == "MHASP":
            assert model.pooling.num_heads == 2 and model.pooling.attention_hidden.out_channels == 2 * 8
        with torch.no_grad():
            embeddings = model(feats(2, frames))
        assert embeddings.shape == (2, model.embed_dim) and torch.isfinite(embeddings).all(), pooling
    with pytest.raises(KeyError) as unknown:
        build_case(name, pooling="STATS")
    assert all(pooling in str(unknown.value) for pooling in POOLINGS.names())


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")
@pytest.mark.parametrize("case", select_cases(expensive=True))
def test_torchscript_matches_eager_and_keeps_the_input_checks(case: str) -> None:
    name = CASES[case][0]
    model = build_case(case)
    set_batch_norm_statistics(model, max(min_frames(case), 12))
    scripted = torch.jit.script(model)
    for frames in (min_frames(case), 47):
        with torch.no_grad():
            torch.testing.assert_close(scripted(feats(2, frames)), model(feats(2, frames)))
    with pytest.raises(Exception, match=rf"{name} expects feats \[batch, frames, {TINY_FEAT_DIM}\]"):
        scripted(torch.randn(2, 30, TINY_FEAT_DIM + 1))
    with pytest.raises(Exception, match=f"{name} needs at least"):
        scripted(feats(2, min_frames(case) - 1))


@pytest.mark.parametrize("case", select_cases(expensive=True))
def test_torch_export_with_dynamic_frames_matches_eager(case: str) -> None:
    name = CASES[case][0]
    model = build_case(case)
    set_batch_norm_statistics(model, max(min_frames(case), 12))
    if name in EXPORT_MIN_FRAMES:
        lowest = EXPORT_MIN_FRAMES[name]
        frames_dim = torch.export.Dim("frames", min=lowest, max=100_000)
    else:
        lowest = DYNAMIC_EXPORT_MIN_FRAMES
        frames_dim = torch.export.Dim.DYNAMIC
    exported = torch.export.export(model, (feats(2, 40),), dynamic_shapes={"feats": {1: frames_dim}}).module()
    for frames in (lowest, 47):  # neither is the 40 frames of the example input
        with torch.no_grad():
            torch.testing.assert_close(exported(feats(2, frames)), model(feats(2, frames)))
    if lowest > 2:  # a minimum of 2 is export's default, with no check of its own
        with pytest.raises(Exception, match="feats"):
            exported(feats(2, lowest - 1))
