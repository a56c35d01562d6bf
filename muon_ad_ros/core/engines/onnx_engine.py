"""ONNX Runtime engine: the CPU default, and CUDA / TensorRT execution providers where present.

A model file has the float interface (image [N,3,H,W] float) or the uint8 one (image_rgb8
[N,H,W,3] uint8, core/uint8_io.py); the engine reads which from the file's inputs. The uint8 fast
path binds the frame and a freshly allocated output array to the session (IO binding), so ORT
writes the result straight into the array the caller gets (it saves one 0.9 MB copy at 640x480;
measured against ``session.run`` interleaved: no difference beyond the shared machine's noise).

Session options (``SessionConfig``) are chosen for a robot: intra-op threads default to the
physical cores this process may run on (hyper-threads slow a conv net down), one inter-op thread,
worker threads that sleep instead of spinning between frames (a spinning pool holds the cores
the camera driver and DDS need while the node waits for the next frame), no memory pattern
(the arena reuses freed buffers instead of keeping one block per tensor: 64 MB less RSS), and no
NCHWc blocked layout (x86: ~30 MB less RSS for ~4% more inference time at 640x480).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from muon_ad_ros.core.engines.base import Engine
from muon_ad_ros.core.errors import ConfigError, EngineError, ModelError
from muon_ad_ros.core.onnx_contract import INPUT_IMAGE, INPUT_RGB8, INPUT_STYLE, OUTPUT, OUTPUT_RGB8

PROVIDER_NAMES = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
}


GRAPH_OPTIMIZATION = ("all", "extended", "basic", "disable")


def physical_cores() -> int:
    """Physical cores among the CPUs this process may use (Linux sysfs topology; else the logical count)."""
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(os.cpu_count() or 1))
    cores = set()
    for cpu in cpus:
        topo = Path(f"/sys/devices/system/cpu/cpu{cpu}/topology")
        try:
            cores.add((topo.joinpath("physical_package_id").read_text().strip(),
                       topo.joinpath("core_id").read_text().strip()))
        except OSError:
            return max(1, len(cpus))
    return max(1, len(cores))


@dataclass(frozen=True)
class SessionConfig:
    """ONNX Runtime session options (node parameters ``threads``, ``graph_optimization``, ``cpu_arena``,
    ``mem_pattern``, ``blocked_layout``)."""

    threads: int = 0  # intra-op threads; 0: physical_cores()
    graph_optimization: str = "all"  # all | extended | basic | disable
    cpu_arena: bool = True  # ORT's CPU memory arena: reused buffers (off: +20-60% inference, big im2col re-faulted)
    # ORT's memory pattern plans one block holding every intermediate tensor of a shape; off, the
    # arena reuses freed chunks instead. Measured with the v2 student at 640x480 (one process each):
    # RSS 220 -> 156 MB, inference unchanged (612 vs 596 ms on a loaded machine).
    mem_pattern: bool = False
    spin: bool = False  # worker threads busy-wait for work (lower latency, burns the cores between frames)
    # ORT's NCHWc transformer (part of level "all" on x86) rewrites the convolutions to a blocked
    # channel layout with reorders at the edges. Measured with the v2 student at 640x480, two
    # threads, interleaved in one process: 3-4% faster inference (40.3 vs 41.8 ms) for ~30 MB more
    # RSS (the arena holds blocked copies of the activations): 159 vs 129 MB for one session. On a
    # robot that memory belongs to the camera pipeline, so it is off unless asked for.
    blocked_layout: bool = False

    def __post_init__(self):
        if self.graph_optimization not in GRAPH_OPTIMIZATION:
            raise ConfigError(f"graph_optimization must be one of {', '.join(GRAPH_OPTIMIZATION)}, "
                              f"got {self.graph_optimization!r}")
        if self.threads < 0:
            raise ConfigError(f"threads must be >= 0, got {self.threads}")

    def options(self):
        import onnxruntime as ort

        levels = {"all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
                  "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
                  "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
                  "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL}
        options = ort.SessionOptions()
        options.log_severity_level = 3
        options.graph_optimization_level = levels[self.graph_optimization]
        options.intra_op_num_threads = self.threads or physical_cores()
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.enable_cpu_mem_arena = self.cpu_arena
        options.enable_mem_pattern = self.mem_pattern
        spin = "1" if self.spin else "0"
        options.add_session_config_entry("session.intra_op.allow_spinning", spin)
        options.add_session_config_entry("session.inter_op.allow_spinning", spin)
        return options

    def disabled_optimizers(self) -> list[str]:
        """Graph transformers this configuration switches off (``InferenceSession(disabled_optimizers=)``)."""
        return [] if self.blocked_layout else ["NchwcTransformer"]


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
                 device: str = "cpu", threads: Optional[int] = None, session: Optional[SessionConfig] = None):
        super().__init__(num_styles)
        import onnxruntime as ort

        path = Path(onnx_path)
        if not path.is_file():
            raise ModelError(f"ONNX model not found: {path}")
        session = session or SessionConfig()
        if threads:  # the older keyword wins over the config's
            session = SessionConfig(**{**session.__dict__, "threads": int(threads)})
        self.session_config = session
        providers = resolve_providers(device)
        try:
            self.session = ort.InferenceSession(str(path), session.options(), providers=providers,
                                                disabled_optimizers=session.disabled_optimizers())
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph/... types
            raise ModelError(f"{path}: onnxruntime cannot load it ({exc})") from None
        active = self.session.get_providers()
        if device not in ("auto", "cpu") and active[0] != providers[0]:
            raise EngineError(f"onnxruntime fell back to {active[0]} instead of {providers[0]}")
        self.providers = active
        self.precision = precision
        self.path = path
        inputs = {i.name: i for i in self.session.get_inputs()}
        if set(inputs) == {INPUT_RGB8, INPUT_STYLE}:
            self.io = "uint8"
        elif set(inputs) != {INPUT_IMAGE, INPUT_STYLE}:
            raise ModelError(f"{path}: expected inputs {INPUT_IMAGE} (or {INPUT_RGB8}) and {INPUT_STYLE}, "
                             f"got {sorted(inputs)}")
        declared = inputs[INPUT_STYLE].shape[-1]
        if isinstance(declared, int) and declared != num_styles:
            raise ModelError(f"{path}: model has {declared} styles but its card lists {num_styles}")
        # FP16 float models keep float16 I/O; convert at the boundary so callers always see float32.
        self.io_dtype = np.float16 if inputs[INPUT_STYLE].type == "tensor(float16)" else np.float32

    def _run(self, image: np.ndarray, style_weights: np.ndarray) -> np.ndarray:
        if self.io == "uint8":  # the float interface on a uint8 model: frames quantized to 8 bits
            rgb = np.ascontiguousarray(np.clip(image.transpose(0, 2, 3, 1) * 255.0 + 0.5, 0, 255).astype(np.uint8))
            return self._run_rgb8(rgb, style_weights).transpose(0, 3, 1, 2).astype(np.float32) * (1.0 / 255.0)
        feeds = {INPUT_IMAGE: image.astype(self.io_dtype, copy=False),
                 INPUT_STYLE: style_weights.astype(self.io_dtype, copy=False)}
        try:
            out = self.session.run([OUTPUT], feeds)[0]
        except Exception as exc:  # onnxruntime's own types (RuntimeException, Fail...), MemoryError
            raise EngineError(run_failure(exc, image.shape)) from None
        return out.astype(np.float32, copy=False)

    def _run_rgb8(self, rgb: np.ndarray, style_weights: np.ndarray) -> np.ndarray:
        if self.io != "uint8":
            return super()._run_rgb8(rgb, style_weights)
        out = np.empty_like(rgb)  # [B,H,W,3] uint8: fresh per call, the caller may keep it
        binding = self.session.io_binding()
        binding.bind_cpu_input(INPUT_RGB8, rgb)
        binding.bind_cpu_input(INPUT_STYLE, style_weights)
        binding.bind_output(OUTPUT_RGB8, "cpu", 0, np.uint8, out.shape, out.ctypes.data)
        try:
            self.session.run_with_iobinding(binding)
        except Exception as exc:  # onnxruntime's own types (RuntimeException, Fail...), MemoryError
            raise EngineError(run_failure(exc, (rgb.shape[1], rgb.shape[2]))) from None
        return out

    def describe(self) -> str:
        io = ", uint8 I/O" if self.io == "uint8" else ""
        return f"onnxruntime/{self.precision} ({self.providers[0]}{io})"
