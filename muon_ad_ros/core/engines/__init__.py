"""Inference engines behind one interface; ``create_engine`` picks the file each backend needs."""
from __future__ import annotations

from typing import Optional

from muon_ad_ros.core.engines.base import BACKENDS, PRECISIONS, Engine, TensorSpec
from muon_ad_ros.core.errors import ConfigError
from muon_ad_ros.core.model_store import ModelFiles
from muon_ad_ros.core.onnx_contract import IO_KINDS, uint8_role

IO_CHOICES = ("auto",) + IO_KINDS


def create_engine(model: ModelFiles, backend: str = "onnxruntime", precision: str = "fp32",
                  device: str = "cpu", threads: Optional[int] = None, io: str = "float", session=None,
                  **tensorrt_options) -> Engine:
    """Build the engine for ``backend``/``precision`` from a resolved model.

    onnxruntime: fp32 -> ``onnx_fp32``, fp16 -> ``onnx_fp16``, int8 -> ``onnx_int8`` (QDQ);
    ``io="auto"`` takes the file's uint8 variant (``onnx_fp32_u8``...) when the card lists one,
    ``"uint8"`` requires it, ``"float"`` (the default, for callers of ``Engine.run``) never uses it.
    ``session``: an onnx_engine.SessionConfig. torch: the safetensors ``weights``. tensorrt: built
    from ``onnx_fp32`` (fp32/fp16) or ``onnx_int8`` (int8, explicit quantization), through the
    engine cache.
    """
    if backend not in BACKENDS:
        raise ConfigError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if precision not in PRECISIONS:
        raise ConfigError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    if io not in IO_CHOICES:
        raise ConfigError(f"unknown model io {io!r}; choose one of {', '.join(IO_CHOICES)}")
    num_styles = len(model.styles)
    if backend == "onnxruntime":
        from muon_ad_ros.core.engines.onnx_engine import OnnxRuntimeEngine

        role = f"onnx_{precision}"
        if io == "uint8" or (io == "auto" and uint8_role(role) in model.files):
            role = uint8_role(role)
        path = model.file_for(role)
        return OnnxRuntimeEngine(path, num_styles, precision=precision, device=device, threads=threads,
                                 session=session)
    if backend == "torch":
        from muon_ad_ros.core.engines.torch_engine import TorchEngine

        return TorchEngine.from_checkpoint(model.file_for("weights"), precision=precision, device=device)
    from muon_ad_ros.core.engines.tensorrt_engine import TensorRTEngine

    onnx_path = model.file_for("onnx_int8" if precision == "int8" else "onnx_fp32")
    return TensorRTEngine(onnx_path, num_styles, precision=precision, **tensorrt_options)


__all__ = ["BACKENDS", "IO_CHOICES", "PRECISIONS", "Engine", "TensorSpec", "create_engine"]
