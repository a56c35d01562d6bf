"""Quality, stability and speed metrics of a stylizer, as plain functions on numpy frames.

Usable on their own (no ROS, no bag): every function takes HxWx3 uint8 RGB frames (or HxW luminance in
[0, 1]) and returns floats. `SequenceMetrics` accumulates them over a stream of (input, output) pairs,
keeping only the previous pair in memory, so a bag of any length costs constant memory.

Metrics and their ranges:
* ``ssim`` (luminance SSIM, Wang et al. 2004, gaussian window): [-1, 1], 1 = same structure.
* ``edge_agreement`` (F1 of Canny edges with a small spatial tolerance): [0, 1], 1 = same edges.
* ``warping_error`` (Lai et al. 2018): mean squared difference in [0, 1] RGB between a frame and the
  previous frame warped onto it by optical flow computed on the *inputs*, occluded pixels masked. The
  same measure on the inputs is the floor a perfectly stable stylizer could reach (flow is imperfect,
  lighting changes). [0, 1], 0 = perfectly stable.
* ``flicker``: mean absolute frame-to-frame change of the mean luminance. [0, 1].
* ``latency_stats``: p50/p95/p99 of per-frame stage latencies (ms) and the throughput they imply.
"""
from dataclasses import dataclass, field

import cv2
import numpy as np

from muon_ad_ros.core.flow import forward_backward_mask, warp  # noqa: F401 (warp: part of this API)

# ----------------------------------------------------------------------------------------------------
# luminance, resizing


def luminance(rgb):
    """HxWx3 uint8 RGB -> HxW float32 luma (Rec. 601, as cv2's RGB2GRAY) in [0, 1]."""
    rgb = np.asarray(rgb, dtype=np.float32)
    return (0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2]) / 255.0


def limit_size(rgb, max_side):
    """Downscale (area filter) so the longer side is at most max_side; None or 0 keeps the size.

    Optical flow on a 1080p frame costs more than the stylizer; the metrics barely change at 640 px.
    """
    h, w = rgb.shape[:2]
    if not max_side or max(h, w) <= max_side:
        return rgb
    scale = max_side / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))  # cv2 wants (width, height)
    return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)


# ----------------------------------------------------------------------------------------------------
# content preservation


@dataclass
class SSIMConfig:
    sigma: float = 1.5      # gaussian window of Wang et al.; 11 taps (radius = int(3.5 * sigma + 0.5))
    k1: float = 0.01
    k2: float = 0.03
    data_range: float = 1.0  # luminance in [0, 1]


def ssim(a, b, cfg=SSIMConfig()):
    """Mean SSIM of two HxW float images in [0, data_range] with a gaussian window.

    The border (window radius) is cropped before averaging, as skimage does, so the result matches
    ``skimage.metrics.structural_similarity(gaussian_weights=True, use_sample_covariance=False)``.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 2:
        raise ValueError(f"ssim wants two HxW images of one shape, got {a.shape} and {b.shape}")
    radius = int(3.5 * cfg.sigma + 0.5)
    ksize = 2 * radius + 1
    if min(a.shape) < ksize:
        raise ValueError(f"ssim needs images of at least {ksize}x{ksize} pixels, got {a.shape}")

    def blur(x):
        return cv2.GaussianBlur(x, (ksize, ksize), cfg.sigma, borderType=cv2.BORDER_REFLECT)

    c1 = (cfg.k1 * cfg.data_range) ** 2
    c2 = (cfg.k2 * cfg.data_range) ** 2
    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a * mu_a
    var_b = blur(b * b) - mu_b * mu_b
    cov = blur(a * b) - mu_a * mu_b
    ssim_map = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / (
        (mu_a * mu_a + mu_b * mu_b + c1) * (var_a + var_b + c2))
    return float(ssim_map[radius:-radius, radius:-radius].mean())


def luminance_ssim(rgb_in, rgb_out):
    """SSIM between the luminance of an input frame and its stylized output (same size)."""
    return ssim(luminance(rgb_in), luminance(rgb_out))


def canny_edges(rgb, low=50, high=150):
    """HxW bool edge map of an RGB frame; a light blur first so sensor noise does not count as edges."""
    gray = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY)
    return cv2.Canny(cv2.GaussianBlur(gray, (5, 5), 1.0), low, high) > 0


def edge_agreement(rgb_in, rgb_out, tolerance_px=2):
    """F1 score of the output's edges against the input's, an edge counting as matched within
    ``tolerance_px`` pixels: stylization may move an edge by a brush stroke, not lose it.

    1 = every input edge is kept and no edge is invented; both edge-free also counts as 1.
    """
    e_in, e_out = canny_edges(rgb_in), canny_edges(rgb_out)
    n_in, n_out = int(e_in.sum()), int(e_out.sum())
    if n_in == 0 and n_out == 0:
        return 1.0
    if n_in == 0 or n_out == 0:
        return 0.0
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * tolerance_px + 1,) * 2)
    near_in = cv2.dilate(e_in.astype(np.uint8), kernel) > 0
    near_out = cv2.dilate(e_out.astype(np.uint8), kernel) > 0
    precision = (e_out & near_in).sum() / n_out   # output edges that exist in the input
    recall = (e_in & near_out).sum() / n_in       # input edges that survive in the output
    if precision + recall == 0:
        return 0.0
    return float(2 * precision * recall / (precision + recall))


# ----------------------------------------------------------------------------------------------------
# temporal stability


@dataclass
class FlowConfig:
    # cv2.calcOpticalFlowFarneback parameters (OpenCV's sample values)
    pyr_scale: float = 0.5
    levels: int = 3
    winsize: int = 15
    iterations: int = 3
    poly_n: int = 5
    poly_sigma: float = 1.2
    # forward-backward consistency (Sundaram et al. 2010): a pixel is occluded when
    # |f + b|^2 > alpha1 * (|f|^2 + |b|^2) + alpha2
    alpha1: float = 0.01
    alpha2: float = 0.5


def optical_flow(gray_from, gray_to, cfg=FlowConfig()):
    """Dense flow HxWx2 (dx, dy) such that gray_from(p) ~ gray_to(p + flow(p)). Inputs HxW uint8."""
    return cv2.calcOpticalFlowFarneback(gray_from, gray_to, None, cfg.pyr_scale, cfg.levels,
                                        cfg.winsize, cfg.iterations, cfg.poly_n, cfg.poly_sigma, 0)


def valid_flow_mask(flow_cur_to_prev, flow_prev_to_cur, cfg=FlowConfig()):
    """HxW bool: pixels of the current frame seen in the previous one (consistent flow, inside the frame)."""
    return forward_backward_mask(flow_cur_to_prev, flow_prev_to_cur, cfg.alpha1, cfg.alpha2)


@dataclass
class FlowPair:
    """Flow between two consecutive input frames, computed once and used for input and output."""
    cur_to_prev: np.ndarray  # HxWx2
    mask: np.ndarray         # HxW bool, True = not occluded


def flow_between(prev_rgb, cur_rgb, cfg=FlowConfig()):
    """Optical flow between two consecutive *input* frames (RGB uint8), with its occlusion mask."""
    if np.array_equal(prev_rgb, cur_rgb):
        # A camera on a parked robot: the true flow is zero, and Farneback's estimate of it is not
        # (sub-pixel noise), which would charge a perfectly stable stylizer a tiny warping error.
        h, w = cur_rgb.shape[:2]
        return FlowPair(np.zeros((h, w, 2), np.float32), np.ones((h, w), bool))
    g_prev = cv2.cvtColor(np.ascontiguousarray(prev_rgb), cv2.COLOR_RGB2GRAY)
    g_cur = cv2.cvtColor(np.ascontiguousarray(cur_rgb), cv2.COLOR_RGB2GRAY)
    cur_to_prev = optical_flow(g_cur, g_prev, cfg)
    prev_to_cur = optical_flow(g_prev, g_cur, cfg)
    return FlowPair(cur_to_prev, valid_flow_mask(cur_to_prev, prev_to_cur, cfg))


def warping_error(prev_rgb, cur_rgb, flow):
    """Mean over non-occluded pixels of the squared RGB difference (in [0, 1]) between the current
    frame and the previous frame warped onto it. NaN when every pixel is occluded."""
    n = int(flow.mask.sum())
    if n == 0:
        return float("nan")
    warped = warp(prev_rgb.astype(np.float32) / 255.0, flow.cur_to_prev)
    diff = ((cur_rgb.astype(np.float32) / 255.0 - warped) ** 2).mean(axis=-1)  # HxW
    return float(diff[flow.mask].sum() / n)


def flicker(luma_means):
    """Mean absolute change of the per-frame mean luminance between consecutive frames; 0 if < 2."""
    m = np.asarray(luma_means, dtype=np.float64)
    return float(np.abs(np.diff(m)).mean()) if m.size >= 2 else 0.0


# ----------------------------------------------------------------------------------------------------
# speed


def latency_stats(samples_ms):
    """{count, mean, p50, p95, p99, max} of latency samples in ms (None values if empty), plus the
    throughput in frames/s one stage alone would sustain (1000 / mean)."""
    x = np.asarray(list(samples_ms), dtype=np.float64)
    if x.size == 0:
        return {"count": 0, "mean_ms": None, "p50_ms": None, "p95_ms": None, "p99_ms": None,
                "max_ms": None, "fps": None}
    mean = float(x.mean())
    p50, p95, p99 = (float(v) for v in np.percentile(x, [50, 95, 99]))
    return {"count": int(x.size), "mean_ms": mean, "p50_ms": p50, "p95_ms": p95, "p99_ms": p99,
            "max_ms": float(x.max()), "fps": 1000.0 / mean if mean > 0 else None}


# ----------------------------------------------------------------------------------------------------
# accumulation over a stream


def _mean_or_none(values):
    v = [x for x in values if x is not None and np.isfinite(x)]
    return float(np.mean(v)) if v else None


@dataclass
class SequenceMetrics:
    """Accumulates the quality and stability metrics over a stream of (input, output) frame pairs.

    Frames are downscaled to ``max_side`` first (see `limit_size`). Only the previous pair is kept.
    Per-frame values are kept (floats, cheap) for plots.
    """
    max_side: int = 640
    flow_cfg: FlowConfig = field(default_factory=FlowConfig)
    ssim_values: list = field(default_factory=list)
    edge_values: list = field(default_factory=list)
    warp_out: list = field(default_factory=list)   # one per consecutive pair, NaN if all occluded
    warp_in: list = field(default_factory=list)
    occluded_fraction: list = field(default_factory=list)
    luma_in: list = field(default_factory=list)
    luma_out: list = field(default_factory=list)
    _prev: tuple = None

    def add(self, rgb_in, rgb_out):
        """Add one frame pair (HxWx3 uint8 RGB of the same size)."""
        if rgb_in.shape != rgb_out.shape:
            raise ValueError(f"input {rgb_in.shape} and output {rgb_out.shape} differ in size")
        rgb_in, rgb_out = limit_size(rgb_in, self.max_side), limit_size(rgb_out, self.max_side)
        self.ssim_values.append(luminance_ssim(rgb_in, rgb_out))
        self.edge_values.append(edge_agreement(rgb_in, rgb_out))
        self.luma_in.append(float(luminance(rgb_in).mean()))
        self.luma_out.append(float(luminance(rgb_out).mean()))
        if self._prev is not None and self._prev[0].shape == rgb_in.shape:
            prev_in, prev_out = self._prev
            flow = flow_between(prev_in, rgb_in, self.flow_cfg)
            self.warp_in.append(warping_error(prev_in, rgb_in, flow))
            self.warp_out.append(warping_error(prev_out, rgb_out, flow))
            self.occluded_fraction.append(float(1.0 - flow.mask.mean()))
        # A size change breaks the sequence: the next pair starts a new one.
        self._prev = (rgb_in, rgb_out)

    def summary(self):
        """Means over the stream; temporal metrics are None with fewer than two frames."""
        flick_in, flick_out = flicker(self.luma_in), flicker(self.luma_out)
        temporal = len(self.warp_out) > 0
        return {
            "frames": len(self.ssim_values),
            "luminance_ssim": _mean_or_none(self.ssim_values),
            "edge_agreement": _mean_or_none(self.edge_values),
            "warping_error": _mean_or_none(self.warp_out) if temporal else None,
            "warping_error_input_floor": _mean_or_none(self.warp_in) if temporal else None,
            "occluded_fraction": _mean_or_none(self.occluded_fraction) if temporal else None,
            "flicker": flick_out if len(self.luma_out) >= 2 else None,
            "flicker_input": flick_in if len(self.luma_in) >= 2 else None,
            "flicker_excess": flick_out - flick_in if len(self.luma_out) >= 2 else None,
        }


# ----------------------------------------------------------------------------------------------------
# stereo consistency


def left_visible_in_right(disp_left, tolerance_px=1.0):
    """HxW bool: left-view pixels with a known disparity whose scene point the right camera sees too
    (no nearer surface lands on the same right pixel, and it lands inside the right image)."""
    from muon_ad_ros.core.stereo import right_view_disparity

    h, w = disp_left.shape
    d = np.where(np.isfinite(disp_left) & (disp_left > 0), disp_left, np.nan).astype(np.float32)
    d_right = right_view_disparity(d)
    xr = np.rint(np.arange(w)[None, :] - np.nan_to_num(d, nan=0.0)).astype(np.int64)
    inside = np.isfinite(d) & (xr >= 0) & (xr < w)
    nearest = np.take_along_axis(d_right, np.clip(xr, 0, w - 1), axis=1)
    return inside & (np.abs(nearest - d) <= tolerance_px)


def stereo_difference(left_out, right_out, disp_left):
    """Mean absolute difference (0-255, over RGB) between the left output and the right output
    warped onto the left view by the left-view disparity ``disp_left`` (ground truth), on pixels the
    two cameras both see. 0 = both eyes painted alike. Returns (difference, fraction of pixels used)."""
    from muon_ad_ros.core.stereo import warp_right_to_left

    mask = left_visible_in_right(disp_left)
    if not mask.any():
        return float("nan"), 0.0
    warped = warp_right_to_left(right_out.astype(np.float32), np.where(mask, disp_left, 0).astype(np.float32))
    diff = np.abs(left_out.astype(np.float32) - warped).mean(axis=-1)
    return float(diff[mask].mean()), float(mask.mean())
