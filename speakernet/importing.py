"""Importing another toolkit's pretrained model as a speakernet model dir.

A model dir written here is laid out like a training's exp dir, so extraction, every back-end
stage, fine-tuning (``training.init_from``), export, the CLI and :func:`speakernet.load` take it
unchanged::

    D/config.yaml             the resolved config: the registered model, its arguments, data.feat_dim/use_vad
    D/checkpoints/imported.pt the converted weights (a speakernet checkpoint, with its checksum);
                              checkpoints/latest names it
    D/checkpoints/init.pt     the architecture freshly initialised (seeded): the "untrained" baseline
    D/frontend.json           the front-end the weights were trained on (e.g. SpeechBrain's Fbank), no VAD
    D/import.json             provenance: the format, each source file with its size and sha256, the options

The converters (:mod:`speakernet.convert`) do the mapping; this module writes and checks the dir.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Mapping

import torch

from speakernet.convert import CONVERTERS, ConversionError, ImportedModel
from speakernet.features.frontend import save_frontend
from speakernet.features.vad import VadConfig
from speakernet.utils.fileio import PathLike, atomic_dir, atomic_write, file_sha256

logger = logging.getLogger(__name__)

IMPORT_INFO_NAME = "import.json"
IMPORTED_CHECKPOINT = "imported.pt"


def write_model_dir(imported: ImportedModel, out_dir: PathLike, source_format: str,
                    options: Mapping[str, Any] | None = None) -> Path:
    """Writes ``imported`` as a model dir (replacing the dir as a whole, atomically).

    Args:
        imported: The converted model.
        out_dir: The model dir to write.
        source_format: The converter's name, recorded in ``import.json``.
        options: The converter options used, recorded in ``import.json``.

    Returns:
        ``out_dir``.

    Raises:
        ConversionError: if the weights do not load into the model the config describes.
    """
    from speakernet.config import load_config, save_config
    from speakernet.models import build_model
    from speakernet.training.checkpoint import CHECKPOINT_DIR, INIT_NAME, LATEST, save_checkpoint

    config = load_config(None, [f"model={imported.model}", f"data.feat_dim={imported.feat_dim}",
                                f"data.use_vad={str(imported.use_vad).lower()}"])
    config["model_args"] = dict(imported.model_args)
    # The architecture's own initialisation, seeded as a training seeds it: the "untrained" model that
    # every evaluation shows beside the imported one.
    torch.manual_seed(config["training"]["seed"])
    untrained = build_model(imported.model, feat_dim=imported.feat_dim, **imported.model_args).state_dict()
    model = build_model(imported.model, feat_dim=imported.feat_dim, **imported.model_args)
    try:
        model.load_state_dict(imported.state)
    except RuntimeError as error:
        raise ConversionError(f"the converted weights do not load into {imported.model}: "
                              f"{' '.join(str(error).split())[:300]}") from None
    out_dir = Path(out_dir)
    if out_dir.is_dir() and any(out_dir.iterdir()) and not (out_dir / IMPORT_INFO_NAME).is_file():
        raise ConversionError(f"{out_dir} exists and is not an imported model dir (it has no {IMPORT_INFO_NAME}): "
                              "choose a new --out-dir (an import replaces the whole dir)")
    sources = [{"file": str(path), "bytes": path.stat().st_size, "sha256": file_sha256(path)}
               for path in imported.source_files]
    info = {"format": source_format, "sources": sources, "options": dict(options or {}), "model": imported.model,
            "model_args": imported.model_args, "parameters": sum(p.numel() for p in model.parameters()),
            **imported.notes}
    with atomic_dir(out_dir) as tmp:
        save_config(config, tmp / "config.yaml")
        (tmp / CHECKPOINT_DIR).mkdir()
        save_checkpoint({"model": model.state_dict(), "config": config, "step": 0, "epoch": 0,
                         "imported_from": source_format}, tmp / CHECKPOINT_DIR / IMPORTED_CHECKPOINT)
        (tmp / CHECKPOINT_DIR / LATEST).write_text(IMPORTED_CHECKPOINT + "\n", encoding="utf-8")
        save_checkpoint({"model": untrained, "config": config, "step": 0, "epoch": 0},
                        tmp / CHECKPOINT_DIR / INIT_NAME)
        save_frontend(tmp, imported.frontend, VadConfig())
        with atomic_write(tmp / IMPORT_INFO_NAME) as handle:
            json.dump(info, handle, indent=2, sort_keys=True)
            handle.write("\n")
    logger.info("imported %s (%s, %.2f M parameters) from %s into %s", imported.model, source_format,
                info["parameters"] / 1e6, ", ".join(s["file"] for s in sources), out_dir)
    return out_dir


def import_model(source_format: str, source: PathLike, out_dir: PathLike,
                 options: Mapping[str, Any] | None = None) -> Path:
    """Converts another toolkit's model and writes it as a speakernet model dir.

    Args:
        source_format: A registered converter (``speakernet.convert.CONVERTERS``), e.g. ``speechbrain``.
        source: The toolkit's model dir or checkpoint file.
        out_dir: The model dir to write.
        options: Converter options (see each converter).

    Returns:
        ``out_dir``.

    Raises:
        KeyError: for an unknown format (the message lists the registered ones).
        ConversionError: for a source that is not of that format, naming the file and key.
    """
    converter = CONVERTERS.get(source_format)
    with torch.no_grad():
        imported = converter(Path(source), dict(options or {}))
    return write_model_dir(imported, out_dir, source_format, options)

