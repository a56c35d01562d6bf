"""FP16 and INT8 (QDQ) versions of an exported FP32 student, their parity to FP32 and their latency.

Runtime side: onnx + onnxruntime + OpenCV only (no torch), so a robot can re-quantize a model.

* FP16: every float tensor and the I/O become float16 (``keep_io_types=False``); the ORT engine
  converts frames at the boundary by the model's input dtype. Meant for GPUs (TensorRT / CUDA EP);
  it runs on the CPU EP too, but slower than FP32 there (CPU has few float16 kernels).
* INT8: static QDQ quantization of the convolutions and matmuls with per-channel int8 weights,
  activation ranges calibrated (min/max) on real frames preprocessed exactly as the Stylizer does.
  Activations are *symmetric int8* by default because TensorRT's explicit quantization accepts
  only zero-point-0 int8 Q/DQ, and the same file feeds both engines. Instance/Layer norms,
  softmax and the final sigmoid stay float: they are cheap, and in a norm-heavy network
  quantizing them costs accuracy for no speed.
"""
from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Optional, Sequence

import numpy as np
from onnxruntime.quantization import CalibrationDataReader

from muon_ad_ros.core.errors import ConfigError, ModelError

PRECISIONS = ("fp32", "fp16", "int8")
PRECISION_KEY = "muon_ad.precision"


@dataclass
class Int8Config:
    op_types: tuple[str, ...] = ("Conv", "MatMul")  # what gets Q/DQ; everything else stays float
    per_channel: bool = True  # per-output-channel weight scales: depthwise convs need them
    # TensorRT-compatible (zero point 0); asymmetric uint8 measured ~1 dB better on CPU.
    symmetric_activations: bool = True
    exclude_nodes: tuple[str, ...] = ()  # node names kept float in addition to the op types left out
    float_attention: bool = True  # QK^T and AV stay float: int8 cannot hold softmax probabilities ~1/N
    # The stem conv (sees raw pixels) and the head convs (write the output pixels) stay float: on the
    # trained student this lifts the mean PSNR to FP32 from 28.3 to 32.3 dB for ~1% of the MACs.
    float_first_last: bool = True
    calibration_max_side: int = 640  # frames are sized as the Stylizer does with max_side=640
    calibration_method: str = "minmax"  # or "percentile" / "entropy" (slower, histogram based)


# -- small ONNX helpers ---------------------------------------------------------------------------
def _atomic_save(proto, path: Path) -> Path:
    import onnx

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    onnx.save(proto, str(tmp))
    os.replace(tmp, path)
    return path


def set_precision(proto, precision: str) -> None:
    """Set ``muon_ad.precision`` in metadata_props, keeping the other muon_ad.* entries."""
    props = {p.key: p.value for p in proto.metadata_props}
    props[PRECISION_KEY] = precision
    del proto.metadata_props[:]
    for key, value in props.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value


def topological_sort(graph) -> None:
    """Reorder ``graph.node`` so every input is produced first (the FP16 converter appends its Casts
    at the end, which ORT tolerates but the ONNX checker rejects)."""
    available = {i.name for i in graph.input} | {t.name for t in graph.initializer} | {""}
    pending, ordered = list(graph.node), []
    while pending:
        ready = [n for n in pending if all(i in available for i in n.input)]
        if not ready:
            raise ModelError("ONNX graph has a cycle or an input that no node produces")
        for n in ready:
            available.update(n.output)
        ordered += ready
        ready_ids = {id(n) for n in ready}
        pending = [n for n in pending if id(n) not in ready_ids]
    copies = [type(n)() for n in ordered]
    for dst, src in zip(copies, ordered):
        dst.CopyFrom(src)
    del graph.node[:]
    graph.node.extend(copies)


def _session(path: str | os.PathLike, threads: Optional[int] = None):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    if threads:
        options.intra_op_num_threads = int(threads)
        options.inter_op_num_threads = 1
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph types
        raise ModelError(f"{path}: onnxruntime cannot load it ({exc})") from None


def _num_styles(session) -> int:
    dim = {i.name: i for i in session.get_inputs()}["style_weights"].shape[-1]
    if not isinstance(dim, int):
        raise ModelError("the model's style_weights input has no fixed style count")
    return dim


def _run(session, image: np.ndarray, style_weights: np.ndarray) -> np.ndarray:
    dtype = np.float16 if session.get_inputs()[0].type == "tensor(float16)" else np.float32
    feeds = {"image": image.astype(dtype), "style_weights": style_weights.astype(dtype)}
    out = session.run(["stylized"], feeds)[0]
    return out.astype(np.float32)


# -- preprocessing (the Stylizer's, for calibration and parity) ----------------------------------
def preprocess(rgb: np.ndarray, max_side: int = 0, hw: Optional[tuple[int, int]] = None) -> np.ndarray:
    """HxWx3 uint8 RGB -> [1,3,h,w] float32 in [0,1], sized exactly as ``Stylizer.stylize`` sizes it."""
    import cv2

    from muon_ad_ros.core.stylizer import InputPolicy

    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ConfigError(f"expected an HxWx3 uint8 RGB image, got {rgb.shape} {rgb.dtype}")
    policy = InputPolicy(width=hw[1], height=hw[0]) if hw else InputPolicy(max_side=max_side)
    net_h, net_w = policy.network_size(*rgb.shape[:2])
    if (net_h, net_w) != rgb.shape[:2]:
        shrink = net_h * net_w < rgb.shape[0] * rgb.shape[1]
        rgb = cv2.resize(rgb, (net_w, net_h), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    return rgb.transpose(2, 0, 1)[None].astype(np.float32) * (1.0 / 255.0)


def one_hot(style: int, num_styles: int) -> np.ndarray:
    w = np.zeros((1, num_styles), dtype=np.float32)
    w[0, style] = 1.0
    return w


# -- FP16 -----------------------------------------------------------------------------------------
def convert_fp16(src: str | os.PathLike, dst: str | os.PathLike) -> Path:
    """FP32 ONNX -> FP16 ONNX with float16 I/O; checks that the CPU EP can load and run it."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    proto = onnx.load(str(src))
    half = convert_float_to_float16(proto, keep_io_types=False)
    set_precision(half, "fp16")
    topological_sort(half.graph)
    onnx.checker.check_model(half)
    path = _atomic_save(half, Path(dst))
    session = _session(path)
    _run(session, np.full((1, 3, 32, 32), 0.5, np.float32), one_hot(0, _num_styles(session)))
    return path


# -- INT8 -----------------------------------------------------------------------------------------
class FrameReader(CalibrationDataReader):
    """onnxruntime CalibrationDataReader over real frames; styles cycle so every style's norm
    parameters shape the calibrated ranges."""

    def __init__(self, frames: Sequence[np.ndarray], num_styles: int, max_side: int):
        self.feeds = [{"image": preprocess(rgb, max_side=max_side),
                       "style_weights": one_hot(i % num_styles, num_styles)} for i, rgb in enumerate(frames)]
        self._it = iter(self.feeds)

    def get_next(self):
        return next(self._it, None)

    def rewind(self):
        self._it = iter(self.feeds)


def attention_matmuls(proto) -> list[str]:
    """MatMuls between two activations (QK^T and AV), as opposed to weight matmuls (linear layers).

    With N = 1200 tokens at 640x480 a near-uniform attention row holds values ~1/1200, below one
    int8 step of [0,1]: quantizing AV's input would zero most of the attention.
    """
    constants = {t.name for t in proto.graph.initializer}
    constants |= {o for n in proto.graph.node if n.op_type == "Constant" for o in n.output}
    return [n.name for n in proto.graph.node
            if n.op_type == "MatMul" and not any(i in constants for i in n.input)]


def first_and_last_convs(proto) -> list[str]:
    """Names of the first Conv and of the output head's convs (the last two: depthwise 3x3 + 1x1)."""
    convs = [n.name for n in proto.graph.node if n.op_type == "Conv"]
    return convs[:1] + convs[-2:] if len(convs) >= 3 else convs


def quantize_int8(src: str | os.PathLike, dst: str | os.PathLike, calibration_frames: Sequence[np.ndarray],
                  config: Optional[Int8Config] = None) -> Path:
    """FP32 ONNX -> INT8 QDQ ONNX calibrated on ``calibration_frames`` (HxWx3 uint8 RGB)."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    config = config or Int8Config()
    if len(calibration_frames) == 0:
        raise ConfigError("INT8 quantization needs at least one calibration frame")
    methods = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
               "entropy": CalibrationMethod.Entropy}
    if config.calibration_method not in methods:
        raise ConfigError(f"calibration_method must be one of {sorted(methods)}")
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    num_styles = _num_styles(_session(src))
    reader = FrameReader(calibration_frames, num_styles, config.calibration_max_side)
    prepared = dst.with_name(f".{dst.stem}.pre-{os.getpid()}.onnx")
    tmp = dst.with_name(f".{dst.name}.tmp-{os.getpid()}")
    act = QuantType.QInt8 if config.symmetric_activations else QuantType.QUInt8
    try:
        # Graph cleanup + ONNX shape inference (symbolic inference cannot follow the dynamic H/W).
        quant_pre_process(str(src), str(prepared), skip_symbolic_shape=True)
        exclude = list(config.exclude_nodes)
        prepared_proto = onnx.load(str(prepared))
        if config.float_attention:
            exclude += attention_matmuls(prepared_proto)
        if config.float_first_last:
            exclude += first_and_last_convs(prepared_proto)
        quiet = logging.getLogger().level
        logging.getLogger().setLevel(logging.ERROR)  # per-channel warnings on 1-D norm constants
        try:
            quantize_static(str(prepared), str(tmp), reader, quant_format=QuantFormat.QDQ,
                            op_types_to_quantize=list(config.op_types), per_channel=config.per_channel,
                            activation_type=act, weight_type=QuantType.QInt8,
                            nodes_to_exclude=exclude,
                            calibrate_method=methods[config.calibration_method],
                            extra_options={"ActivationSymmetric": config.symmetric_activations,
                                           "WeightSymmetric": True})
        finally:
            logging.getLogger().setLevel(quiet)
        proto = onnx.load(str(tmp))
        set_precision(proto, "int8")
        _atomic_save(proto, dst)
    finally:
        for p in (prepared, tmp, prepared.with_name(prepared.name + ".data")):
            p.unlink(missing_ok=True)
    return dst


# -- parity and latency ---------------------------------------------------------------------------
@dataclass
class Parity:
    max_abs: float = 0.0
    mean_abs: float = 0.0
    psnr_min: float = float("inf")  # dB, worst image; outputs in [0,1] so peak = 1
    psnr_mean: float = float("inf")
    samples: int = 0
    per_image: list = field(default_factory=list)

    def to_dict(self) -> dict:
        def r(v):
            return None if not np.isfinite(v) else round(float(v), 6)
        return {"max_abs": r(self.max_abs), "mean_abs": r(self.mean_abs), "psnr_min": r(self.psnr_min),
                "psnr_mean": r(self.psnr_mean), "samples": self.samples}


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0.0 else 10.0 * np.log10(1.0 / mse)


def measure_parity(reference: str | os.PathLike, candidate: str | os.PathLike, images: Iterable[np.ndarray],
                   max_side: int = 640, styles: Optional[Sequence[int]] = None) -> Parity:
    """|candidate - reference| and PSNR over real images x styles, both models on the ORT CPU EP."""
    ref, cand = _session(reference), _session(candidate)
    num_styles = _num_styles(ref)
    styles = list(range(num_styles)) if styles is None else list(styles)
    result, maxes, means, psnrs = Parity(), [], [], []
    for rgb in images:
        x = preprocess(rgb, max_side=max_side)
        for s in styles:
            a, b = _run(ref, x, one_hot(s, num_styles)), _run(cand, x, one_hot(s, num_styles))
            err = np.abs(a - b)
            maxes.append(float(err.max()))
            means.append(float(err.mean()))
            psnrs.append(psnr(a, b))
    if not maxes:
        raise ConfigError("parity needs at least one image")
    result.max_abs, result.mean_abs = max(maxes), float(np.mean(means))
    result.psnr_min, result.psnr_mean = min(psnrs), float(np.mean(psnrs))
    result.samples, result.per_image = len(maxes), psnrs
    return result


def check_tolerance(parity: Parity, tolerance: dict) -> list[str]:
    """Violations of a tolerance {"max_abs", "mean_abs", "psnr_min", "psnr_mean"}; empty = passes."""
    problems = []
    for key in ("max_abs", "mean_abs"):
        if key in tolerance and getattr(parity, key) > tolerance[key]:
            problems.append(f"{key} {getattr(parity, key):.3g} > {tolerance[key]}")
    for key in ("psnr_min", "psnr_mean"):
        if key in tolerance and getattr(parity, key) < tolerance[key]:
            problems.append(f"{key} {getattr(parity, key):.2f} dB < {tolerance[key]} dB")
    return problems


def measure_latency(models: dict[str, str | os.PathLike], hw: tuple[int, int] = (480, 640), threads: int = 2,
                    runs: int = 20, warmup: int = 3, seed: int = 0) -> dict:
    """Median / p90 latency (ms) of each model on the ORT CPU EP with ``threads`` intra-op threads.

    Models are run round-robin so that load from other processes hits them all alike.
    """
    sessions = {name: _session(path, threads=threads) for name, path in models.items()}
    rng = np.random.default_rng(seed)
    image = rng.random((1, 3, *hw), dtype=np.float32)
    times = {name: [] for name in sessions}
    for i in range(warmup + runs):
        for name, session in sessions.items():
            style = one_hot(0, _num_styles(session))
            t0 = time.perf_counter()
            _run(session, image, style)
            if i >= warmup:
                times[name].append((time.perf_counter() - t0) * 1e3)
    return {name: {"median_ms": round(float(np.median(t)), 2),
                   "p90_ms": round(float(np.percentile(t, 90)), 2),
                   "runs": runs, "threads": threads, "hw": list(hw)} for name, t in times.items()}
