"""Student checkpoints: safetensors weights plus the JSON config that made them.

A checkpoint is two files side by side, ``<stem>.safetensors`` and ``<stem>.json``. The config is
also stored in the safetensors metadata, so a lone weights file still rebuilds its network. Writes
are atomic (temporary file + ``os.replace``) so a crash never leaves a half-written checkpoint.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Optional

from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from muon_ad_ros.core.atomic_io import atomic_write_bytes, atomic_write_json  # noqa: F401 (re-exported)
from muon_ad_ros.core.errors import ModelError
from muon_ad_ros.core.integrity import sha256_file  # re-exported: the one hash of a file
from muon_ad_ros.core.student import StudentConfig, StudentNet


def save_student(model: StudentNet, stem: str | os.PathLike, extra: Optional[dict] = None) -> Path:
    """Write ``<stem>.safetensors`` and ``<stem>.json``; returns the weights path."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    config = model.config.to_dict()
    meta = {"student_config": json.dumps(config), "format": "muon_ad_student/1"}
    weights = stem.with_suffix(".safetensors")
    tmp = weights.with_name(f".{weights.name}.tmp-{os.getpid()}")
    tensors = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    save_file(tensors, str(tmp), metadata=meta)
    os.chmod(tmp, 0o644)  # safetensors creates files owner-only; a shipped model must be world-readable
    os.replace(tmp, weights)
    atomic_write_json(stem.with_suffix(".json"), {"student_config": config, **(extra or {})})
    return weights


def read_student_config(weights_path: str | os.PathLike) -> StudentConfig:
    """The StudentConfig stored with a checkpoint (sidecar JSON, else safetensors metadata)."""
    path = Path(weights_path)
    sidecar = path.with_suffix(".json")
    try:
        if sidecar.exists():
            return StudentConfig.from_dict(json.loads(sidecar.read_text())["student_config"])
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        return StudentConfig.from_dict(json.loads(meta["student_config"]))
    except (KeyError, ValueError, TypeError, OSError, SafetensorError) as exc:
        raise ModelError(f"{path}: no valid student config in checkpoint ({exc})") from None


def load_student(weights_path: str | os.PathLike, map_location: str = "cpu") -> StudentNet:
    """Rebuild the student from its config and load the weights (strict: shapes must match)."""
    path = Path(weights_path)
    if not path.is_file():
        raise ModelError(f"checkpoint not found: {path}")
    config = read_student_config(path)
    model = StudentNet(config)
    try:
        state = load_file(str(path), device=map_location)
        model.load_state_dict(state, strict=True)
    except (SafetensorError, RuntimeError, OSError) as exc:
        reason = " ".join(str(exc).split())   # load_state_dict lists every key on its own line
        raise ModelError(f"{path}: cannot load student weights ({reason[:300]})") from None
    return model.eval()


__all__ = ["atomic_write_bytes", "atomic_write_json", "load_student", "read_student_config",
           "save_student", "sha256_file"]
