"""Write a model bundle: weights, ONNX file(s) and the model card that names them with sha256.

Every float ONNX file (``onnx_fp32``, ``onnx_fp16``, ``onnx_int8``) gets its uint8 variant beside
it (``<file>.u8.onnx``, role ``<role>_u8``, core/uint8_io.py), and the card's ``io`` says which
inputs and outputs each file takes.
"""
from __future__ import annotations

import datetime as _dt
import os
from pathlib import Path
from typing import Optional

from muon_ad_ros.core.checkpoint import atomic_write_json, save_student, sha256_file
from muon_ad_ros.core.export import export_onnx
from muon_ad_ros.core.model_store import CARD_SUFFIX
from muon_ad_ros.core.onnx_contract import io_description, uint8_role
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
    files.update(uint8_variants(files))
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
        "io": io_descriptions(files),
    }
    card.update(card_extra or {})
    card_path = out_dir / f"{model_id}{CARD_SUFFIX}"
    atomic_write_json(card_path, card)
    return card_path


def float_onnx_roles(files: dict) -> list[str]:
    return [r for r in files if r.startswith("onnx_") and not r.endswith("_u8")]


def uint8_variants(files: dict[str, Path]) -> dict[str, Path]:
    """role_u8 -> path of the uint8 variant written beside each float ONNX file in ``files``."""
    from muon_ad_ros.core.uint8_io import write_uint8_variant

    return {uint8_role(role): write_uint8_variant(files[role]) for role in float_onnx_roles(files)}


def io_descriptions(files: dict) -> dict[str, dict]:
    """The card's ``io``: for every ONNX role, the inputs and outputs of its file."""
    out = {}
    for role in files:
        if role.startswith("onnx_"):
            precision = role.split("_")[1]
            out[role] = io_description("uint8" if role.endswith("_u8") else "float", precision)
    return out
