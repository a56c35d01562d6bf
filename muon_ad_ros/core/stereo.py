"""Stereo-consistent stylization for VR: both eyes painted alike.

Stylizing the two views independently paints the same surface point differently in each eye (the
network sees it at another position and with other neighbours), which the visual system reads as
rivalry. In consistent mode the right view is built from the stylized left view, carried over by
the disparity of the rectified input pair; only the pixels the left camera cannot see (occlusions,
the left border strip) come from the right view's own stylization:

    d_L   = StereoSGBM(left, right) at <= max_side px            (or a given left-view disparity)
            both views padded on the left by the search range     (the left strip gets matched too)
            5x5 median; holes stay holes (or fill_holes)               (median_px)
    d_R   = splat d_L into the right view, nearest surface wins   (x_r = x_l - d_L(x_l))
    seen  = right pixels some left pixel lands on (cracks of one pixel closed)
    right = seen ? left_stylized(x_r + d_R(x_r)) : right_stylized

Disparities are in pixels of the grid they are given on; ``scale_disparity`` converts grids.
Plain OpenCV/numpy: no rclpy.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Optional

import cv2
import numpy as np

from muon_ad_ros.core.errors import ConfigError, ImageFormatError
from muon_ad_ros.core.flow import small_gray, warp
from muon_ad_ros.core.side_worker import SideWorker

STEREO_MODES = ("independent", "consistent")
SGBM_MODES = {"sgbm": cv2.STEREO_SGBM_MODE_SGBM, "sgbm_3way": cv2.STEREO_SGBM_MODE_SGBM_3WAY,
              "hh": cv2.STEREO_SGBM_MODE_HH, "hh4": cv2.STEREO_SGBM_MODE_HH4}


@dataclass
class StereoConfig:
    # Longer side of the images StereoSGBM runs on (px): the network's usual input size (the stereo
    # node's max_side 640). On the 640x480 tuning pairs (docs/consistency.md) 320 px gave a stereo
    # difference of 4.0, 480 px 3.6, 640 px 3.05; the disparity then costs ~60 ms of CPU per pair.
    max_side: int = 640
    # Search range as a fraction of the image width. 0.15: a headset's eyes (~64 mm apart, ~90 deg
    # field of view) see a point 0.2 m away at ~15% of the width; the tuning pairs go up to 12.5%.
    # SGBM's time grows with the range (0.25 cost ~1.5x for the same stereo difference).
    max_disparity: float = 0.15
    block_size: int = 3                 # SGBM matching block (odd); 3 vs 5: 3.05 vs 3.14 on the tuning pairs
    uniqueness: int = 10                # SGBM uniqueness ratio (%): ambiguous matches become holes
    speckle_window: int = 50            # SGBM speckle filter: small disparity islands become holes
    speckle_range: int = 2
    # SGBM searches x - d for d < numDisparities, so it leaves the first numDisparities columns of the
    # left view unmatched (a quarter of the image at max_disparity 0.25), though most of that strip is
    # seen by the right camera. Padding both views on the left by the search range lets those pixels
    # match (a point the right camera sees has x - d >= 0, inside the real image).
    pad_left: bool = True
    sgbm_mode: str = "sgbm_3way"        # OpenCV StereoSGBM mode: sgbm, sgbm_3way, hh, hh4
    # Fill SGBM's holes from the farther row neighbour (fill_disparity_holes)? Off: a hole takes the
    # right view's own stylization. At 320 px without left padding filling cost more than it gained
    # (motorcycle, styles_v2: 5.3 -> 7.0); with the defaults it changes the stereo difference by 0.01
    # (tuning pairs 3.06 -> 3.05) but tears thin structures (handlebars) where the farther neighbour
    # is wrong, which a viewer sees.
    fill_holes: bool = False
    median_px: int = 5                  # median filter of the disparity (0 = off, 3 or 5): lone outliers
    soften_px: int = 2                  # seam between warped and own pixels, blurred over this radius
    overlap: bool = True                # disparity in a worker thread while the network runs (stylize_pair)

    def __post_init__(self):
        if self.max_side < 32:
            raise ConfigError(f"stereo max_side must be >= 32, got {self.max_side}")
        if not 0.0 < self.max_disparity <= 1.0:
            raise ConfigError(f"stereo max_disparity must be within (0, 1], got {self.max_disparity}")
        if self.block_size < 1 or self.block_size % 2 == 0:
            raise ConfigError(f"stereo block_size must be odd and positive, got {self.block_size}")
        if self.median_px not in (0, 3, 5):
            raise ConfigError(f"stereo median_px must be 0, 3 or 5, got {self.median_px}")
        if self.sgbm_mode not in SGBM_MODES:
            raise ConfigError(f"stereo sgbm_mode must be one of {', '.join(SGBM_MODES)}, got {self.sgbm_mode!r}")


def check_pair(left: np.ndarray, right: np.ndarray) -> None:
    for name, img in (("left", left), ("right", right)):
        if not isinstance(img, np.ndarray) or img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
            raise ImageFormatError(f"{name}: expected an HxWx3 uint8 RGB image, got {getattr(img, 'shape', img)}")
    if left.shape != right.shape:
        raise ImageFormatError(f"left {left.shape[1]}x{left.shape[0]} and right {right.shape[1]}x{right.shape[0]} "
                               "differ in size: a rectified pair has one size")


def sgbm_disparity(left_rgb: np.ndarray, right_rgb: np.ndarray, cfg: StereoConfig = StereoConfig()) -> np.ndarray:
    """Left-view disparity (float32, pixels of the *reduced* grid, NaN = no match) of a rectified pair,
    computed on gray images whose longer side is at most ``cfg.max_side``."""
    gl, gr = small_gray(left_rgb, cfg.max_side), small_gray(right_rgb, cfg.max_side)
    num = max(16, int(np.ceil(cfg.max_disparity * gl.shape[1] / 16.0)) * 16)
    pad = num if cfg.pad_left else 0
    if pad:
        gl, gr = (cv2.copyMakeBorder(g, 0, 0, pad, 0, cv2.BORDER_REPLICATE) for g in (gl, gr))
    b = cfg.block_size
    sgbm = cv2.StereoSGBM_create(minDisparity=0, numDisparities=num, blockSize=b, P1=8 * b * b, P2=32 * b * b,
                                 disp12MaxDiff=1, uniquenessRatio=cfg.uniqueness,
                                 speckleWindowSize=cfg.speckle_window, speckleRange=cfg.speckle_range,
                                 mode=SGBM_MODES[cfg.sgbm_mode])
    disp = sgbm.compute(gl, gr)[:, pad:].astype(np.float32) / 16.0   # [h,w], fixed point 4 bits
    disp[disp <= 0] = np.nan                                  # no match (SGBM marks it minDisparity - 1)
    return disp


def fill_disparity_holes(disp: np.ndarray) -> np.ndarray:
    """Fill NaN runs of a left-view disparity along each row with the smaller (farther) of the two
    valid neighbours. SGBM leaves holes where the right camera cannot see the point (occlusions:
    background, by definition) and where matching is ambiguous (flat regions: mostly smooth, so a
    neighbour is close); the background choice never pulls a foreground edge over the background."""
    h, w = disp.shape
    valid = np.isfinite(disp)
    cols = np.arange(w)[None, :]
    from_left = np.maximum.accumulate(np.where(valid, cols, -1), axis=1)          # [h,w] last valid col
    from_right = np.minimum.accumulate(np.where(valid, cols, w)[:, ::-1], axis=1)[:, ::-1]
    rows = np.arange(h)[:, None]
    left_val = np.where(from_left >= 0, disp[rows, np.clip(from_left, 0, w - 1)], np.nan)
    right_val = np.where(from_right < w, disp[rows, np.clip(from_right, 0, w - 1)], np.nan)
    filled = np.fmin(left_val, right_val)                                           # NaN-aware minimum
    return np.where(valid, disp, filled).astype(np.float32)


def median_disparity(disp: np.ndarray, ksize: int = 5) -> np.ndarray:
    """Median-filtered disparity (ksize 3 or 5; holes stay holes, and count as 0 for their
    neighbours). Removes the lone wrong matches SGBM leaves on repetitive or faint texture, which the
    warp would otherwise turn into misplaced specks of the other eye's paint."""
    if ksize <= 1:
        return disp
    out = cv2.medianBlur(np.nan_to_num(disp, nan=0.0).astype(np.float32), ksize)
    return np.where(np.isfinite(disp), out, np.nan).astype(np.float32)


def scale_disparity(disp: np.ndarray, h: int, w: int) -> np.ndarray:
    """A disparity map resized to HxW, its values scaled to the new pixel width. Upscaling is
    bilinear (no staircase on slanted surfaces; a NaN spreads to its neighbours, so holes grow a
    little rather than mixing with valid values); downscaling takes the nearest sample."""
    dh, dw = disp.shape
    if (dh, dw) == (h, w):
        return disp
    interp = cv2.INTER_LINEAR if h * w > dh * dw else cv2.INTER_NEAREST
    return cv2.resize(disp, (w, h), interpolation=interp) * np.float32(w / dw)


def right_view_disparity(disp_left: np.ndarray) -> np.ndarray:
    """Right-view disparity from a left-view one by forward splatting (x_r = x_l - d), the nearest
    surface (largest disparity) winning; NaN where no left pixel lands (occluded in the left view).
    One-pixel cracks from rounding are closed from their neighbours."""
    h, w = disp_left.shape
    valid = np.isfinite(disp_left) & (disp_left > 0)
    ys, xs = np.nonzero(valid)
    d = disp_left[ys, xs]
    xr = np.rint(xs - d).astype(np.int64)
    inside = (xr >= 0) & (xr < w)
    out = np.full(h * w, -1.0, np.float32)
    np.maximum.at(out, ys[inside] * w + xr[inside], d[inside])
    out = out.reshape(h, w)
    hole = out < 0
    left_n = np.roll(out, 1, axis=1)
    right_n = np.roll(out, -1, axis=1)
    crack = hole & (left_n > 0) & (right_n > 0) & (np.abs(left_n - right_n) <= 1.0)
    crack[:, 0] = crack[:, -1] = False
    out[crack] = np.minimum(left_n, right_n)[crack]
    out[out < 0] = np.nan
    return out


def warp_left_to_right(left_img: np.ndarray, disp_right: np.ndarray) -> np.ndarray:
    """The left image resampled onto the right view: right(x) = left(x + d_R(x)) (NaN d -> x)."""
    h, w = disp_right.shape
    flow = np.zeros((h, w, 2), np.float32)
    flow[..., 0] = np.nan_to_num(disp_right, nan=0.0)
    return warp(left_img, flow)


def warp_right_to_left(right_img: np.ndarray, disp_left: np.ndarray) -> np.ndarray:
    """The right image resampled onto the left view: left(x) = right(x - d_L(x)) (NaN d -> x)."""
    h, w = disp_left.shape
    flow = np.zeros((h, w, 2), np.float32)
    flow[..., 0] = -np.nan_to_num(disp_left, nan=0.0)
    return warp(right_img, flow)


def consistent_right(left_out: np.ndarray, right_own: np.ndarray, disp_right: np.ndarray,
                     soften_px: int = 2) -> tuple[np.ndarray, float]:
    """Right output: the left output warped by the right-view disparity (same size as the images)
    where it is defined, the right view's own stylization elsewhere, with a soft seam.
    Returns (image, fraction of pixels taken from the left view)."""
    h, w = disp_right.shape
    seen = np.isfinite(disp_right).astype(np.float32)
    weight = seen
    if soften_px > 0:
        k = 2 * soften_px + 1
        weight = cv2.GaussianBlur(seen, (k, k), 0) * seen   # fades towards holes, never into them
    warped = warp_left_to_right(left_out, disp_right)
    out = cv2.blendLinear(warped, right_own, weight, 1.0 - weight)
    return out, float(seen.mean())


@dataclass
class StereoResult:
    left: np.ndarray                   # HxWx3 uint8 RGB
    right: np.ndarray
    timings: dict = field(default_factory=dict)   # ms: left, right, disparity, warp, total
    from_left: float = 0.0             # fraction of right pixels carried over from the left view


class StereoStylizer:
    """Stylize rectified pairs with one Stylizer; ``mode`` 'independent' or 'consistent'."""

    def __init__(self, stylizer, mode: str = "consistent", config: Optional[StereoConfig] = None):
        self.stylizer = stylizer
        self.config = config or StereoConfig()
        self.mode = mode
        self._worker = SideWorker("stereo_disparity")   # the disparity's thread (overlap)

    @property
    def mode(self) -> str:
        return self._mode

    @mode.setter
    def mode(self, value: str) -> None:
        if value not in STEREO_MODES:
            raise ConfigError(f"stereo mode must be one of {', '.join(STEREO_MODES)}, got {value!r}")
        self._mode = value

    def stylize_pair(self, left: np.ndarray, right: np.ndarray,
                     disparity: Optional[np.ndarray] = None) -> StereoResult:
        """Stylize a rectified pair. ``disparity``: an optional left-view disparity map (any size,
        pixels of its own grid, NaN or <= 0 = unknown), e.g. from stereo_image_proc; else SGBM.
        In consistent mode the disparity depends on the inputs only, so (``config.overlap``) it is
        computed in a worker thread while the network stylizes the two eyes (OpenCV and ONNX Runtime
        release the GIL); timings['disparity'] is its own time, 'disparity_wait' what it added."""
        check_pair(left, right)
        consistent = self._mode == "consistent"
        if consistent and disparity is not None:
            disparity = np.asarray(disparity, dtype=np.float32)
            if disparity.ndim != 2:
                raise ImageFormatError(f"disparity must be an HxW map, got shape {disparity.shape}")
        job = None
        if consistent:
            args = (left, right, self.config, disparity)
            job = self._worker.submit(right_disparity, *args) if self.config.overlap else right_disparity(*args)
        t0 = time.perf_counter()
        left_out = self.stylizer.stylize(left).image
        t1 = time.perf_counter()
        right_own = self.stylizer.stylize(right).image
        t2 = time.perf_counter()
        timings = {"left": (t1 - t0) * 1e3, "right": (t2 - t1) * 1e3, "disparity": 0.0, "warp": 0.0}
        if not consistent:
            timings["total"] = (t2 - t0) * 1e3
            return StereoResult(left_out, right_own, timings)
        disp_right, disp_ms = job.result() if self.config.overlap else job
        t3 = time.perf_counter()
        right_out, from_left = consistent_right(left_out, right_own, disp_right, self.config.soften_px)
        t4 = time.perf_counter()
        timings.update(disparity=disp_ms, disparity_wait=(t3 - t2) * 1e3, warp=(t4 - t3) * 1e3,
                       total=(t4 - t0) * 1e3)
        if not self.config.overlap:
            timings["total"] += disp_ms
        return StereoResult(left_out, right_out, timings, from_left)


def right_disparity(left: np.ndarray, right: np.ndarray, cfg: StereoConfig,
                    disparity: Optional[np.ndarray] = None) -> tuple[np.ndarray, float]:
    """Right-view disparity at the images' size (NaN where the left view does not see the point)
    from SGBM or a given left-view disparity, with holes filled and median-filtered per ``cfg``.
    Returns (HxW float32, milliseconds it took)."""
    t0 = time.perf_counter()
    h, w = left.shape[:2]
    if disparity is None:
        disp_small = sgbm_disparity(left, right, cfg)
    else:
        sh, sw = small_gray(left, cfg.max_side).shape
        disp_small = scale_disparity(np.where(disparity > 0, disparity, np.nan), sh, sw)
    if cfg.fill_holes:
        disp_small = fill_disparity_holes(disp_small)
    disp_small = median_disparity(disp_small, cfg.median_px)
    disp_right = scale_disparity(right_view_disparity(disp_small), h, w)
    return disp_right, (time.perf_counter() - t0) * 1e3
