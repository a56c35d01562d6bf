"""The one interface every inference backend implements.

An engine runs the student on a batch: ``run(image [B,3,H,W] float32 in [0,1], style_weights [B,S])
-> [B,3,H,W] float32 in [0,1]``, and on uint8 frames: ``run_rgb8(rgb [B,H,W,3] uint8, style_weights)
-> [B,H,W,3] uint8``. Engines whose model takes uint8 (``io == "uint8"``, core/uint8_io.py) do the
pixel conversions inside the graph; the others convert here with the float contract's reference
(core/onnx_contract.py). Shapes and types are validated here, once, for every backend.
"""
from __future__ import annotations

import abc
from dataclasses import dataclass

import numpy as np

from muon_ad_ros.core.errors import EngineError
from muon_ad_ros.core.onnx_contract import nchw_to_rgb8, rgb8_to_nchw

BACKENDS = ("onnxruntime", "torch", "tensorrt")
PRECISIONS = ("fp32", "fp16", "int8")


@dataclass(frozen=True)
class TensorSpec:
    name: str
    shape: tuple  # ints or symbolic names ("height") for dynamic axes
    dtype: str


class Engine(abc.ABC):
    """Base class: subclasses implement ``_run`` and describe their tensors."""

    backend: str = ""
    precision: str = "fp32"
    io: str = "float"  # "uint8": the model takes and returns uint8 HWC frames (run_rgb8 is its fast path)
    size_multiple: int = 16

    def __init__(self, num_styles: int):
        self.num_styles = int(num_styles)

    def input_spec(self) -> list[TensorSpec]:
        return [TensorSpec("image", (-1, 3, "height", "width"), "float32"),
                TensorSpec("style_weights", (-1, self.num_styles), "float32")]

    def output_spec(self) -> list[TensorSpec]:
        return [TensorSpec("stylized", (-1, 3, "height", "width"), "float32")]

    def _check(self, b: int, h: int, w: int, style_weights: np.ndarray) -> np.ndarray:
        if h % self.size_multiple or w % self.size_multiple or h == 0 or w == 0:
            raise EngineError(f"image H and W must be positive multiples of {self.size_multiple}, got {h}x{w}")
        style_weights = np.asarray(style_weights, dtype=np.float32)
        if style_weights.ndim == 1:
            style_weights = np.broadcast_to(style_weights, (b, style_weights.shape[0]))
        if style_weights.shape != (b, self.num_styles):
            raise EngineError(f"style_weights must be [{b},{self.num_styles}], got {style_weights.shape}")
        return np.ascontiguousarray(style_weights)

    def run(self, image: np.ndarray, style_weights: np.ndarray) -> np.ndarray:
        if image.ndim != 4 or image.shape[1] != 3:
            raise EngineError(f"image must be [B,3,H,W], got {image.shape}")
        b, _, h, w = image.shape
        style_weights = self._check(b, h, w, style_weights)
        return self._run(np.ascontiguousarray(image, dtype=np.float32), style_weights)

    def run_rgb8(self, rgb: np.ndarray, style_weights: np.ndarray) -> np.ndarray:
        """[B,H,W,3] uint8 RGB -> [B,H,W,3] uint8, the float contract's conversions included."""
        if rgb.ndim != 4 or rgb.shape[3] != 3 or rgb.dtype != np.uint8:
            raise EngineError(f"rgb must be [B,H,W,3] uint8, got {rgb.shape} {rgb.dtype}")
        b, h, w, _ = rgb.shape
        style_weights = self._check(b, h, w, style_weights)
        return self._run_rgb8(np.ascontiguousarray(rgb), style_weights)

    def _run_rgb8(self, rgb: np.ndarray, style_weights: np.ndarray) -> np.ndarray:
        """Float engines: convert in numpy around ``_run`` (uint8 engines override this)."""
        return np.stack([nchw_to_rgb8(self._run(rgb8_to_nchw(frame), style_weights[i:i + 1]))
                         for i, frame in enumerate(rgb)])

    @abc.abstractmethod
    def _run(self, image: np.ndarray, style_weights: np.ndarray) -> np.ndarray:
        """Backend inference on validated, contiguous float32 inputs."""

    def describe(self) -> str:
        return f"{self.backend}/{self.precision}"
