"""Temporal stabilisation of stylized video: blend each output with the previous one, carried along
the optical flow of the *input* frames.

A per-frame network answers small input changes (noise, sub-pixel motion) with larger output
changes, which a viewer sees as flicker. Where a pixel of the current frame was visible in the
previous one, the filter pulls its stylized colour towards the previous output at the same scene
point; everywhere else (disocclusions, moving objects whose flow fails, a new scene) it keeps the
network's own output, so nothing is smeared:

    g_t = gray(input_t) at <= flow_max_side px                     # flow on the inputs, not the outputs
    f   = DIS(g_t -> g_{t-1}),  b = DIS(g_{t-1} -> g_t)
    m   = forward-backward consistent(f, b) & |g_t - warp(g_{t-1}, f)| small, eroded, softened
    cut = mean(m) < min_matched                                      # scene cut: start over
    out_t = (1 - blend * m) * stylized_t + blend * m * warp(out_{t-1}, f upscaled)

The previous output is the filtered one (a recursive filter: an exponential average along motion
paths, with per-pixel resets), so the stabilisation does not depend on how far back a pixel was seen.
Cost at 640x480: two DIS flows at 200x150 (the backward one on a worker thread) plus one remap and
one blend at full size.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Hashable, Optional

import cv2
import numpy as np

from muon_ad_ros.core.errors import ConfigError
from muon_ad_ros.core.flow import forward_backward_mask, small_gray, upscale_flow, warp
from muon_ad_ros.core.side_worker import SideWorker

DIS_PRESETS = {"ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST, "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
               "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM}


@dataclass
class TemporalConfig:
    blend: float = 0.85            # weight of the warped previous output on matched pixels, 0..1
    flow_max_side: int = 200       # longer side of the frames the flow is computed on (px)
    dis_preset: str = "fast"       # OpenCV DIS preset: ultrafast | fast | medium
    # The presets stop their coarse-to-fine search one pyramid level above the image (fast: two),
    # i.e. they estimate flow on a grid 2-4x coarser than the frame they are given; small walkers
    # then get their background's motion and fail the checks. Searching down to the image itself
    # (scale 0) on a smaller frame is as cheap and follows them (docs/consistency.md, tuning).
    dis_finest_scale: int = 0      # finest pyramid level DIS searches (0 = the frame itself)
    dis_refine_iters: int = 1      # variational refinement iterations per level (presets: 5)
    fb_alpha1: float = 0.01        # forward-backward check (Sundaram et al. 2010), in flow-grid pixels
    fb_alpha2: float = 0.25
    photometric_max: float = 0.10  # |gray_t - warped gray_{t-1}| (0..1) above this: flow failed there
    erode_px: int = 0              # shrink the matched region (flow-grid px): object borders stay sharp
    soften_px: int = 1             # blur radius of the matched mask (flow-grid px): no hard seams
    min_matched: float = 0.4       # fewer matched pixels than this fraction: a scene cut, start over

    def __post_init__(self):
        if not 0.0 <= self.blend < 1.0:
            raise ConfigError(f"temporal blend must be within [0, 1), got {self.blend}")
        if self.flow_max_side < 16:
            raise ConfigError(f"temporal flow_max_side must be >= 16, got {self.flow_max_side}")
        if self.dis_preset not in DIS_PRESETS:
            raise ConfigError(f"dis_preset must be one of {', '.join(DIS_PRESETS)}, got {self.dis_preset!r}")
        if not 0 <= self.dis_finest_scale <= 4:
            raise ConfigError(f"dis_finest_scale must be within [0, 4], got {self.dis_finest_scale}")
        if self.dis_refine_iters < 0:
            raise ConfigError(f"dis_refine_iters must be >= 0, got {self.dis_refine_iters}")
        if not 0.0 <= self.min_matched <= 1.0:
            raise ConfigError(f"min_matched must be within [0, 1], got {self.min_matched}")


@dataclass
class TemporalStats:
    frames: int = 0
    resets: int = 0                # first frame, size/style change, or a scene cut
    scene_cuts: int = 0
    last_matched: float = 0.0      # fraction of pixels blended in the last frame
    timings: dict = field(default_factory=dict)


def matched_mask(gray: np.ndarray, prev_gray: np.ndarray, flow_cp: np.ndarray, flow_pc: np.ndarray,
                 cfg: TemporalConfig) -> np.ndarray:
    """hxw float32 in [0, 1]: where the current frame's pixel is the previous frame's pixel at
    p + flow_cp(p) (1), or occluded / mismatched (0), softened at the edges."""
    mask = forward_backward_mask(flow_cp, flow_pc, cfg.fb_alpha1, cfg.fb_alpha2)
    warped = warp(prev_gray, flow_cp)
    mask &= cv2.absdiff(gray, warped) <= cfg.photometric_max * 255.0
    m = mask.astype(np.uint8)
    if cfg.erode_px > 0:
        m = cv2.erode(m, np.ones((2 * cfg.erode_px + 1,) * 2, np.uint8))
    m = m.astype(np.float32)
    if cfg.soften_px > 0:
        k = 2 * cfg.soften_px + 1
        m = cv2.GaussianBlur(m, (k, k), 0) * m  # soft fall-off inside only: never blends an unmatched pixel
    return m


def dis_flow(cfg: TemporalConfig) -> cv2.DISOpticalFlow:
    """OpenCV DIS from the preset, searching down to ``dis_finest_scale`` with
    ``dis_refine_iters`` variational refinement iterations."""
    dis = cv2.DISOpticalFlow_create(DIS_PRESETS[cfg.dis_preset])
    dis.setFinestScale(cfg.dis_finest_scale)
    dis.setVariationalRefinementIterations(cfg.dis_refine_iters)
    return dis


class TemporalFilter:
    """The filter's state for one video stream: the previous input (small, gray) and output.

    ``apply`` is called once per frame in display order; ``key`` identifies what the stylized frame
    depends on besides the input (style weights, strength): when it changes, the filter starts over.
    """

    def __init__(self, config: Optional[TemporalConfig] = None):
        self.config = config or TemporalConfig()
        # The two flows are independent: the backward one runs on a worker thread (OpenCV releases
        # the GIL) with its own DIS instance (one instance is not safe to share between threads).
        self._dis_forward = dis_flow(self.config)
        self._dis_backward = dis_flow(self.config)
        self._worker = SideWorker("temporal_flow")
        self.stats = TemporalStats()
        self.reset()

    def reset(self) -> None:
        self._prev_gray: Optional[np.ndarray] = None
        self._prev_out: Optional[np.ndarray] = None
        self._key: Hashable = None

    def _start_over(self, gray, out, key) -> np.ndarray:
        self._prev_gray, self._prev_out, self._key = gray, out, key
        self.stats.resets += 1
        self.stats.last_matched = 0.0
        return out

    def apply(self, rgb_in: np.ndarray, stylized: np.ndarray, key: Hashable = None) -> np.ndarray:
        """HxWx3 uint8 input and its stylization -> the stabilised HxWx3 uint8 output."""
        t0 = time.perf_counter()
        cfg = self.config
        self.stats.frames += 1
        gray = small_gray(rgb_in, cfg.flow_max_side)
        prev_gray, prev_out = self._prev_gray, self._prev_out
        if (prev_gray is None or key != self._key or prev_gray.shape != gray.shape
                or prev_out.shape != stylized.shape):
            out = self._start_over(gray, stylized, key)
            self.stats.timings = {"flow": 0.0, "blend": (time.perf_counter() - t0) * 1e3}
            return out
        backward = self._worker.submit(self._dis_backward.calc, prev_gray, gray, None)
        flow_cp = self._dis_forward.calc(gray, prev_gray, None)   # [h,w,2] current -> previous
        flow_pc = backward.result()                               # [h,w,2] previous -> current
        mask = matched_mask(gray, prev_gray, flow_cp, flow_pc, cfg)
        t1 = time.perf_counter()
        matched = float(mask.mean())
        if matched < cfg.min_matched:
            self.stats.scene_cuts += 1
            out = self._start_over(gray, stylized, key)
        else:
            h, w = stylized.shape[:2]
            warped = warp(prev_out, upscale_flow(flow_cp, h, w))             # [H,W,3] uint8
            weight = cv2.resize(mask, (w, h), interpolation=cv2.INTER_LINEAR) * cfg.blend  # [H,W]
            out = cv2.blendLinear(stylized, warped, 1.0 - weight, weight)
            self._prev_gray, self._prev_out = gray, out
            self.stats.last_matched = matched
        self.stats.timings = {"flow": (t1 - t0) * 1e3, "blend": (time.perf_counter() - t1) * 1e3}
        return out
