"""Synthetic rectified stereo pairs with exact disparity, for tuning and testing the disparity path.

The one real pair with ground truth we have (Middlebury motorcycle, scikit-image) is the held-out
measure of docs/consistency.md, so parameters are chosen on pairs made here instead. A pair is a
layered scene: a slanted background plane and a few nearer slanted planar objects (ellipses and
polygons), each textured with a real photo. Both eyes are *rendered* from the scene (not one eye
warped into the other), so occlusions are real: the right eye sees background the left one does not.
Scenes are rendered at 2x and area-downsampled (mixed pixels at object edges, as a camera has),
then each eye gets its own gain, offset and sensor noise.

    left(x, y)  = top layer at x                   top = the largest disparity (nearest) covering it
    right(x, y) = top layer at x_l, x_l - d(x_l, y) = x     d(x, y) = a + b x + c y per layer
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import cv2
import numpy as np


@dataclass
class SynthConfig:
    height: int = 240
    width: int = 320
    objects: int = 4                    # nearer planar objects in front of the background plane
    background_disparity: tuple = (0.01, 0.04)   # fraction of the width
    object_disparity: tuple = (0.04, 0.10)       # fraction of the width
    slant: float = 0.25                 # largest relative change of a plane's disparity across the image
    noise: float = 2.0                  # sensor noise sigma (0-255), independent per eye
    gain: float = 0.04                  # per-eye gain differs by up to this fraction


def _texture(photo: np.ndarray, h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """A random crop of ``photo`` resized to HxW (float32 RGB)."""
    ph, pw = photo.shape[:2]
    s = rng.uniform(0.5, 1.0)
    ch, cw = max(8, int(ph * s)), max(8, int(pw * s))
    y0, x0 = rng.integers(0, ph - ch + 1), rng.integers(0, pw - cw + 1)
    crop = photo[y0:y0 + ch, x0:x0 + cw]
    return cv2.resize(crop, (w, h), interpolation=cv2.INTER_AREA if ch > h else cv2.INTER_LINEAR).astype(np.float32)


def _plane(rng: np.random.Generator, lo: float, hi: float, w: int, h: int, slant: float):
    """Disparity plane coefficients (a, b, c): d = a + b x + c y, in pixels of a W-wide image."""
    a = rng.uniform(lo, hi) * w
    b = rng.uniform(-slant, slant) * a / w
    c = rng.uniform(-slant, slant) * a / h
    return a, b, c


def _mask(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """HxW float32 mask of one object: an ellipse or a convex-ish polygon somewhere in the frame."""
    m = np.zeros((h, w), np.uint8)
    cx, cy = rng.uniform(0.15, 0.85) * w, rng.uniform(0.15, 0.85) * h
    r = rng.uniform(0.08, 0.25) * min(h, w)
    if rng.random() < 0.5:
        axes = (int(r), int(r * rng.uniform(0.4, 1.0)))
        cv2.ellipse(m, (int(cx), int(cy)), axes, float(rng.uniform(0, 180)), 0, 360, 1, -1)
    else:
        n = int(rng.integers(3, 7))
        ang = np.sort(rng.uniform(0, 2 * np.pi, n))
        rad = r * rng.uniform(0.6, 1.3, n)
        pts = np.stack([cx + rad * np.cos(ang), cy + rad * np.sin(ang)], 1).astype(np.int32)
        cv2.fillPoly(m, [pts], 1)
    return m.astype(np.float32)


def _render(layers, h: int, w: int, eye: str):
    """Composite ``layers`` [(texture HxWx3, mask HxW, (a, b, c))] for one eye -> (image, disparity)."""
    xs, ys = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    image = np.zeros((h, w, 3), np.float32)
    depth = np.full((h, w), -np.inf, np.float32)       # disparity of the surface shown (z-buffer)
    for i, (tex, mask, (a, b, c)) in enumerate(layers):
        if eye == "left":
            xl = xs
        else:                                            # x_l - (a + b x_l + c y) = x_r
            xl = (xs + a + c * ys) / (1.0 - b)
        d = a + b * xl + c * ys
        border = cv2.BORDER_REPLICATE if i == 0 else cv2.BORDER_CONSTANT   # the background goes on
        cover = cv2.remap(mask, xl, ys, cv2.INTER_NEAREST, borderMode=border, borderValue=0)
        col = cv2.remap(tex, xl, ys, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        top = (cover > 0.5) & (d > depth)
        image[top] = col[top]
        depth[top] = d[top]
    return image, depth


def synthetic_pair(photos: Sequence[np.ndarray], seed: int = 0, config: SynthConfig = SynthConfig()):
    """(left, right, disparity): HxWx3 uint8 RGB views of a random layered scene textured with
    ``photos`` (RGB uint8, any sizes) and the left view's true disparity (float32 px, everywhere
    defined; metrics.left_visible_in_right tells which pixels the right eye sees)."""
    rng = np.random.default_rng(seed)
    h2, w2 = 2 * config.height, 2 * config.width     # rendered at 2x, area-downsampled
    pick = lambda: photos[int(rng.integers(len(photos)))]   # noqa: E731
    layers = [(_texture(pick(), h2, w2, rng), np.ones((h2, w2), np.float32),
               _plane(rng, *config.background_disparity, w2, h2, config.slant))]
    planes = sorted(_plane(rng, *config.object_disparity, w2, h2, config.slant) for _ in range(config.objects))
    for plane in planes:                                 # farther first; the z-buffer decides anyway
        layers.append((_texture(pick(), h2, w2, rng), _mask(rng, h2, w2), plane))
    views = []
    for eye in ("left", "right"):
        img, d = _render(layers, h2, w2, eye)
        img = cv2.resize(img, (config.width, config.height), interpolation=cv2.INTER_AREA)
        img = img * (1.0 + rng.uniform(-config.gain, config.gain)) + rng.normal(0, config.noise, img.shape)
        views.append((np.clip(img, 0, 255) + 0.5).astype(np.uint8))
        if eye == "left":
            disp = cv2.resize(d, (config.width, config.height), interpolation=cv2.INTER_NEAREST) / 2.0
    return views[0], views[1], disp.astype(np.float32)
