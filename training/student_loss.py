"""The student's loss: what the student's output should be, measured through the frozen teacher.

    L = w_recon * L1(y, x) + w_color * L_color(y, x)                       (phase 1: keep the content)
      + w_style_color * L_color(y, style) + w_palette * SW(y, style)       (palette: moments, distribution)
      + w_tv * TV(y)
      + L_distill + lambda * L_content                                     (phase 2-3: L_tot)
    L_distill = w_ad * AD(teacher(y), teacher(style))                      (losses.ad_loss)
              + w_style_stats * sum_l |mu_l(y) - mu_l(s)| + |sd_l(y) - sd_l(s)|  (taps at strides 2-8)
              + w_target * L1(pool(y), pool(target))                       (cached per-image targets)
              + w_attn * KL(teacher attention of x || student attention)   (on the student grid)
    L_content = losses.content_loss(teacher(y), teacher(x)) + w_fine_content * L1(tap4(y), tap4(x))

y = student(x_jittered, style) in [0,1], x the same content crop without the colour jitter (so the
student also learns to be steady under small exposure changes). SW is the sliced Wasserstein distance
of the RGB pixel distributions: unlike mean/std it is not satisfied by one global tint. Terms whose
weight is 0 are not computed (phase 1 never runs the teacher).

Border handling: the teacher zero-pads its convs, so its border tokens have 1.2-1.4x the norm of the
interior and soaked up most of the cross-attention mass (the student learnt to paint the style
image's edge). Every image is reflect-padded by ``loss.teacher_pad`` px before the teacher, the
padding's tokens are cropped away and ``loss.teacher_ring`` more rings dropped (``teacher_view``).
Style features are computed once per (style, size) and cached: the style references are constants.
"""
from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from .losses import ad_loss, content_loss
from .teachers.base import LayerQKV, Teacher, crop_layer, detach_layers
from .train_config import LossConfig, LossWeights


def color_loss(y: Tensor, x: Tensor) -> Tensor:
    """L1 between per-image, per-channel mean and std of y and x ([B,3,H,W]): the global colour."""
    return F.l1_loss(y.mean(dim=(2, 3)), x.mean(dim=(2, 3))) + F.l1_loss(y.std(dim=(2, 3)), x.std(dim=(2, 3)))


def sliced_wasserstein(a: Tensor, b: Tensor, projections: int, generator: Optional[torch.Generator] = None,
                       max_pixels: int = 4096) -> Tensor:
    """Sliced Wasserstein-1 distance between the pixel colour distributions of a [B,3,H,W] and the
    reference b [1,3,h,w]: mean over random unit directions of the L1 between sorted projections
    (b's quantiles resampled to a's pixel count). A random subset of ``max_pixels`` pixels of a is an
    unbiased sample of its distribution and keeps the sort cheap. Gradient flows into a only."""
    dirs = torch.randn(projections, a.shape[1], generator=generator).to(a)  # [P,3]
    dirs = dirs / dirs.norm(dim=1, keepdim=True)
    pixels = a.flatten(2)  # [B,3,N]
    if pixels.shape[-1] > max_pixels:
        idx = torch.randperm(pixels.shape[-1], generator=generator)[:max_pixels].to(a.device)
        pixels = pixels.index_select(2, idx)
    pa = torch.einsum("pc,bcn->bpn", dirs, pixels).sort(dim=-1).values  # [B,P,N]
    with torch.no_grad():
        pb = torch.einsum("pc,cn->pn", dirs, b[0].flatten(1)).sort(dim=-1).values  # [P,M]
        q = torch.linspace(0, pb.shape[-1] - 1, pa.shape[-1], device=a.device).round().long()
        pb = pb[:, q]  # [P,N]: the reference's quantiles at a's ranks
    return (pa - pb[None]).abs().mean()


def channel_stats(f: Tensor) -> tuple[Tensor, Tensor]:
    """Per-channel mean and std of feature maps [B,C,h,w] -> ([B,C], [B,C])."""
    return f.mean(dim=(2, 3)), (f.var(dim=(2, 3), unbiased=False) + 1e-6).sqrt()


def stats_loss(y_maps: dict[str, Tensor], s_maps: dict[str, Tensor]) -> Tensor:
    """Sum over taps of L1 between channel means and stds, normalised by the style's scale."""
    loss = None
    for name, f in y_maps.items():
        mu_y, sd_y = channel_stats(f)
        mu_s, sd_s = channel_stats(s_maps[name])
        scale = sd_s.mean().clamp_min(1e-3)  # taps differ in magnitude; weigh them equally
        term = ((mu_y - mu_s).abs().mean() + (sd_y - sd_s).abs().mean()) / scale
        loss = term if loss is None else loss + term
    return loss


def shift_pad(x: Tensor, dy: int, dx: int) -> Tensor:
    """x [B,C,H,W] moved down by dy and right by dx pixels, the uncovered edge reflect-filled."""
    return F.pad(x, (dx, 0, dy, 0), mode="reflect")[..., :x.shape[-2], :x.shape[-1]]


def shift_consistency(model, x: Tensor, style_weights: Tensor, y: Tensor, max_shift: int, noise: float,
                      generator: Optional[torch.Generator] = None, margin: int = 8) -> Tensor:
    """L1(student(shift(x) + noise) - shift(y)) on the interior: a moving or noisy camera must only
    move the output. Penalises exactly what flickers in video: patterns locked to the pixel grid
    (a 1-px shift changed v1's output by ~23 levels) and sensitivity to sensor noise."""
    dy, dx = (int(v) for v in torch.randint(1, max_shift + 1, (2,), generator=generator))
    x2 = shift_pad(x, dy, dx)
    if noise > 0:
        x2 = (x2 + noise * torch.randn(x2.shape, generator=generator).to(x2)).clamp(0.0, 1.0)
    y2 = model(x2, style_weights)
    h, w = y.shape[-2:]
    moved = y[..., margin:h - margin - dy, margin:w - margin - dx]  # y at the positions y2 shows them
    return F.l1_loss(y2[..., margin + dy:h - margin, margin + dx:w - margin], moved)


def total_variation(y: Tensor) -> Tensor:
    """Mean absolute difference of neighbouring pixels ([B,3,H,W]): penalises pixel-level noise."""
    return (y[..., 1:, :] - y[..., :-1, :]).abs().mean() + (y[..., :, 1:] - y[..., :, :-1]).abs().mean()


def teacher_attention(layer: LayerQKV) -> Tensor:
    """softmax(q k^T / sqrt(d)) averaged over heads: [B,N,N] (rows are distributions)."""
    logits = layer.q @ layer.k.transpose(-2, -1) / math.sqrt(layer.q.shape[-1])  # [B,H,N,N]
    return logits.softmax(dim=-1).mean(dim=1)


def resample_attention(attn: Tensor, src_hw: tuple[int, int], dst_hw: tuple[int, int]) -> Tensor:
    """Resample an attention map [B, h*w, h*w] on an (h,w) grid to [B, h'*w', h'*w'] on (h',w').

    Keys: area pooling of each row's probability mass (sums are preserved, rows stay distributions
    up to renormalisation). Queries: area averaging of the rows of neighbouring query positions.
    """
    (h, w), (h2, w2) = src_hw, dst_hw
    if (h, w) == (h2, w2):
        return attn
    b = attn.shape[0]
    keys = attn.reshape(b * h * w, 1, h, w)
    keys = F.interpolate(keys, size=(h2, w2), mode="area") if h2 <= h and w2 <= w else \
        F.interpolate(keys, size=(h2, w2), mode="bilinear", align_corners=False)
    keys = keys.reshape(b, h, w, h2 * w2).permute(0, 3, 1, 2)  # [B, N'_k, h, w] (query grid last)
    queries = F.interpolate(keys, size=(h2, w2), mode="area") if h2 <= h and w2 <= w else \
        F.interpolate(keys, size=(h2, w2), mode="bilinear", align_corners=False)
    out = queries.reshape(b, h2 * w2, h2 * w2).transpose(1, 2)  # [B, N'_q, N'_k]
    return out / out.sum(dim=-1, keepdim=True).clamp_min(1e-12)


def attention_kl(teacher_attn: Tensor, student_attn: Tensor) -> Tensor:
    """Mean over batch and query rows of KL(teacher row || student row); both [B,N,N]."""
    t = teacher_attn.clamp_min(1e-8)
    s = student_attn.clamp_min(1e-8)
    return (t * (t.log() - s.log())).sum(dim=-1).mean()


class TeacherView:
    """Teacher features of an image batch with the border handling above: (layers, maps)."""

    def __init__(self, teacher: Teacher, cfg: LossConfig):
        self.teacher, self.pad, self.ring = teacher, cfg.teacher_pad, cfg.teacher_ring

    def __call__(self, images: Tensor, maps: tuple[str, ...] = ()) -> tuple[list[LayerQKV], dict[str, Tensor]]:
        p = min(self.pad, images.shape[-2] - 1, images.shape[-1] - 1)  # reflection needs pad < side
        padded = F.pad(images, (p, p, p, p), mode="reflect") if p else images
        layers, fmaps = self.teacher.features_and_maps(padded, maps)
        size = padded.shape[-2]
        out_layers = [crop_layer(layer, round(p * layer.height / size) + self.ring) for layer in layers]
        out_maps = {}
        for name, f in fmaps.items():
            m = round(p * f.shape[-2] / size)  # the padding's rows/columns at this tap's stride
            out_maps[name] = f[..., m:f.shape[-2] - m, m:f.shape[-1] - m] if m else f
        return out_layers, out_maps


class StudentLoss:
    def __init__(self, teacher: Optional[Teacher], styles: list[Tensor], cfg: LossConfig):
        self.teacher, self.styles, self.cfg = teacher, styles, cfg
        self.view = TeacherView(teacher, cfg) if teacher is not None else None
        self._style_cache: dict[tuple[int, int, str], tuple[list[LayerQKV], dict[str, Tensor]]] = {}

    def style_features(self, style: int, size: int, device: torch.device) -> tuple[list[LayerQKV], dict]:
        """Teacher layers and stat maps of style ``style`` resized to size x size (cached)."""
        key = (style, size, str(device))
        if key not in self._style_cache:
            img = F.interpolate(self.styles[style][None], size=(size, size), mode="bilinear",
                                antialias=True, align_corners=False).to(device)
            with torch.no_grad():
                layers, maps = self.view(img, tuple(self.cfg.stat_layers))
                self._style_cache[key] = (detach_layers(layers), {k: v.detach() for k, v in maps.items()})
        return self._style_cache[key]

    def __call__(self, y: Tensor, x: Tensor, style: int, weights: LossWeights, lam: float,
                 target: Optional[Tensor] = None, student_attn: Optional[list[Tensor]] = None,
                 student_grid: Optional[tuple[int, int]] = None,
                 generator: Optional[torch.Generator] = None) -> tuple[Tensor, dict[str, Tensor]]:
        """y: student output [B,3,H,W]; x: content [B,3,H,W]; returns (loss, detached parts)."""
        parts: dict[str, Tensor] = {}
        loss = y.new_zeros(())
        cfg = self.cfg

        def add(name: str, weight: float, value: Tensor) -> None:
            nonlocal loss
            parts[name] = value.detach()
            loss = loss + weight * value

        ref = self.styles[style][None].to(y.device)  # [1,3,s,s]
        if weights.recon:
            add("recon", weights.recon, F.l1_loss(y, x))
        if weights.color:
            add("color", weights.color, color_loss(y, x))
        if weights.style_color:
            add("style_color", weights.style_color, color_loss(y, ref.expand(y.shape[0], -1, -1, -1)))
        if weights.palette:
            add("palette", weights.palette, sliced_wasserstein(y, ref, cfg.palette_projections, generator))
        if weights.tv:
            add("tv", weights.tv, total_variation(y))
        if weights.target:
            if target is None:
                raise ValueError("weights.target > 0 but the batch has no teacher target")
            k = cfg.target_pool
            add("target", weights.target, F.l1_loss(F.avg_pool2d(y, k), F.avg_pool2d(target, k)))
        needs_y = weights.ad or lam or weights.style_stats or weights.fine_content
        needs_x = lam or weights.attn or weights.fine_content
        if needs_y or needs_x:
            if self.teacher is None:
                raise ValueError("this phase needs the teacher (ad, lambda, attn, style_stats or fine_content > 0)")
            y_maps_wanted = tuple(cfg.stat_layers if weights.style_stats else ()) + (
                (cfg.fine_content_layer,) if weights.fine_content else ())
            y_feats, y_maps = self.view(y, y_maps_wanted) if needs_y else (None, {})
            with torch.no_grad():
                x_feats, x_maps = self.view(x, (cfg.fine_content_layer,) if weights.fine_content else ()) \
                    if needs_x else (None, {})
                x_feats = detach_layers(x_feats) if x_feats is not None else None
            if weights.ad or weights.style_stats:
                style_layers, style_maps = self.style_features(style, y.shape[-1], y.device)
            if weights.ad:
                add("ad", weights.ad, ad_loss(y_feats, style_layers, cfg.attn_scale, cfg.ad_max_style_tokens,
                                              generator))
            if weights.style_stats:
                add("style_stats", weights.style_stats,
                    stats_loss({k: y_maps[k] for k in cfg.stat_layers}, style_maps))
            if lam:
                add("content", lam, content_loss(y_feats, x_feats))
            if weights.fine_content:
                name = cfg.fine_content_layer
                add("fine_content", weights.fine_content, F.l1_loss(y_maps[name], x_maps[name].detach()))
            if weights.attn:
                if not student_attn:
                    raise ValueError("weights.attn > 0 needs the student's captured attention")
                layer = x_feats[cfg.attn_teacher_layer]
                t_attn = resample_attention(teacher_attention(layer).float(), (layer.height, layer.width),
                                            student_grid)
                kls = [attention_kl(t_attn, a.float().mean(dim=1)) for a in student_attn]  # heads averaged
                add("attn", weights.attn, sum(kls) / len(kls))
        parts["total"] = loss.detach()
        return loss, parts
