"""Dense-correspondence helpers shared by the temporal filter, the stereo warp and the metrics.

Plain OpenCV/numpy (no rclpy). Flows are HxWx2 float32 (dx, dy) in pixels of the grid they are
defined on; ``warp(image, flow)`` samples ``image`` at ``p + flow(p)``.
"""
from __future__ import annotations

import functools

import cv2
import numpy as np


@functools.lru_cache(maxsize=8)
def pixel_grid_xy(h: int, w: int) -> np.ndarray:
    """HxWx2 float32 (x, y) coordinates of an HxW image (cached per size: a video asks for the same
    grid every frame; read-only, never modify it)."""
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    grid = np.dstack([gx, gy])
    grid.flags.writeable = False
    return grid


def warp(image: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """Sample image at p + flow(p): brings the frame the flow points to onto the flow's grid."""
    h, w = flow.shape[:2]
    # One HxWx2 map (a single contiguous add) instead of two strided x/y maps: remap takes it as is.
    return cv2.remap(image, pixel_grid_xy(h, w) + flow, None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def _squared_norm(flow: np.ndarray) -> np.ndarray:
    fx, fy = cv2.split(flow)  # contiguous planes: numpy's sum over a 2-long last axis is ~10x slower
    return fx * fx + fy * fy


def forward_backward_mask(flow_ab: np.ndarray, flow_ba: np.ndarray, alpha1: float = 0.01,
                          alpha2: float = 0.5) -> np.ndarray:
    """HxW bool: pixels of frame a whose flow into b comes back (Sundaram et al. 2010) and lands
    inside b. Occluded pixels and flow failures break the round trip:
    |f + b|^2 > alpha1 * (|f|^2 + |b|^2) + alpha2 marks a pixel as not matched."""
    h, w = flow_ab.shape[:2]
    back = warp(flow_ba, flow_ab)                             # b->a flow at p + f(p)
    round_trip = flow_ab + back                               # ~0 where the pixel is visible in both
    consistent = _squared_norm(round_trip) <= alpha1 * (_squared_norm(flow_ab) + _squared_norm(back)) + alpha2
    tx, ty = cv2.split(pixel_grid_xy(h, w) + flow_ab)         # where each pixel lands in b
    inside = (tx >= 0) & (tx <= w - 1) & (ty >= 0) & (ty <= h - 1)
    return consistent & inside


def small_gray(rgb: np.ndarray, max_side: int) -> np.ndarray:
    """HxWx3 uint8 RGB -> grayscale uint8 with the longer side at most ``max_side`` (area filter)."""
    gray = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY)
    h, w = gray.shape
    if max_side and max(h, w) > max_side:
        s = max_side / max(h, w)
        gray = cv2.resize(gray, (max(8, round(w * s)), max(8, round(h * s))), interpolation=cv2.INTER_AREA)
    return gray


def upscale_flow(flow: np.ndarray, h: int, w: int) -> np.ndarray:
    """A flow of a smaller grid resized to HxW, its vectors scaled to the new pixel size."""
    fh, fw = flow.shape[:2]
    if (fh, fw) == (h, w):
        return flow
    # Scale the vectors on the small grid (fewer pixels), then resize.
    return cv2.resize(flow * np.float32([w / fw, h / fh]), (w, h), interpolation=cv2.INTER_LINEAR)
