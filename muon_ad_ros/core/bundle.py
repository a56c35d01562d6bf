"""Write a model bundle: weights, ONNX file(s) and the model card that names them with sha256."""
from __future__ import annotations

import datetime as _dt
import os
from pathlib import Path
from typing import Optional

from muon_ad_ros.core.checkpoint import atomic_write_json, save_student, sha256_file
from muon_ad_ros.core.export import export_onnx
from muon_ad_ros.core.model_store import CARD_SUFFIX
from muon_ad_ros.core.student import StudentNet, count_parameters


def write_bundle(model: StudentNet, out_dir: str | os.PathLike, model_id: str,
                 card_extra: Optional[dict] = None, extra_files: Optional[dict[str, Path]] = None) -> Path:
    """Save ``<id>.safetensors`` + ``<id>.onnx`` (FP32) and ``<id>.card.json``; returns the card path.

    ``extra_files`` (role -> path inside ``out_dir``), e.g. ``{"onnx_int8": ...}``, are listed in
    the card with their sha256 too.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    weights = save_student(model, out_dir / model_id)
    onnx_fp32 = export_onnx(model, out_dir / f"{model_id}.onnx", metadata={"id": model_id, "precision": "fp32"})
    files = {"weights": weights, "onnx_fp32": onnx_fp32, **(extra_files or {})}
    card = {
        "id": model_id,
        "format_version": 1,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "styles": list(model.config.style_names),
        "student_config": model.config.to_dict(),
        "parameters": count_parameters(model),
        "input": {"layout": "NCHW", "range": [0.0, 1.0], "size_multiple": 16},
        "files": {role: {"path": Path(p).name, "sha256": sha256_file(p), "bytes": Path(p).stat().st_size}
                  for role, p in files.items()},
    }
    card.update(card_extra or {})
    card_path = out_dir / f"{model_id}{CARD_SUFFIX}"
    atomic_write_json(card_path, card)
    return card_path
