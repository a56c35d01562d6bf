"""The loss terms of texture synthesis (texture.py) besides the AD loss: each compares the output
image with the exemplar through a statistic the mobilenet teacher's AD taps (/8, /16) see poorly.

* sliced_wasserstein on pixel_neighbourhoods: the distribution of 3x3 colour patches (palette,
  local contrast, grain at the pixel scale);
* random_filter_grams: second-order statistics of random rectified filters at 1, 1/2, 1/4 scale
  (the 2-16 px contrast).

sample_queries subsamples the AD loss's query tokens. Shapes: images [1,3,H,W] in [0,1].
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .teachers.base import LayerQKV


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
