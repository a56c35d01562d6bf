"""The student's loss: what the student's output should be, measured through the frozen teacher.

    L = w_recon * L1(y, x) + w_color * L_color(y, x)                       (phase 1: keep the content)
      + w_style_color * L_color(y, style) + w_tv * TV(y)                   (palette, smoothness)
      + L_distill + lambda * L_content                                     (phase 2-3: L_tot)
    L_distill = w_ad * AD(teacher(y), teacher(style))                      (losses.ad_loss)
              + w_target * L1(y, cached teacher target)                    (when targets are cached)
              + w_attn * KL(teacher attention of x || student attention)   (on the student grid)
    L_content = losses.content_loss(teacher(y), teacher(x))

y = student(x_jittered, style) in [0,1], x the same content crop without the colour jitter (so the
student also learns to be steady under small exposure changes). Terms whose weight is 0 are not
computed (phase 1 never runs the teacher). Style features are computed once per (style, size) and
cached: the style references are constants.
"""
from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from .losses import ad_loss, content_loss
from .teachers.base import LayerQKV, Teacher, detach_layers
from .train_config import LossConfig, LossWeights


def color_loss(y: Tensor, x: Tensor) -> Tensor:
    """L1 between per-image, per-channel mean and std of y and x ([B,3,H,W]): the global colour."""
    return F.l1_loss(y.mean(dim=(2, 3)), x.mean(dim=(2, 3))) + F.l1_loss(y.std(dim=(2, 3)), x.std(dim=(2, 3)))


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


class StudentLoss:
    def __init__(self, teacher: Optional[Teacher], styles: list[Tensor], cfg: LossConfig):
        self.teacher, self.styles, self.cfg = teacher, styles, cfg
        self._style_cache: dict[tuple[int, int, str], list[LayerQKV]] = {}

    def style_features(self, style: int, size: int, device: torch.device) -> list[LayerQKV]:
        key = (style, size, str(device))
        if key not in self._style_cache:
            img = F.interpolate(self.styles[style][None], size=(size, size), mode="bilinear",
                                antialias=True, align_corners=False).to(device)
            with torch.no_grad():
                self._style_cache[key] = detach_layers(self.teacher.features(img))
        return self._style_cache[key]

    def __call__(self, y: Tensor, x: Tensor, style: int, weights: LossWeights, lam: float,
                 target: Optional[Tensor] = None, student_attn: Optional[list[Tensor]] = None,
                 student_grid: Optional[tuple[int, int]] = None,
                 generator: Optional[torch.Generator] = None) -> tuple[Tensor, dict[str, Tensor]]:
        """y: student output [B,3,H,W]; x: content [B,3,H,W]; returns (loss, detached parts)."""
        parts: dict[str, Tensor] = {}
        loss = y.new_zeros(())

        def add(name: str, weight: float, value: Tensor) -> None:
            nonlocal loss
            parts[name] = value.detach()
            loss = loss + weight * value

        if weights.recon:
            add("recon", weights.recon, F.l1_loss(y, x))
        if weights.color:
            add("color", weights.color, color_loss(y, x))
        if weights.style_color:
            # The teacher's taps (stride 8 and 16, after many ReLU6 layers) barely see absolute
            # colour; the style's palette is matched directly by its channel statistics.
            ref = self.styles[style][None].to(y.device)
            add("style_color", weights.style_color, color_loss(y, ref.expand(y.shape[0], -1, -1, -1)))
        if weights.tv:
            add("tv", weights.tv, total_variation(y))
        if weights.target:
            if target is None:
                raise ValueError("weights.target > 0 but the batch has no teacher target")
            add("target", weights.target, F.l1_loss(y, target))
        needs_teacher = weights.ad or lam or weights.attn
        if needs_teacher:
            if self.teacher is None:
                raise ValueError("this phase needs the teacher (ad, lambda or attn weight > 0)")
            y_feats = self.teacher.features(y) if (weights.ad or lam) else None
            with torch.no_grad():
                x_feats = detach_layers(self.teacher.features(x)) if (lam or weights.attn) else None
            if weights.ad:
                style_feats = self.style_features(style, y.shape[-1], y.device)
                add("ad", weights.ad, ad_loss(y_feats, style_feats, self.cfg.attn_scale,
                                              self.cfg.ad_max_style_tokens, generator))
            if lam:
                add("content", lam, content_loss(y_feats, x_feats))
            if weights.attn:
                if not student_attn:
                    raise ValueError("weights.attn > 0 needs the student's captured attention")
                layer = x_feats[self.cfg.attn_teacher_layer]
                t_attn = resample_attention(teacher_attention(layer).float(), (layer.height, layer.width),
                                            student_grid)
                kls = [attention_kl(t_attn, a.float().mean(dim=1)) for a in student_attn]  # heads averaged
                kl = sum(kls) / len(kls)
                add("attn", weights.attn, kl)
        parts["total"] = loss.detach()
        return loss, parts
