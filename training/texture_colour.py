"""Colour handling of texture synthesis (texture.py): what the teacher's deep taps do not see.

* gaussian_blur: the separable Gaussian of smooth_chroma and of texture_losses.ridges;
* smooth_chroma: pixel optimisation through a strided CNN leaves single-pixel colour speckle; the
  final chroma is blurred (the luma keeps its detail);
* match_colours: the output's RGB distribution moved onto the exemplar's (iterative 1-D optimal
  transport along random rotations), the palette exactly, the layout untouched;
* is_grey / match_grey: a greyscale exemplar stored as RGB gives a grey output with its grey levels.

Images are [1,3,H,W] float in [0,1].
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor


def gaussian_blur(x: Tensor, sigma: float, wrap: bool) -> Tensor:
    """x [B,C,H,W], each channel blurred by a separable Gaussian of `sigma` px (radius ceil(2 sigma));
    `wrap`: the image is a torus (circular padding), else its border is replicated. Differentiable."""
    r = max(1, math.ceil(2 * sigma))
    k = torch.exp(-torch.arange(-r, r + 1, dtype=x.dtype) ** 2 / (2 * sigma ** 2))
    k = (k / k.sum()).to(x.device)
    n, mode = x.shape[1], "circular" if wrap else "replicate"
    x = F.conv2d(F.pad(x, (r, r, 0, 0), mode=mode), k.view(1, 1, 1, -1).expand(n, 1, 1, -1), groups=n)
    return F.conv2d(F.pad(x, (0, 0, r, r), mode=mode), k.view(1, 1, -1, 1).expand(n, 1, -1, 1), groups=n)


def smooth_chroma(img: Tensor, sigma: float, wrap: bool, luma: bool = False) -> Tensor:
    """img [1,3,H,W]: the chroma (YCbCr Cb, Cr; and the luma if `luma`) Gaussian-blurred. Pixel
    optimisation through a strided CNN leaves single-pixel colour speckle the taps cannot see; real
    surfaces' colour varies smoothly at that scale, their detail is in the luma. Before a level is
    upsampled all channels are smoothed: upsampled speckle would become 2x2 blocks on the stride grid."""
    if sigma <= 0:
        return img
    m = img.new_tensor([[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]])
    ycc = torch.einsum("ij,bjhw->bihw", m, img)  # [1,3,H,W]
    first = 0 if luma else 1
    c = gaussian_blur(ycc[:, first:], sigma, wrap)
    return torch.einsum("ij,bjhw->bihw", torch.linalg.inv(m), torch.cat([ycc[:, :first], c], 1)).clamp(0, 1)


def is_grey(ex: Tensor, tolerance: float) -> bool:
    """ex [1,3,h,w]: True when 99 % of its pixels have channels that agree within `tolerance` (a
    greyscale photo stored as RGB; the 1 % spares JPEG ringing). Its synthesis must be grey too:
    the teacher and the colour terms leave a faint tint that moves grey pixels off the grey axis."""
    spread = (ex.amax(dim=1) - ex.amin(dim=1)).flatten()  # [h*w]
    return bool(spread.kthvalue(max(1, math.ceil(0.99 * spread.numel()))).values <= tolerance)


def transfer_1d(x: Tensor, y: Tensor) -> Tensor:
    """x [N,C], y [M,C]: each column of x mapped through the 1-D optimal transport onto the same
    column of y (x's sorted values -> y's quantiles at x's ranks; ties broken by position). The
    output has y's marginal distributions exactly (up to interpolation) and x's rank order."""
    q = torch.linspace(0, 1, x.shape[0], dtype=y.dtype)
    order = x.argsort(dim=0)
    sy = y.sort(dim=0).values  # [M,C]
    pos = q * (sy.shape[0] - 1)
    lo = pos.floor().long().clamp(max=sy.shape[0] - 1)
    hi = (lo + 1).clamp(max=sy.shape[0] - 1)
    w = (pos - lo)[:, None]
    target = sy[lo] * (1 - w) + sy[hi] * w  # y's quantiles at x's ranks [N,C]
    return torch.empty_like(target).scatter_(0, order, target)


def match_colours(img: Tensor, ex: Tensor, iterations: int, gen: torch.Generator) -> Tensor:
    """img [1,3,H,W] with its RGB distribution moved onto the exemplar's [1,3,h,w] (iterative
    distribution transfer, Pitie et al. 2005): in a random rotation of RGB, each axis is mapped
    through the 1-D optimal transport (sorted values -> the exemplar's quantiles). Each pixel moves
    by the least amount that gives the exemplar's palette exactly; the layout is untouched."""
    x = img[0].flatten(1).T.double()  # [N,3]
    y = ex[0].flatten(1).T.double()  # [M,3]
    for _ in range(iterations):
        rot, _ = torch.linalg.qr(torch.randn(3, 3, generator=gen, dtype=torch.float64))
        px = x @ rot  # [N,3]
        x = x + (transfer_1d(px, y @ rot) - px) @ rot.T
    return x.T.reshape(img.shape).to(img.dtype).clamp(0, 1)


def match_grey(img: Tensor, ex: Tensor) -> Tensor:
    """img [1,3,H,W] -> grey [1,3,H,W] whose grey levels have the grey exemplar's [1,3,h,w]
    distribution exactly (1-D optimal transport of the channel mean); the layout is untouched."""
    x = img[0].mean(dim=0).flatten()[:, None].double()  # [N,1]
    y = ex[0].mean(dim=0).flatten()[:, None].double()  # [M,1]
    g = transfer_1d(x, y).view(1, 1, *img.shape[-2:]).to(img.dtype)
    return g.expand(-1, 3, -1, -1).contiguous().clamp(0, 1)
