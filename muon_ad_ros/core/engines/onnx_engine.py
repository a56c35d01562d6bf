"""ONNX Runtime engine: the CPU default, and CUDA / TensorRT execution providers where present."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import numpy as np

from muon_ad_ros.core.engines.base import Engine
from muon_ad_ros.core.errors import EngineError, ModelError

PROVIDER_NAMES = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
}


def resolve_providers(device: str) -> list[str]:
    """``auto`` picks the best available provider; naming an absent one is an error, not a fallback."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    if device == "auto":
        chosen = [p for p in ("CUDAExecutionProvider",) if p in available]
        return chosen + ["CPUExecutionProvider"]
    if device not in PROVIDER_NAMES:
        raise EngineError(f"unknown onnxruntime device {device!r}; use auto, cpu, cuda or tensorrt")
    provider = PROVIDER_NAMES[device]
    if provider not in available:
        raise EngineError(f"onnxruntime provider {provider} is not available here (have: {', '.join(available)})")
    return [provider] + (["CPUExecutionProvider"] if provider != "CPUExecutionProvider" else [])


def run_failure(exc: BaseException, shape) -> str:
    """One line for a failed inference. Out of memory (a frame too large for this machine) is the
    common case on a robot; say so, and what to lower, instead of ORT's multi-line status dump."""
    text = " ".join(str(exc).split())
    h, w = shape[-2:]
    if isinstance(exc, MemoryError) or any(k in text.lower() for k in ("alloc", "out of memory", "memory")):
        return (f"onnxruntime ran out of memory at {w}x{h}: lower max_side or the network resolution "
                f"({type(exc).__name__}: {text[:160]})")
    return f"onnxruntime inference failed at {w}x{h} ({type(exc).__name__}: {text[:200]})"


class OnnxRuntimeEngine(Engine):
    backend = "onnxruntime"

    def __init__(self, onnx_path: str | os.PathLike, num_styles: int, precision: str = "fp32",
                 device: str = "cpu", threads: Optional[int] = None):
        super().__init__(num_styles)
        import onnxruntime as ort

        path = Path(onnx_path)
        if not path.is_file():
            raise ModelError(f"ONNX model not found: {path}")
        options = ort.SessionOptions()
        options.log_severity_level = 3
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            options.intra_op_num_threads = int(threads)
        providers = resolve_providers(device)
        try:
            self.session = ort.InferenceSession(str(path), options, providers=providers)
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph/... types
            raise ModelError(f"{path}: onnxruntime cannot load it ({exc})") from None
        active = self.session.get_providers()
        if device not in ("auto", "cpu") and active[0] != providers[0]:
            raise EngineError(f"onnxruntime fell back to {active[0]} instead of {providers[0]}")
        self.providers = active
        self.precision = precision
        self.path = path
        inputs = {i.name: i for i in self.session.get_inputs()}
        if set(inputs) != {"image", "style_weights"}:
            raise ModelError(f"{path}: expected inputs image and style_weights, got {sorted(inputs)}")
        declared = inputs["style_weights"].shape[-1]
        if isinstance(declared, int) and declared != num_styles:
            raise ModelError(f"{path}: model has {declared} styles but its card lists {num_styles}")
        # FP16 models keep float16 I/O; convert at the boundary so callers always see float32.
        self.io_dtype = np.float16 if inputs["image"].type == "tensor(float16)" else np.float32

    def _run(self, image: np.ndarray, style_weights: np.ndarray) -> np.ndarray:
        feeds = {"image": image.astype(self.io_dtype, copy=False),
                 "style_weights": style_weights.astype(self.io_dtype, copy=False)}
        try:
            out = self.session.run(["stylized"], feeds)[0]
        except Exception as exc:  # onnxruntime's own types (RuntimeException, Fail...), MemoryError
            raise EngineError(run_failure(exc, image.shape)) from None
        return out.astype(np.float32, copy=False)

    def describe(self) -> str:
        return f"onnxruntime/{self.precision} ({self.providers[0]})"
