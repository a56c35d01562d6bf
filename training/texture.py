"""Texture synthesis by attention distillation: a new, larger texture from a small exemplar photo.

The image itself is optimised (as in teacher_targets.optimize_target) against the AD loss
(losses.ad_loss) in the offline mobilenet teacher, with no content term: every feature of the
output is pulled towards a soft nearest neighbour among the exemplar's features, so the output has
the exemplar's local statistics but no copy of its layout. These additions make it a texture tool:

* coarse to fine: the first level runs at 1/2 resolution (output *and* exemplar halved, so feature
  scales match) from smooth spot noise (spot_noise: random, with the exemplar's autocovariance, so its
  large-scale layout), the next levels refine the upsampled result at full resolution;
* tileable: the teacher pads circularly (MobileNetTeacher(pad_mode="circular")), so the image is a
  torus to it, and every step sees the image rolled by a random offset, so neither the wrap-around
  boundary nor the stride grid has a privileged position; the result tiles without a seam;
* colour: the taps are ReLU6 expansions deep in the net and see little absolute colour, so a
  sliced-Wasserstein term matches the distribution of the output's 3x3 pixel patches (27-D:
  colours and their local contrast) to the exemplar's during the optimisation, and a final
  distribution transfer (match_colours) gives the output the exemplar's palette exactly; a grey
  exemplar (is_grey) is synthesised on the grey axis and its grey levels are transferred exactly;
* fine statistics: the AD taps are at /8 and /16; the channel mean/std of shallower taps (/2, /4,
  /8; student_loss.stats_loss, as the student's style_stats term) and the colour term's patches
  hold the output to the exemplar's fine-scale texture (grain, edges, local contrast), and so do
  the Gram matrices of random filter banks at 1, 1/2 and 1/4 scale (random_filter_grams), drawn
  anew every step: the 2-16 px contrast the strided teacher sees poorly;
* long lines: per orientation, the distribution of the luma's ridges averaged along straight
  48 px segments is matched to the exemplar's (texture_losses.line_statistics): scratches, cracks
  and grain that run long and straight in the exemplar do so in the output, where local statistics
  alone make them short and crinkled.

Cost: the self-attention of the AD loss is quadratic in the output's tokens; each step evaluates it
for a random subset of query tokens (an unbiased sample of the per-token L1 loss) against all keys,
so a 512 px step costs about as much as a 256 px step with all queries.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from muon_ad_ros.core.errors import ConfigError, ImageFormatError

from .data import to_tensor
from .losses import ad_loss
from .student_loss import stats_loss
from .teachers.base import detach_layers
from .texture_colour import is_grey, match_colours, match_grey, smooth_chroma
from .texture_losses import (
    LineTargets, line_statistics, pixel_neighbourhoods, random_filter_grams, sample_queries, sliced_wasserstein,
)

MIN_SIDE = 16  # smallest exemplar / output side: below it the /16 tap has no token
WARM_STARTS = ("noise", "spot", "shuffle")
WARM_START_COARSENESS = 4  # the noise and spot warm starts are drawn at 1/4 of the level's size and upsampled
GRID = 16  # internal sizes are multiples of the deepest tap's stride, so circular padding is exact


@dataclass
class TextureConfig:
    """Hyperparameters of one synthesis (tuned on gimp_leopard / mamurk_* at 256-512 px; stats_weight,
    colour_patch on gimp_leopard, gimp_bark, gimp_rock, brick, grass at 256 px; gram_weight on gimp_bark,
    brick, gimp_cracked at 256 px; the fine level's steps on those and gimp_leopard; line_weight on gimp_ice,
    checked on gimp_bark, gimp_cracked, brick, gimp_wood1; warm_start "spot" on gimp_wood1, gimp_ice,
    gimp_marble1, gimp_bark: docs/textures_log.md)."""

    layers: tuple = ("expanded_conv_6/expand", "expanded_conv_13/expand")
    steps: tuple = (100, 100)  # Adam steps per level, coarse (1/2 scale) to fine (full scale)
    lr: float = 0.03
    lr_final: float = 0.1  # cosine decay of each level's lr to this fraction
    max_queries: int = 2048  # query tokens per layer per step in the self-attention (None: all)
    max_style_tokens: int | None = 4096
    colour_weight: float = 2.0  # sliced-Wasserstein term on pixel neighbourhoods, relative to AD
    colour_projections: int = 32
    colour_pixels: int | None = 16384  # output pixels sampled per step for the colour term
    colour_patch: int = 3  # the colour term's neighbourhoods: k x k patches (0: a pixel, its right and lower ones)
    # channel mean/std of shallower teacher taps (strides 2-8) matched to the exemplar's, as the
    # student's style_stats term does: the fine-scale statistics the AD taps (/8, /16) do not see
    stats_layers: tuple = ("expanded_conv_1/expand", "expanded_conv_3/expand", "expanded_conv_6/expand")
    stats_weight: float = 3.0  # 0: no stats term
    # second-order statistics of random filters at the pixel scale and 2x, 4x coarser (random_filter_grams):
    # the grain and the 2-16 px contrast the strided teacher does not see; filters are redrawn every step
    gram_weight: float = 10.0  # 0: no random-filter term
    gram_scales: int = 3
    gram_channels: int = 32
    gram_kernel: int = 5
    # how long and straight the luma's ridges run (line_statistics): per orientation, the distribution of the
    # ridges' mean along straight segments of these lengths (px at the exemplar's scale)
    line_weight: float = 10.0  # 0: no line term
    line_lengths: tuple = (48,)
    line_angles: int = 12
    line_sigma: float = 2.0  # the ridges are the luma minus its Gaussian blur of this sigma (px)
    chroma_sigma: float = 1.0  # Gaussian blur of the final chroma (px; 0: none)
    colour_transfer_iterations: int = 100  # final palette match (match_colours; 0: none); 30 had not converged
    grey_tolerance: float = 2.0 / 255  # an exemplar whose channels agree this closely is grey: grey output
    level_sigma: float = 0.8  # Gaussian blur of a coarse level before it is upsampled (its px)
    min_exemplar_side: int = 0  # a smaller exemplar is upscaled for the teacher (tokens to match)
    # "noise": smooth noise; "spot": the exemplar's layout as smooth spot noise (spot_noise); "shuffle":
    # exemplar patches in random order (feathered_patches)
    warm_start: str = "spot"
    shuffle_patch: float = 1 / 3  # the shuffled warm start's crops, as a fraction of the exemplar's shorter side
    shuffle_overlap: float = 1 / 4  # their cross-faded overlap, as a fraction of a crop (feathered_patches)
    noise_std: float = 0.15  # of the "noise" warm start
    extra: dict = field(default_factory=dict)

    def validate(self) -> None:
        if not self.steps or any(s < 0 for s in self.steps) or self.lr <= 0:
            raise ConfigError(f"texture: need steps >= 0 per level and lr > 0, got {self.steps}, {self.lr}")
        if self.warm_start not in WARM_STARTS:
            raise ConfigError(f"texture: warm_start must be one of {WARM_STARTS}, got {self.warm_start!r}")


# ----------------------------------------------------------------------------- image helpers


def load_exemplar(exemplar) -> Tensor:
    """A path, or an RGB/grey array (uint8, or float in [0,1]) -> float [1,3,h,w] in [0,1]."""
    if isinstance(exemplar, (str, Path)):
        import cv2

        bgr = cv2.imread(str(exemplar), cv2.IMREAD_COLOR)
        if bgr is None:
            raise ImageFormatError(f"cannot read exemplar image {exemplar}")
        exemplar = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    arr = np.asarray(exemplar)
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (1, 3, 4)) or arr.size == 0:
        raise ImageFormatError(f"exemplar must be an HxW or HxWx3 image, got shape {arr.shape}")
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if min(arr.shape[:2]) < MIN_SIDE:
        raise ImageFormatError(f"exemplar is {arr.shape[1]}x{arr.shape[0]}; need at least {MIN_SIDE}x{MIN_SIDE}")
    return to_tensor(arr)[None]


def resize(img: Tensor, size: tuple[int, int], wrap: bool) -> Tensor:
    """[B,C,h,w] -> [B,C,H,W] antialiased bilinear; `wrap` treats the image as periodic (a tileable
    texture stays tileable: the border pixels are interpolated with the opposite side)."""
    if tuple(img.shape[-2:]) == tuple(size):
        return img
    if not wrap:
        return F.interpolate(img, size=size, mode="bilinear", antialias=True, align_corners=False)
    h, w = img.shape[-2:]
    ph, pw = max(2, h // 8), max(2, w // 8)  # margin covering the (antialiasing) kernel support
    padded = F.pad(img, (pw, pw, ph, ph), mode="circular")
    sy, sx = size[0] / h, size[1] / w
    big = (round((h + 2 * ph) * sy), round((w + 2 * pw) * sx))
    out = F.interpolate(padded, size=big, mode="bilinear", antialias=True, align_corners=False)
    top, left = round(ph * sy), round(pw * sx)
    return out[..., top:top + size[0], left:left + size[1]]


def round_up(n: int, grid: int = GRID) -> int:
    return max(grid, math.ceil(n / grid) * grid)


def shuffled_patches(exemplar: Tensor, size: tuple[int, int], patch: int, gen: torch.Generator) -> Tensor:
    """The exemplar [1,3,h,w] cut into random patch x patch crops laid edge to edge in a grid of
    `size`: the bench's baseline (right local statistics, seams between crops); feathered_patches
    without overlap."""
    return feathered_patches(exemplar, size, patch, 0, gen, wrap=False)


def spot_noise(exemplar: Tensor, size: tuple[int, int], gen: torch.Generator) -> Tensor:
    """Asymptotic discrete spot noise (Galerne, Gousseau & Morel 2011) of `size` [1,3,H,W]: one white
    noise field circularly convolved with the exemplar [1,3,h,w] minus its mean, over sqrt(h w), plus
    the mean. A stationary random image with the exemplar's mean, and its autocovariance within and
    across channels: its layout (wood's horizontal bands, bark's vertical ridges, how large the
    blotches are) but none of its pixels. Periodic. An exemplar larger than `size` is cropped."""
    H, W = size
    h, w = min(exemplar.shape[-2], H), min(exemplar.shape[-1], W)
    crop = exemplar[..., :h, :w]
    mean = crop.mean(dim=(2, 3), keepdim=True)  # [1,3,1,1]
    kernel = crop.new_zeros(1, 3, H, W)
    kernel[..., :h, :w] = (crop - mean) / math.sqrt(h * w)
    noise = torch.randn(1, 1, H, W, generator=gen).to(crop)
    return mean + torch.fft.irfft2(torch.fft.rfft2(kernel) * torch.fft.rfft2(noise), s=(H, W))


def feathered_patches(exemplar: Tensor, size: tuple[int, int], patch: int, overlap: int, gen: torch.Generator,
                      wrap: bool) -> Tensor:
    """Random patch x patch crops of the exemplar [1,3,h,w] laid every patch - overlap px and
    cross-faded over the overlap (linear ramps): the shuffled warm start, without the hard seams
    of edge-to-edge crops (they survive the optimisation: a seam is one pixel step the strided
    taps hardly see). `wrap`: the canvas is a torus, the last crops fade into the first."""
    _, _, h, w = exemplar.shape
    patch = min(patch, h, w)
    overlap = max(0, min(overlap, patch // 2))
    stride = patch - overlap
    ramp = torch.ones(patch)
    if overlap:
        ramp[:overlap] = torch.arange(1, overlap + 1) / (overlap + 1)
        ramp[-overlap:] = ramp[:overlap].flip(0)
    window = ramp[:, None] * ramp[None, :]  # [p,p]
    rows, cols = math.ceil(size[0] / stride), math.ceil(size[1] / stride)
    # wrap: the canvas is the torus itself; else a margin so that the last crops fit whole
    H, W = size if wrap else (rows * stride + overlap, cols * stride + overlap)
    acc, wsum = exemplar.new_zeros(1, 3, H, W), exemplar.new_zeros(1, 1, H, W)
    ys = torch.randint(0, h - patch + 1, (rows * cols,), generator=gen)
    xs = torch.randint(0, w - patch + 1, (rows * cols,), generator=gen)
    for i in range(rows * cols):
        r, c, y, x = i // cols, i % cols, int(ys[i]), int(xs[i])
        iy = (torch.arange(patch) + r * stride) % H  # only wraps on the torus
        ix = (torch.arange(patch) + c * stride) % W
        acc[..., iy[:, None], ix[None, :]] += exemplar[..., y:y + patch, x:x + patch] * window
        wsum[..., iy[:, None], ix[None, :]] += window
    return (acc / wsum.clamp_min(1e-6))[..., :size[0], :size[1]]


# ----------------------------------------------------------------------------- synthesis


class Progress:
    """Steps done, shown as a tqdm bar (`progress` True: the command line), passed to a callback
    `progress(done, total)` (a ROS node's action feedback; it may raise to stop the synthesis), or
    dropped (False)."""

    def __init__(self, progress, total: int):
        self.total, self.done, self.bar, self.callback = total, 0, None, None
        if callable(progress):
            self.callback = progress
        elif progress:
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc="texture", unit="step")

    def update(self, steps: int, note: str = "") -> None:
        self.done += steps
        if self.bar is not None:
            self.bar.update(steps)
            self.bar.set_postfix_str(note)
        if self.callback is not None:
            self.callback(self.done, self.total)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _teacher(layers, tileable: bool):
    from .teachers.mobilenet import MobileNetTeacher

    return MobileNetTeacher(layers=layers, pad_mode="circular" if tileable else "zeros")


def _levels(size: tuple[int, int], ex_size: tuple[int, int], cfg: TextureConfig):
    """(scale, internal output size, exemplar size, steps) per level, coarse to fine. The teacher
    sees the exemplar at least min_exemplar_side (upscaled when smaller: too few tokens otherwise)
    and the output at the same magnification, on a GRID-aligned canvas."""
    mag = max(1.0, cfg.min_exemplar_side / min(ex_size))
    n = len(cfg.steps)
    out = []
    for i, steps in enumerate(cfg.steps):
        scale = mag / 2 ** (n - 1 - i)
        osz = (round_up(round(size[0] * scale)), round_up(round(size[1] * scale)))
        esz = (max(MIN_SIDE, round(ex_size[0] * scale)), max(MIN_SIDE, round(ex_size[1] * scale)))
        out.append((scale, osz, esz, steps))
    return out


def synthesize(exemplar, size: tuple[int, int] = (512, 512), tileable: bool = False, seed: int = 0,
               minutes: float | None = 5.0, progress=True, config: TextureConfig | None = None,
               teacher=None) -> np.ndarray:
    """A new texture of `size` (H, W) like `exemplar` (path or RGB array) -> uint8 [H,W,3] RGB.

    `tileable`: the result tiles without a seam. `seed` changes the result (noise, query and
    projection sampling). `minutes` caps the wall time (levels are cut short when the machine is
    slower than planned; None: run every planned step). `progress`: a progress bar (True), none
    (False), or a callback(steps done, steps planned) after every step (Progress). `teacher`: a
    MobileNetTeacher to reuse (its pad_mode must match `tileable`), else one is built.
    """
    cfg = config or TextureConfig()
    cfg.validate()
    h_out, w_out = (int(size[0]), int(size[1]))
    if min(h_out, w_out) < MIN_SIDE:
        raise ConfigError(f"texture size {w_out}x{h_out}: each side must be at least {MIN_SIDE}")
    if minutes is not None and minutes <= 0:
        raise ConfigError(f"minutes must be > 0, got {minutes}")
    ex = load_exemplar(exemplar)  # [1,3,h,w]
    if teacher is None:
        teacher = _teacher(cfg.layers, tileable)
    elif getattr(teacher, "pad_mode", "zeros") != ("circular" if tileable else "zeros"):
        raise ConfigError("texture: the teacher's pad_mode must be 'circular' exactly when tileable")
    gen = torch.Generator().manual_seed(seed)
    grey = is_grey(ex, cfg.grey_tolerance)
    levels = _levels((h_out, w_out), tuple(ex.shape[-2:]), cfg)
    costs = [s * osz[0] * osz[1] for _, osz, _, s in levels]
    t0, budget = time.perf_counter(), (minutes * 60.0 if minutes is not None else math.inf)
    bar = Progress(progress, sum(s for *_, s in levels))

    img = None
    for li, (scale, osz, esz, steps) in enumerate(levels):
        ex_l = resize(ex, esz, wrap=False)
        with torch.no_grad():
            style = detach_layers(teacher.features(ex_l))
            style_maps = teacher.latent_features_and_maps(ex_l, cfg.stats_layers)[1] if cfg.stats_weight else {}
        ex_pixels = pixel_neighbourhoods(ex_l, patch=cfg.colour_patch)  # [M,9] or [M,3k^2]
        lines = LineTargets.of(ex_l, [length * scale for length in cfg.line_lengths], cfg.line_angles,
                               cfg.line_sigma) if cfg.line_weight else None
        if img is None:
            img = _init(ex_l, osz, cfg, gen, tileable)
        else:
            img = resize(img, osz, wrap=tileable).clamp(0, 1)
        deadline = t0 + budget * sum(costs[:li + 1]) / max(1, sum(costs))
        targets = (style, style_maps, ex_pixels, ex_l, lines)
        img = _optimise(teacher, img, targets, steps, tileable, grey, cfg, gen, deadline, bar)
        last = li == len(levels) - 1
        img = smooth_chroma(img, cfg.chroma_sigma if last else cfg.level_sigma, wrap=tileable, luma=not last)
        if last and grey:
            img = match_grey(img, ex_l)
        elif last and cfg.colour_transfer_iterations:
            img = match_colours(img, ex_l, cfg.colour_transfer_iterations, gen)
    bar.close()
    if tileable:  # the whole canvas is one period
        out = resize(img, (h_out, w_out), wrap=True)
    else:  # the canvas was magnified and rounded up to the grid: crop, then back to the asked size
        mag = levels[-1][0]
        out = resize(img[..., :round(h_out * mag), :round(w_out * mag)], (h_out, w_out), wrap=False)
    rgb = (out[0].clamp(0, 1).permute(1, 2, 0).numpy() * 255.0 + 0.5).astype(np.uint8)
    return np.ascontiguousarray(rgb)


def _init(ex: Tensor, size: tuple[int, int], cfg: TextureConfig, gen: torch.Generator, tileable: bool) -> Tensor:
    """Start image [1,3,H,W]: smooth noise around the exemplar's mean colour, smooth spot noise, or
    shuffled exemplar patches (cfg.warm_start)."""
    if cfg.warm_start == "shuffle":
        patch = max(8, round(min(ex.shape[-2:]) * cfg.shuffle_patch))
        return feathered_patches(ex, size, patch, round(patch * cfg.shuffle_overlap), gen, wrap=tileable)
    # drawn at 1/4 and upsampled: seeds differ in layout, and no pixel speckle is planted that the
    # taps (blind to single-pixel colour noise) would never remove
    small = (max(1, size[0] // WARM_START_COARSENESS), max(1, size[1] // WARM_START_COARSENESS))
    if cfg.warm_start == "spot":  # the exemplar at the same 1/4, so the layout keeps its scale
        ex_small = resize(ex, (max(2, ex.shape[-2] // WARM_START_COARSENESS),
                               max(2, ex.shape[-1] // WARM_START_COARSENESS)), wrap=False)
        return resize(spot_noise(ex_small, small, gen), size, wrap=tileable).clamp(0, 1)
    mean = ex.mean(dim=(2, 3), keepdim=True)
    noise = torch.randn(1, 3, *small, generator=gen) * cfg.noise_std
    return (mean + resize(noise, size, wrap=tileable)).clamp(0, 1)


def _optimise(teacher, img: Tensor, targets: tuple, steps: int, tileable: bool, grey: bool, cfg: TextureConfig,
              gen: torch.Generator, deadline: float, bar: "Progress") -> Tensor:
    """Adam on the pixels of img [1,3,H,W] against AD + tap statistics + colour + random-filter Grams
    + line statistics, with `targets` the exemplar's (AD layers, stats tap maps, pixel neighbourhoods,
    the image, LineTargets or None); returns the optimised image.
    `grey`: every step projects the pixels onto the grey axis (a grey exemplar's texture is grey)."""
    style, style_maps, ex_pixels, ex_l, lines = targets
    param = img.detach().clone()
    if grey:
        param = param.mean(dim=1, keepdim=True).expand(-1, 3, -1, -1).contiguous()
    param.requires_grad_(True)
    opt = torch.optim.Adam([param], lr=cfg.lr)
    # cosine decay to lr_final * lr: Adam's normalised steps turn the noise of sampled queries into
    # per-pixel jitter; small last steps let it settle
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda i: cfg.lr_final + (1 - cfg.lr_final) * 0.5 * (1 + math.cos(math.pi * i / max(1, steps))))
    h, w = param.shape[-2:]
    for step in range(steps):
        if time.perf_counter() > deadline:
            bar.update(steps - step, note="time cap reached")
            break
        opt.zero_grad(set_to_none=True)
        x = param
        if tileable:  # a random torus shift: no position (wrap seam, stride grid) is special
            dy, dx = (int(v) for v in torch.randint(0, max(h, w), (2,), generator=gen))
            x = torch.roll(x, shifts=(dy % h, dx % w), dims=(2, 3))
        feats, maps = teacher.latent_features_and_maps(x, tuple(style_maps))
        loss = ad_loss(sample_queries(feats, cfg.max_queries, gen), style, max_style_tokens=cfg.max_style_tokens,
                       generator=gen)
        if style_maps:
            loss = loss + cfg.stats_weight * stats_loss(maps, style_maps)
        if cfg.colour_weight:
            pix = pixel_neighbourhoods(param, wrap=tileable, patch=cfg.colour_patch)  # [N,9] or [N,3k^2]
            if cfg.colour_pixels and pix.shape[0] > cfg.colour_pixels:  # a random sample: sorting is the cost
                pix = pix.index_select(0, torch.randperm(pix.shape[0], generator=gen)[:cfg.colour_pixels])
            loss = loss + cfg.colour_weight * sliced_wasserstein(pix, ex_pixels, cfg.colour_projections, gen)
        if cfg.gram_weight:
            loss = loss + cfg.gram_weight * random_filter_grams(param, ex_l, cfg.gram_scales, cfg.gram_channels,
                                                                cfg.gram_kernel, tileable, gen)
        if lines is not None and lines.lengths:
            loss = loss + cfg.line_weight * line_statistics(param, lines, cfg.line_angles, cfg.line_sigma, tileable,
                                                            gen)
        loss.backward()
        opt.step()
        sched.step()
        with torch.no_grad():
            if grey:
                param.copy_(param.mean(dim=1, keepdim=True).expand_as(param))
            param.clamp_(0.0, 1.0)
        bar.update(1, note=f"loss={float(loss.detach()):.4f}")
    return param.detach()
