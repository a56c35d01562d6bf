"""TensorRT engine (NVIDIA GPUs, Jetson Orin): FP16 / INT8 engines built from the exported ONNX.

Device buffers are torch CUDA tensors, not pycuda: torch is already a dependency (reference engine
and training), NVIDIA publishes torch wheels for JetPack, and pycuda must be compiled on the Jetson
and fights torch over the CUDA context. ``tensorrt`` and ``torch.cuda`` are touched only when this
engine is created, so importing the package never needs a GPU.

INT8 engines are built from the INT8 QDQ ONNX (explicit quantization: the scales were calibrated at
export time on real frames), so no TensorRT calibrator runs on the robot.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Optional

import numpy as np

from muon_ad_ros.core.engines.base import Engine
from muon_ad_ros.core.engines.engine_cache import (EngineCache, EngineKey, ShapeProfile, default_cache_dir,
                                                   verify_engine_file)
from muon_ad_ros.core.errors import EngineError

log = logging.getLogger(__name__)


def _import_tensorrt():
    try:
        import tensorrt as trt  # noqa: F401
    except ImportError as exc:
        raise EngineError(f"TensorRT is not installed ({exc}); use backend onnxruntime") from None
    import torch

    if not torch.cuda.is_available():
        raise EngineError("TensorRT needs a CUDA GPU, and torch.cuda.is_available() is False")
    return trt, torch


def current_key(onnx_path: str | os.PathLike, precision: str, profile: ShapeProfile) -> EngineKey:
    trt, torch = _import_tensorrt()
    major, minor = torch.cuda.get_device_capability()
    return EngineKey.for_onnx(onnx_path, trt.__version__, f"{major}.{minor}", precision, profile)


def build_serialized_engine(onnx_path: str | os.PathLike, precision: str, profile: ShapeProfile,
                            num_styles: int, workspace_gb: float = 2.0) -> bytes:
    """Parse the ONNX and build a serialized engine for ``precision`` and the shape ``profile``."""
    trt, _ = _import_tensorrt()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # explicit batch is the only mode in TensorRT 10
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(Path(onnx_path).read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise EngineError(f"TensorRT cannot parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gb * (1 << 30)))
    if precision in ("fp16", "int8"):
        config.set_flag(trt.BuilderFlag.FP16)  # layers left unquantized in INT8 engines run in FP16
    if precision == "int8":
        config.set_flag(trt.BuilderFlag.INT8)
    opt = builder.create_optimization_profile()
    opt.set_shape("image", (1, 3, *profile.min_hw), (1, 3, *profile.opt_hw), (1, 3, *profile.max_hw))
    opt.set_shape("style_weights", (1, num_styles), (1, num_styles), (1, num_styles))
    config.add_optimization_profile(opt)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise EngineError(f"TensorRT failed to build a {precision} engine from {onnx_path}")
    return bytes(serialized)


class TensorRTEngine(Engine):
    backend = "tensorrt"

    def __init__(self, onnx_path: str | os.PathLike, num_styles: int, precision: str = "fp16",
                 engine_path: Optional[str | os.PathLike] = None, cache_dir: Optional[str | os.PathLike] = None,
                 profile: ShapeProfile = ShapeProfile(), build_if_missing: bool = True):
        super().__init__(num_styles)
        if precision not in ("fp32", "fp16", "int8"):
            raise EngineError(f"unknown TensorRT precision {precision!r}")
        trt, torch = _import_tensorrt()
        self.precision, self.profile = precision, profile
        key = current_key(onnx_path, precision, profile)
        if engine_path is not None:  # an engine the user named: it must match, never rebuilt
            verify_engine_file(engine_path, key)
            path = Path(engine_path)
        else:
            cache = EngineCache(cache_dir or default_cache_dir())
            path = cache.lookup(key)
            if path is None:
                if not build_if_missing:
                    raise EngineError(f"no cached {precision} engine for {onnx_path}; run `muon-ad build-engine`")
                log.warning("building TensorRT %s engine for %s (one-time, cached in %s)",
                            precision, onnx_path, cache.root)
                path = cache.store(key, build_serialized_engine(onnx_path, precision, profile, num_styles))
        self.engine_path = path
        self._torch = torch
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        self._engine = self._runtime.deserialize_cuda_engine(path.read_bytes())
        if self._engine is None:
            raise EngineError(f"TensorRT could not deserialize {path}")
        self._context = self._engine.create_execution_context()
        self._stream = torch.cuda.Stream()
        io_dtype = self._engine.get_tensor_dtype("image")
        self._io_torch_dtype = torch.float16 if io_dtype == trt.DataType.HALF else torch.float32

    def _run(self, image: np.ndarray, style_weights: np.ndarray) -> np.ndarray:
        torch = self._torch
        outputs = []
        for i in range(image.shape[0]):  # the profile is batch 1: a batch runs frame by frame
            h, w = image.shape[2:]
            if not self.profile.contains(h, w):
                raise EngineError(f"{h}x{w} is outside the engine's shape profile {self.profile}")
            with torch.cuda.stream(self._stream):
                x = torch.from_numpy(image[i:i + 1]).to("cuda", self._io_torch_dtype, non_blocking=True)
                s = torch.from_numpy(style_weights[i:i + 1]).to("cuda", self._io_torch_dtype, non_blocking=True)
                y = torch.empty_like(x)
                self._context.set_input_shape("image", tuple(x.shape))
                self._context.set_input_shape("style_weights", tuple(s.shape))
                for name, tensor in (("image", x), ("style_weights", s), ("stylized", y)):
                    self._context.set_tensor_address(name, tensor.data_ptr())
                if not self._context.execute_async_v3(self._stream.cuda_stream):
                    raise EngineError("TensorRT execution failed")
                outputs.append(y.float().cpu())
            self._stream.synchronize()
        return torch.cat(outputs).numpy()

    def describe(self) -> str:
        return f"tensorrt/{self.precision} ({self.engine_path.name})"
