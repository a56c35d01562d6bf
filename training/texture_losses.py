"""The loss terms of texture synthesis (texture.py) besides the AD loss: each compares the output
image with the exemplar through a statistic the mobilenet teacher's AD taps (/8, /16) see poorly.

* sliced_wasserstein on pixel_neighbourhoods: the distribution of 3x3 colour patches (palette,
  local contrast, grain at the pixel scale);
* random_filter_grams: second-order statistics of random rectified filters at 1, 1/2, 1/4 scale
  (the 2-16 px contrast);
* line_statistics: the distribution of the luma's ridges integrated along long straight segments
  at each orientation (LineTargets): how long and how straight the exemplar's lines run, which no
  local statistic holds (gimp_ice's scratches cross the whole exemplar; matched only locally they
  come out short and crinkled).

sample_queries subsamples the AD loss's query tokens. Shapes: images [1,3,H,W] in [0,1].
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from .teachers.base import LayerQKV
from .texture_colour import gaussian_blur


def quantiles_at(sorted_ref: Tensor, n: int) -> Tensor:
    """sorted_ref [M, ...] ascending along dim 0 -> [n, ...]: its values at n evenly spaced ranks, to
    be compared with n sorted samples (the 1-D optimal transport between the two distributions)."""
    if sorted_ref.shape[0] == n:
        return sorted_ref
    idx = torch.linspace(0, sorted_ref.shape[0] - 1, n, device=sorted_ref.device).round().long()
    return sorted_ref.index_select(0, idx)


def sliced_wasserstein(x: Tensor, y: Tensor, projections: int, gen: torch.Generator) -> Tensor:
    """Sliced Wasserstein-1 between point sets x [N,C] and y [M,C] along random unit directions:
    mean |sorted(x.d) - quantiles of sorted(y.d)|. Matches the whole distribution (here: RGB
    colours), not only its mean and variance."""
    d = torch.randn(x.shape[1], projections, generator=gen).to(x)
    d = d / d.norm(dim=0, keepdim=True)
    px, _ = torch.sort(x @ d, dim=0)  # [N,P]
    py, _ = torch.sort(y @ d, dim=0)  # [M,P]
    return (px - quantiles_at(py, px.shape[0])).abs().mean()


def pixel_neighbourhoods(img: Tensor, wrap: bool = False, patch: int = 0) -> Tensor:
    """img [1,3,H,W] -> [N, 9]: each pixel's colour with its right and lower neighbours.
    Their joint distribution carries the colours and the local contrast (a speckle of colour noise
    the taps do not see shows up here as differences the exemplar does not have). `wrap`: the last
    column/row pairs with the first (a tileable output: the wrap-around pairs are held to the
    exemplar's statistics like every other pair, else the seam alone stays unconstrained).
    `patch` k >= 2: every k x k patch instead ([N, 3k^2]), the local texture at the pixel scale."""
    x = img[0]
    if patch >= 2:
        h, w = x.shape[-2:]
        if wrap:
            v = torch.cat([torch.roll(x, (-dy, -dx), dims=(1, 2)) for dy in range(patch) for dx in range(patch)])
        else:
            v = torch.cat([x[:, dy:h - patch + 1 + dy, dx:w - patch + 1 + dx]
                           for dy in range(patch) for dx in range(patch)])  # [3k^2,H-k+1,W-k+1]
        return v.flatten(1).T
    if wrap:
        v = torch.cat([x, torch.roll(x, -1, dims=2), torch.roll(x, -1, dims=1)], dim=0)  # [9,H,W]
    else:
        v = torch.cat([x[:, :-1, :-1], x[:, :-1, 1:], x[:, 1:, :-1]], dim=0)  # [9,H-1,W-1]
    return v.flatten(1).T


def random_filter_grams(img: Tensor, ex: Tensor, scales: int, channels: int, kernel: int, wrap: bool,
                        gen: torch.Generator) -> Tensor:
    """Mean relative Frobenius distance between the Gram matrices of random ReLU filter responses of
    img [1,3,H,W] and ex [1,3,h,w], at `scales` pyramid levels (each 2x average-pooled).

    The teacher's first convolution has stride 2 and its taps are deep: it is blind to grain and
    weak at 2-16 px. A bank of random k x k filters with a rectifier sees the second-order and
    rectified statistics of every neighbourhood at that scale (Ustyuzhaninov et al. 2016: one random
    layer is enough to synthesise a texture). New filters are drawn at every call, so over the
    optimisation the term matches these statistics for random filters in general, not for one bank.
    The exemplar is filtered without padding (its border is not texture); the output circularly
    when it wraps, else without padding too."""
    x, e = img, ex
    loss, used = img.new_zeros(()), 0
    for s in range(scales):
        if s:
            x, e = F.avg_pool2d(x, 2), F.avg_pool2d(e, 2)
        if min(e.shape[-2:]) < kernel or min(x.shape[-2:]) < kernel:
            break
        w = torch.randn(channels, 3, kernel, kernel, generator=gen).to(img) * (2.0 / (3 * kernel * kernel)) ** 0.5
        b = torch.randn(channels, generator=gen).to(img) * 0.05
        r = kernel // 2
        mean = e.mean(dim=(2, 3), keepdim=True)  # the exemplar's mean colour: the filters see contrast
        xi = F.pad(x - mean, (r, r, r, r), mode="circular") if wrap else x - mean
        fx = torch.relu(F.conv2d(xi, w, b)).flatten(2)[0]  # [C,N]
        fe = torch.relu(F.conv2d(e - mean, w, b)).flatten(2)[0]  # [C,M]
        gx, ge = fx @ fx.T / fx.shape[1], fe @ fe.T / fe.shape[1]  # [C,C]
        loss, used = loss + (gx - ge).norm() / (ge.norm() + 1e-8), used + 1
    return loss / max(1, used)


def sample_queries(layers: list[LayerQKV], max_queries: int | None, gen: torch.Generator) -> list[LayerQKV]:
    """The same layers with a random subset of query tokens (keys/values keep every token)."""
    out = []
    for x in layers:
        n = x.q.shape[2]
        if max_queries is None or n <= max_queries:
            out.append(x)
            continue
        idx = torch.randperm(n, generator=gen)[:max_queries].to(x.q.device)
        out.append(LayerQKV(x.name, x.q.index_select(2, idx), x.k, x.v, x.height, x.width))
    return out


# ----------------------------------------------------------------------------- long straight lines


def ridges(img: Tensor, sigma: float, wrap: bool) -> Tensor:
    """img [1,3,H,W] -> [1,1,H,W]: the luma minus its Gaussian blur (sigma px): thin bright lines
    positive, dark ones negative, the slow shading of the surface removed."""
    y = img.mean(dim=1, keepdim=True)
    return y - gaussian_blur(y, sigma, wrap)


def line_responses(img: Tensor, length: int, angles: int, sigma: float, wrap: bool) -> Tensor:
    """img [1,3,H,W] -> [angles, N]: the ridges' mean along a straight centred segment of about
    `length` px at each of `angles` orientations (0 = horizontal, then anticlockwise steps of
    pi/angles). A long straight bright line scores high at its own orientation all along it; a
    crinkled or short one scores low at every orientation.

    The segment is built by doubling: 3 px, then the sum of two copies shifted by half its length
    either way, so 2 + 2 log2(length/3) rolls (10 for 48 px) instead of `length`. `wrap`: the image
    is a torus (N = H*W); else only positions whose segment lies inside at every orientation are kept
    (N = (H-2e)(W-2e), e the largest half-extent)."""
    r = ridges(img, sigma, wrap)  # [1,1,H,W]
    doublings = max(0, round(math.log2(max(3, length) / 3)))
    out, extents = [], []
    for a in range(angles):
        theta = math.pi * a / angles
        dy, dx = -math.sin(theta), math.cos(theta)  # image rows grow downwards
        step = (round(dy), round(dx))
        acc = r + torch.roll(r, step, dims=(2, 3)) + torch.roll(r, (-step[0], -step[1]), dims=(2, 3))
        n, extent = 3, max(abs(step[0]), abs(step[1]))
        for _ in range(doublings):
            sy, sx = round(n * dy / 2), round(n * dx / 2)
            acc = torch.roll(acc, (sy, sx), dims=(2, 3)) + torch.roll(acc, (-sy, -sx), dims=(2, 3))
            n, extent = 2 * n, extent + max(abs(sy), abs(sx))
        out.append(acc[0, 0] / n)
        extents.append(extent)
    out = torch.stack(out)  # [A,H,W]
    if not wrap:  # the same positions at every orientation: those the longest reach leaves inside
        e = max(extents)
        out = out[:, e:out.shape[-2] - e, e:out.shape[-1] - e]
    return out.flatten(1)


@dataclass
class LineTargets:
    """The exemplar's line statistics at one level: per length, its sorted responses [angles, M]
    and their overall std (the loss's scale)."""

    lengths: tuple
    sorted_responses: list
    scales: list

    @classmethod
    def of(cls, ex: Tensor, lengths, angles: int, sigma: float, min_valid: int = 16) -> "LineTargets":
        """Lengths (px) whose segment leaves the exemplar fewer than min_valid px of positions per
        side are skipped (too few samples to say how lines run at that length)."""
        kept, sorted_responses, scales = [], [], []
        with torch.no_grad():
            for length in lengths:
                length = int(round(length))
                if length < 3 or min(ex.shape[-2:]) - length < min_valid:
                    continue
                resp = line_responses(ex, length, angles, sigma, wrap=False)  # [A,M]
                kept.append(length)
                sorted_responses.append(resp.sort(dim=1).values)
                scales.append(float(resp.std()) + 1e-8)
        return cls(tuple(kept), sorted_responses, scales)


def line_statistics(img: Tensor, targets: LineTargets, angles: int, sigma: float, wrap: bool,
                    gen: torch.Generator, max_samples: int = 16384) -> Tensor:
    """Mean over lengths and orientations of the 1-D Wasserstein-1 distance between the output's
    line responses and the exemplar's, in units of the exemplar's response std. Matched per
    orientation, so the exemplar's dominant directions are kept; the distribution's upper tail is
    its long straight lines. A random sample of `max_samples` positions keeps the sort cheap."""
    loss = img.new_zeros(())
    for length, ref, scale in zip(targets.lengths, targets.sorted_responses, targets.scales):
        resp = line_responses(img, length, angles, sigma, wrap)  # [A,N]
        if resp.shape[1] > max_samples:
            resp = resp.index_select(1, torch.randperm(resp.shape[1], generator=gen)[:max_samples].to(img.device))
        x = resp.sort(dim=1).values  # [A,N]
        loss = loss + (x - quantiles_at(ref.T, x.shape[1]).T).abs().mean() / scale
    return loss / max(1, len(targets.lengths))
