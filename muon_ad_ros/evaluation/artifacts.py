"""Measures of what a viewer sees as *defects* of a stylizer, on HxWx3 uint8 RGB frames.

Each has a reference value on photos, so a number can be read without a second image:

* ``checkerboard_rms``: RMS of the 2x2 checkerboard component of the luma, in levels (0-255):
  per 2x2 cell (a - b - c + d) / 4. A sub-pixel pattern (pixel-shuffle heads, strided transposed
  convs) shows up here; a photo is ~2.
* ``lattice_ratio``: spectral power of the luma at multiples of 1/``period`` px^-1 (rows and columns)
  over the median power of the neighbouring frequencies. A pattern locked to an 8/16-px grid (a
  coarse bottleneck that paints per cell) makes peaks there; 1 = no peak, a photo ~1.
* ``border_band``: the largest, over the four sides, mean absolute RGB difference (levels) between
  the outermost ``width``-px strip and the strip just inside it, minus the same on the input: what a
  stylizer adds at the frame border (a coloured band), 0 = nothing added.
* ``shift_error``: mean absolute difference (levels) between stylize(shift(x)) and shift(stylize(x))
  on the interior, for an integer shift: 0 = the output only moves with the input (no pattern locked
  to the pixel grid, the main cause of flicker on a moving camera).
"""
from __future__ import annotations

import numpy as np

from .metrics import luminance


def checkerboard_rms(rgb: np.ndarray) -> float:
    """RMS (0-255 levels) of the per-2x2-cell checkerboard component of the luma."""
    y = luminance(rgb) * 255.0
    h, w = (y.shape[0] // 2) * 2, (y.shape[1] // 2) * 2
    y = y[:h, :w]
    c = (y[0::2, 0::2] - y[0::2, 1::2] - y[1::2, 0::2] + y[1::2, 1::2]) / 4.0
    return float(np.sqrt(np.mean(c ** 2)))


def _axis_spectrum(y: np.ndarray, axis: int) -> np.ndarray:
    """Mean power spectrum of the luma along one axis (Hann-windowed, mean removed), bins 0..n/2."""
    n = y.shape[axis]
    window = np.hanning(n)
    lines = np.moveaxis(y, axis, -1)
    lines = (lines - lines.mean(axis=-1, keepdims=True)) * window
    return (np.abs(np.fft.rfft(lines, axis=-1)) ** 2).mean(axis=0)


def lattice_ratio(rgb: np.ndarray, period: int = 8, neighbours: int = 4) -> float:
    """Mean over rows/columns and harmonics k/period (k = 1..period/2) of the power at that frequency
    over the median power of the ``neighbours`` bins on each side (the adjacent bin excluded: a
    window's leakage). 1 = no periodic pattern."""
    y = luminance(rgb)
    ratios = []
    for axis in (0, 1):
        spec = _axis_spectrum(y, axis)
        n = y.shape[axis]
        for k in range(1, period // 2 + 1):
            b = int(round(k * n / period))
            around = [i for i in range(b - neighbours - 1, b + neighbours + 2)
                      if abs(i - b) > 1 and 0 < i < len(spec)]
            if b >= len(spec) or not around:
                continue
            peak = spec[max(0, b - 1):b + 2].max()  # the lattice's frequency may fall between two bins
            ratios.append(peak / max(np.median(spec[around]), 1e-12))
    return float(np.mean(ratios))


def _band(rgb: np.ndarray, width: int) -> float:
    x = rgb.astype(np.float32)
    strips = [
        (x[:width], x[width:2 * width]), (x[-width:], x[-2 * width:-width]),
        (x[:, :width], x[:, width:2 * width]), (x[:, -width:], x[:, -2 * width:-width]),
    ]
    return max(float(np.abs(outer.mean(axis=(0, 1)) - inner.mean(axis=(0, 1))).mean()) for outer, inner in strips)


def border_band(rgb_in: np.ndarray, rgb_out: np.ndarray, width: int = 8) -> float:
    """Largest side's colour step (levels) from the outer strip to the next, beyond the input's own."""
    if rgb_out.shape != rgb_in.shape:
        raise ValueError(f"border_band needs frames of one size, got {rgb_in.shape} and {rgb_out.shape}")
    return max(0.0, _band(rgb_out, width) - _band(rgb_in, width))


def shift_error(stylize, rgb: np.ndarray, shift: int, margin: int = 16, crop: int = 16) -> float:
    """Mean |stylize(window at (s, s)) - stylize(window at (0, 0)) moved by s| (levels) on the interior.

    Both windows have the same size (the frame less ``crop`` px per axis), so a stylizer that resizes
    to a size policy treats them alike and only the content's position differs."""
    if not 0 < shift <= crop:
        raise ValueError(f"shift must be in 1..{crop}, got {shift}")
    h, w = rgb.shape[0] - crop, rgb.shape[1] - crop
    a = stylize(np.ascontiguousarray(rgb[:h, :w])).astype(np.float32)
    b = stylize(np.ascontiguousarray(rgb[shift:shift + h, shift:shift + w])).astype(np.float32)
    # b[i, j] shows the content of a[i + shift, j + shift]
    return float(np.abs(b[margin:h - margin - shift, margin:w - margin - shift]
                        - a[margin + shift:h - margin, margin + shift:w - margin]).mean())
