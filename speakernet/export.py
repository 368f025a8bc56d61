"""Exporting a trained model to ONNX and TorchScript, checked against the PyTorch model it came from.

An export dir is a self-contained model dir for inference without the training code::

    D/model.onnx          ONNX graph, dynamic batch and frame axes: feats [B, T, F] -> embeddings [B, D]
    D/model.torchscript   the same model as TorchScript (``torch.jit.load``)
    D/frontend.json       the fbank + VAD options of the training features (features.frontend)
    D/export.json         where it came from and the measured parity of each format
    D/mean.vec, D/threshold   copied from the exp dir when the recipe wrote them (the CLI uses them)
    D/cosine_calibration.json the exp dir's score calibration (speakernet verify), when it is the
                          exported checkpoint's (backend.score_calibration)

:class:`speakernet.inference.SpeakerEmbedder` and the ``speakernet`` CLI take an export dir like an
exp dir (``--exp-dir D``) and run the ONNX graph with onnxruntime.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import shutil
import time
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from speakernet.features.frontend import FRONTEND_CONFIG_NAME
from speakernet.training.checkpoint import load_model, resolve_checkpoint
from speakernet.utils.fileio import PathLike, atomic_write, ensure_writable_dir

logger = logging.getLogger(__name__)

EXPORT_INFO_NAME = "export.json"
FORMATS = {"onnx": "model.onnx", "torchscript": "model.torchscript"}
#: Largest element-wise difference from the PyTorch model that an export may show, relative to the
#: embeddings' scale (their largest absolute value, at least 1): float32 rounding of reordered
#: operations is about 1e-6 of it (SpeechBrain's ECAPA has values near 20, WeSpeaker's near 1).
PARITY_TOLERANCE = 1e-4
#: Frame counts the parity check runs (two lengths that are not the tracing length: dynamic axes).
CHECK_FRAMES = (137, 517)


class ExportError(ValueError):
    """An export that failed, or whose output differs from the PyTorch model's (the message says which)."""


def _check_input(feat_dim: int, frames: int, batch: int = 2, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed + frames)
    return torch.randn(batch, frames, feat_dim, generator=generator)


def export_onnx(model: torch.nn.Module, path: PathLike, feat_dim: int) -> None:
    """Writes ``model`` (in eval mode) as an ONNX graph with dynamic batch and frame axes.

    Uses the torch.export-based exporter (the TorchScript-based one is deprecated); the file is
    written atomically.

    Args:
        model: Embedding model, ``feats [B, T, feat_dim] -> [B, D]``.
        path: Output ``.onnx`` file.
        feat_dim: Feature dimension of its input.
    """
    sample = _check_input(feat_dim, 200)
    dynamic = {"feats": {0: torch.export.Dim.AUTO, 1: torch.export.Dim.AUTO}}
    chatter = io.StringIO()  # the exporter prints its progress to stdout, where results tables go
    # ... and its graph passes log every rewrite at INFO (a dozen lines per export)
    quiet = [logging.getLogger(name) for name in ("onnx_ir", "onnxscript", "torch.onnx")]
    levels = [log.level for log in quiet]
    try:
        for log in quiet:
            log.setLevel(logging.WARNING if log.name != "torch.onnx" else logging.ERROR)
        with contextlib.redirect_stdout(chatter), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(model, (sample,), dynamo=True, input_names=["feats"],
                                        output_names=["embeddings"], dynamic_shapes=dynamic, verbose=False)
    finally:
        for log, level in zip(quiet, levels):
            log.setLevel(level)
    logger.debug("ONNX exporter: %s", chatter.getvalue().strip())
    with atomic_write(path, "wb") as handle:
        handle.write(program.model_proto.SerializeToString())


def export_torchscript(model: torch.nn.Module, path: PathLike) -> None:
    """Writes ``model`` (in eval mode) as a scripted TorchScript module, atomically."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit is deprecated in favour of torch.export
        scripted = torch.jit.script(model)
        with atomic_write(path, "wb") as handle:
            torch.jit.save(scripted, handle)


class OnnxModel:
    """An exported ONNX model run by onnxruntime, called like the PyTorch model.

    Args:
        path: The ``model.onnx`` file.
        threads: Intra-op threads (0: torch's thread count, so that ``torch.set_num_threads`` governs
            both runtimes alike).
    """

    def __init__(self, path: PathLike, threads: int = 0):
        try:
            import onnxruntime
        except ImportError:
            raise ExportError(f"{path}: running an ONNX model needs onnxruntime (pip install onnxruntime)") from None
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.log_severity_level = 3  # errors only: its warnings about unused initialisers are noise here
        options.add_session_config_entry("session.set_denormal_as_zero", "1")  # as torch runs (flush_denormals)
        try:
            self.session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as error:  # noqa: BLE001  (onnxruntime raises its own exception types)
            raise ExportError(f"{path}: onnxruntime cannot load it ({' '.join(str(error).split())[:200]})") from None
        self.path = Path(path)

    def __call__(self, feats: torch.Tensor | np.ndarray) -> torch.Tensor:
        """Embeddings ``[B, D]`` of features ``[B, T, F]``."""
        array = feats.detach().cpu().numpy() if isinstance(feats, torch.Tensor) else np.asarray(feats)
        output = self.session.run(None, {"feats": np.ascontiguousarray(array, dtype=np.float32)})[0]
        return torch.from_numpy(output)

    def eval(self) -> "OnnxModel":
        """Nothing to do (an inference graph); for drop-in use where a torch module is expected."""
        return self


def load_exported(path: PathLike, fmt: str) -> Any:
    """Loads one exported model file: an :class:`OnnxModel` or a TorchScript module in eval mode."""
    if fmt == "onnx":
        return OnnxModel(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return torch.jit.load(str(path), map_location="cpu").eval()


def _parity(reference: torch.nn.Module, exported: Any, feat_dim: int, frames: Sequence[int]) -> tuple[float, float]:
    """The largest absolute difference of the exported model's embeddings from the reference's, and their scale."""
    worst, scale = 0.0, 1.0
    with torch.inference_mode():
        for length in frames:
            feats = _check_input(feat_dim, length)
            expected = reference(feats)
            worst = max(worst, float((exported(feats) - expected).abs().max()))
            scale = max(scale, float(expected.abs().max()))
    return worst, scale


def export_model(exp_dir: PathLike, out_dir: PathLike, checkpoint: str = "latest",
                 formats: Sequence[str] = ("onnx", "torchscript"),
                 check_frames: Sequence[int] = CHECK_FRAMES) -> dict[str, Any]:
    """Exports the model of an exp dir and checks every export against it.

    Args:
        exp_dir: Training output dir.
        out_dir: Export dir (created); see the module docstring for its files.
        checkpoint: As :func:`speakernet.training.checkpoint.resolve_checkpoint` takes it (``avg10``...).
        formats: ``onnx`` and/or ``torchscript``.
        check_frames: Frame counts of the random inputs the parity check compares.

    Returns:
        What ``export.json`` holds: source, model, dimensions and, per format, the file, the
        maximum absolute difference from the PyTorch model and the export time.

    Raises:
        ExportError: on an unknown format, an export that fails, or an export whose output differs
            from the PyTorch model's by more than :data:`PARITY_TOLERANCE` of their scale.
    """
    unknown = [fmt for fmt in formats if fmt not in FORMATS]
    if unknown or not formats:
        raise ExportError(f"unknown export format(s) {unknown}; choose from: {', '.join(FORMATS)}")
    exp_dir, out_dir = Path(exp_dir), Path(out_dir)
    source = resolve_checkpoint(exp_dir, checkpoint)
    model, config = load_model(exp_dir, checkpoint)
    feat_dim = config["data"]["feat_dim"]
    if not (exp_dir / FRONTEND_CONFIG_NAME).is_file():
        raise ExportError(f"{exp_dir / FRONTEND_CONFIG_NAME} does not exist: without the training features' "
                          "front-end an exported model cannot compute its own input; re-run training on features "
                          "made by speakernet.bin.make_features")
    ensure_writable_dir(out_dir)
    with torch.inference_mode():
        embed_dim = int(model(_check_input(feat_dim, 200)).shape[-1])
    info: dict[str, Any] = {
        "model": config["model"], "model_args": config["model_args"], "feat_dim": feat_dim, "embed_dim": embed_dim,
        "use_vad": config["data"]["use_vad"], "max_frames": config["extract"]["max_frames"],
        "source": str(source.resolve()), "checkpoint": checkpoint,
        "formats": {},
    }
    for fmt in formats:
        path = out_dir / FORMATS[fmt]
        started = time.perf_counter()
        try:
            export_onnx(model, path, feat_dim) if fmt == "onnx" else export_torchscript(model, path)
        except ExportError:
            raise
        except Exception as error:  # noqa: BLE001  (the exporters raise many types; name the model and format)
            detail = " ".join(str(error).split())[:300]
            raise ExportError(f"{config['model']} from {source}: {fmt} export failed ({type(error).__name__}: "
                              f"{detail})") from None
        seconds = time.perf_counter() - started
        difference, scale = _parity(model, load_exported(path, fmt), feat_dim, check_frames)
        if not difference <= PARITY_TOLERANCE * scale:
            path.unlink()
            raise ExportError(f"{path}: its embeddings differ from the PyTorch model's by up to {difference:.3g} "
                              f"(tolerance {PARITY_TOLERANCE:g} x their scale {scale:.3g}); the export was removed")
        info["formats"][fmt] = {"file": path.name, "max_abs_diff": difference, "scale": scale,
                                "export_seconds": round(seconds, 2)}
        logger.info("exported %s to %s in %.1f s: max abs difference %.3g from PyTorch on %s frames",
                    config["model"], path, seconds, difference, ", ".join(map(str, check_frames)))
    shutil.copyfile(exp_dir / FRONTEND_CONFIG_NAME, out_dir / FRONTEND_CONFIG_NAME)
    for name in ("mean.vec", "threshold"):
        if (exp_dir / name).is_file():
            shutil.copyfile(exp_dir / name, out_dir / name)
    _copy_calibration(exp_dir, out_dir, source)
    with atomic_write(out_dir / EXPORT_INFO_NAME) as handle:
        json.dump(info, handle, indent=2)
    return info


def _copy_calibration(exp_dir: Path, out_dir: Path, source: Path) -> None:
    """Copies the exp dir's score calibration when it was fitted on the exported checkpoint's embeddings."""
    from speakernet.backend.score_calibration import CALIBRATION_NAME, ScoreCalibration
    from speakernet.backend.speaker_store import model_id

    path = exp_dir / CALIBRATION_NAME
    if not path.is_file():
        return
    recorded = ScoreCalibration.load(path).provenance.get("model_sha256")
    if recorded is not None and recorded != model_id(source):
        logger.warning("%s is not copied into the export: it calibrates another checkpoint than %s", path, source)
        return
    shutil.copyfile(path, out_dir / CALIBRATION_NAME)


def read_export_info(model_dir: PathLike) -> dict[str, Any] | None:
    """``export.json`` of an export dir, or None for a dir that is not one (an exp dir)."""
    path = Path(model_dir) / EXPORT_INFO_NAME
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ExportError(f"{path}:{error.lineno}: not valid JSON ({error.msg}); re-run the export") from None
