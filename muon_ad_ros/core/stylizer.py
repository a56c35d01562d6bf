"""The ``Stylizer`` pipeline shared by the node, the CLI and bag evaluation.

    rgb frame HxWx3 uint8 -> preprocess (resize to the input policy, skipped when the frame fits;
                                         NCHW float for float engines)
                          -> engine.run (any backend), or engine.run_rgb8 when the model takes
                             uint8 frames (the conversions run inside the graph, core/uint8_io.py)
                          -> postprocess (HWC uint8 for float engines, resize back to the frame
                             size, strength blend)

Per-stage wall times (ms) come back with every result so callers can report them.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Optional, Sequence, Union

import cv2
import numpy as np

from muon_ad_ros.core.engines import Engine, create_engine
from muon_ad_ros.core.errors import ConfigError, ImageFormatError
from muon_ad_ros.core.image_codec import DEFAULT_MAX_SIDE
from muon_ad_ros.core.model_store import ModelFiles, resolve_model
from muon_ad_ros.core.onnx_contract import SIZE_MULTIPLE, nchw_to_rgb8, rgb8_to_nchw
from muon_ad_ros.core.style_spec import StyleSpec, parse_style
from muon_ad_ros.core.temporal import TemporalConfig, TemporalFilter

MAX_SIDE_LIMIT = 8192


def parse_wxh(text: str, option: str = "size") -> tuple[int, int]:
    """``"640x480"`` -> ``(640, 480)``: the one parser of image sizes on command lines."""
    try:
        w, h = (int(v) for v in str(text).lower().split("x"))
    except ValueError:
        raise ConfigError(f"{option} must look like WxH, e.g. 640x480, got {text!r}") from None
    if w <= 0 or h <= 0:
        raise ConfigError(f"{option} must be positive, got {text!r}")
    return w, h


@dataclass(frozen=True)
class InputPolicy:
    """How a frame is sized for the network.

    ``width``/``height`` > 0: a fixed network resolution (predictable latency, e.g. for a Jetson).
    Otherwise the frame keeps its size, scaled down so its longer side is at most ``max_side``
    (DEFAULT_MAX_SIDE unless asked; 0 = no limit, full size: only for offline work). Either way
    both sides are rounded to multiples of 16, as the network needs.
    """

    width: int = 0
    height: int = 0
    max_side: int = DEFAULT_MAX_SIDE

    def __post_init__(self):
        if (self.width > 0) != (self.height > 0):
            raise ConfigError("set both width and height of the network resolution, or neither")
        for name in ("width", "height", "max_side"):
            value = getattr(self, name)
            if value < 0 or value > MAX_SIDE_LIMIT:
                raise ConfigError(f"{name} must be within 0..{MAX_SIDE_LIMIT}, got {value}")

    def network_size(self, frame_h: int, frame_w: int) -> tuple[int, int]:
        """(height, width) the network runs at for a frame of this size."""
        if self.width > 0:
            h, w = self.height, self.width
        else:
            scale = 1.0
            if self.max_side and max(frame_h, frame_w) > self.max_side:
                scale = self.max_side / max(frame_h, frame_w)
            h, w = frame_h * scale, frame_w * scale
        return (max(SIZE_MULTIPLE, int(round(h / SIZE_MULTIPLE)) * SIZE_MULTIPLE),
                max(SIZE_MULTIPLE, int(round(w / SIZE_MULTIPLE)) * SIZE_MULTIPLE))


@dataclass
class StylizeResult:
    image: np.ndarray  # HxWx3 uint8 RGB, the size of the input frame
    timings: dict = field(default_factory=dict)  # ms: preprocess, inference, postprocess, total
    network_hw: tuple[int, int] = (0, 0)


class Stylizer:
    """Stylize RGB frames with one engine; style and strength can change between calls."""

    def __init__(self, engine: Engine, styles: Sequence[str], policy: InputPolicy = InputPolicy(),
                 style: StyleSpec = 0, strength: float = 1.0, card: Optional[dict] = None,
                 temporal: Union[bool, TemporalConfig] = False):
        if len(styles) != engine.num_styles:
            raise ConfigError(f"{len(styles)} style names for an engine with {engine.num_styles} styles")
        self.engine = engine
        self.styles = list(styles)
        self.policy = policy
        self.card = card or {}
        self._style_weights = self.style_weights(style)
        self._strength = self._check_strength(strength)
        self._temporal: Optional[TemporalFilter] = None
        self.set_temporal(temporal)

    @classmethod
    def from_model(cls, model: Union[str, os.PathLike, ModelFiles] = "default", backend: str = "onnxruntime",
                   precision: str = "fp32", style: StyleSpec = 0, strength: float = 1.0,
                   resolution: Optional[tuple[int, int]] = None, max_side: int = DEFAULT_MAX_SIDE,
                   threads: Optional[int] = None, device: str = "cpu",
                   temporal: Union[bool, TemporalConfig] = False, io: str = "auto",
                   **engine_options) -> "Stylizer":
        """Resolve ``model`` ("default", an id, a card, .onnx or .safetensors) and build its engine
        (``io="auto"``: the model's uint8 variant when its card lists one, engines.create_engine)."""
        files = model if isinstance(model, ModelFiles) else resolve_model(model)
        engine = create_engine(files, backend=backend, precision=precision, device=device,
                               threads=threads, io=io, **engine_options)
        width, height = resolution if resolution else (0, 0)
        policy = InputPolicy(width=width, height=height, max_side=max_side)
        return cls(engine, files.styles, policy, style=style, strength=strength, card=files.card,
                   temporal=temporal)

    # -- style and strength -------------------------------------------------------------------
    def style_weights(self, style: StyleSpec) -> np.ndarray:
        """[S] float32 weights for a style spec: a name, an index, a mixture "a:0.7,b:0.3" or S
        weights (core/style_spec.py, the one parser of style values)."""
        return parse_style(style, self.styles)

    @staticmethod
    def _check_strength(strength: float) -> float:
        strength = float(strength)
        if not 0.0 <= strength <= 1.0:
            raise ConfigError(f"strength must be within [0, 1], got {strength}")
        return strength

    def set_style(self, style: StyleSpec) -> None:
        self._style_weights = self.style_weights(style)

    def set_strength(self, strength: float) -> None:
        self._strength = self._check_strength(strength)

    @property
    def strength(self) -> float:
        return self._strength

    @property
    def current_style_weights(self) -> np.ndarray:
        return self._style_weights.copy()

    # -- temporal stabilisation (core/temporal.py) -------------------------------------------------
    def set_temporal(self, temporal: Union[bool, TemporalConfig]) -> None:
        """Turn the video filter on (True or a TemporalConfig) or off. While on, consecutive
        ``stylize`` calls are treated as frames of one video: use one Stylizer per stream."""
        if isinstance(temporal, TemporalConfig):
            self._temporal = TemporalFilter(temporal)
        elif temporal and self._temporal is None:
            self._temporal = TemporalFilter()
        elif not temporal:
            self._temporal = None

    @property
    def temporal(self) -> Optional[TemporalFilter]:
        """The video filter (its config and stats), or None when off."""
        return self._temporal

    def for_stream(self) -> "Stylizer":
        """A Stylizer sharing this one's engine, style, strength and policy, with its own temporal
        state (and a fresh filter when on): one per video stream, e.g. per topic of a bag."""
        temporal = self._temporal.config if self._temporal is not None else False
        return Stylizer(self.engine, self.styles, self.policy, style=self._style_weights, strength=self._strength,
                        card=self.card, temporal=temporal)

    def reset_temporal(self) -> None:
        """Forget the previous frame (a new video starts; the next frame is not blended)."""
        if self._temporal is not None:
            self._temporal.reset()

    # -- the pipeline ----------------------------------------------------------------------------
    def stylize(self, rgb: np.ndarray, style: Optional[StyleSpec] = None,
                strength: Optional[float] = None) -> StylizeResult:
        """Stylize one HxWx3 uint8 RGB frame; returns a frame of the same size."""
        t0 = time.perf_counter()
        if not isinstance(rgb, np.ndarray) or rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise ImageFormatError(f"expected an HxWx3 uint8 RGB frame, got {getattr(rgb, 'shape', type(rgb))}")
        frame_h, frame_w = rgb.shape[:2]
        if frame_h == 0 or frame_w == 0:
            raise ImageFormatError("empty frame")
        weights = self._style_weights if style is None else self.style_weights(style)
        alpha = self._strength if strength is None else self._check_strength(strength)

        net_h, net_w = self.policy.network_size(frame_h, frame_w)
        resized = rgb
        if (net_h, net_w) != (frame_h, frame_w):
            shrink = net_h * net_w < frame_h * frame_w
            resized = cv2.resize(rgb, (net_w, net_h), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
        if self.engine.io == "uint8":  # cast, layout and scaling inside the graph
            t1 = time.perf_counter()
            out = self.engine.run_rgb8(resized[None], weights[None])[0]  # [h,w,3] uint8
            t2 = time.perf_counter()
        else:
            x = rgb8_to_nchw(resized)  # [1,3,h,w] float32
            t1 = time.perf_counter()
            y = self.engine.run(x, weights[None])  # [1,3,h,w]
            t2 = time.perf_counter()
            out = nchw_to_rgb8(y)  # [h,w,3] uint8
        if (net_h, net_w) != (frame_h, frame_w):
            out = cv2.resize(out, (frame_w, frame_h), interpolation=cv2.INTER_LINEAR)
        if alpha < 1.0:
            out = cv2.addWeighted(out, alpha, rgb, 1.0 - alpha, 0.0)
        t3 = time.perf_counter()
        temporal = self._temporal
        if temporal is not None:  # blend with the previous output along the input's motion
            out = temporal.apply(rgb, out, key=(weights.tobytes(), alpha))
        t4 = time.perf_counter()
        timings = {"preprocess": (t1 - t0) * 1e3, "inference": (t2 - t1) * 1e3,
                   "postprocess": (t3 - t2) * 1e3, "temporal": (t4 - t3) * 1e3, "total": (t4 - t0) * 1e3}
        return StylizeResult(image=np.ascontiguousarray(out), timings=timings, network_hw=(net_h, net_w))

    def describe(self) -> str:
        return f"model {self.card.get('id', '?')} on {self.engine.describe()}, styles: {', '.join(self.styles)}"
