"""Attention-distillation (AD) losses of Zhou et al., CVPR 2025, "Attention Distillation: A Unified
Approach to Visual Characteristics Transfer" (reference code: github.com/xugao97/AttentionDistillation).

For each teacher layer, with the target's q_t, k_t, v_t and the style's k_s, v_s:

    L_distill = sum_layers L1( Attn(q_t, k_t, v_t),  sg[Attn(q_t, k_s, v_s)] )

Attn(q_t, k_t, v_t) is the target's own self-attention output; Attn(q_t, k_s, v_s) rebuilds the
target from the style's values, weighted by how the target's queries match the style's keys. As in
the reference code, the whole second term is a stop-gradient (sg): it is the regression target, and
the gradient flows only through the target's self-attention. The content term keeps the layout:

    L_content = sum_layers L1( q_t, sg[q_c] ),     L_tot = L_distill + lambda * L_content

L1 is the mean absolute error (torch.nn.L1Loss). Shapes everywhere: [B, heads, N, d] (base.LayerQKV).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from muon_ad_ros.core.errors import ConfigError

from .teachers.base import LayerQKV


@dataclass
class ADLossConfig:
    """Hyperparameters of the AD objective."""

    lambda_content: float = 0.25  # weight of the content term (the reference UI's default)
    attn_scale: float = 1.0  # multiplies q_t in the cross-attention (the reference code's `scale`)
    # Cap on style tokens per layer in the cross-attention; None = all. Attn(q_t, k_s, v_s) costs
    # N_t * N_s, so large style images are subsampled: a random token subset is an unbiased sample
    # of the style's feature distribution, which is what the attention draws its values from.
    max_style_tokens: int | None = 4096


def attention(q: Tensor, k: Tensor, v: Tensor, scale: float = 1.0) -> Tensor:
    """softmax(scale * q k^T / sqrt(d)) v; q [B,H,Nq,d], k/v [B,H,Nk,d] -> [B,H,Nq,d]."""
    return F.scaled_dot_product_attention(q * scale, k, v)


def subsample_tokens(k: Tensor, v: Tensor, max_tokens: int | None, generator: torch.Generator | None = None):
    """The same random subset of max_tokens key/value tokens (dim 2) of k and v, or both unchanged."""
    n = k.shape[2]
    if max_tokens is None or n <= max_tokens:
        return k, v
    idx = torch.randperm(n, generator=generator)[:max_tokens].to(k.device)
    return k.index_select(2, idx), v.index_select(2, idx)


def _check_pairs(a: list[LayerQKV], b: list[LayerQKV], what: str) -> None:
    if len(a) != len(b) or not a:
        raise ConfigError(f"{what}: {len(a)} target layers vs {len(b)} reference layers")
    for x, y in zip(a, b):
        if x.name != y.name or x.q.shape[-1] != y.k.shape[-1] or x.q.shape[1] != y.k.shape[1]:
            raise ConfigError(f"{what}: layer {x.name} {tuple(x.q.shape)} vs {y.name} {tuple(y.k.shape)}")


def _expand_batch(t: Tensor, b: int) -> Tensor:
    """One reference (batch 1) shared by a batch of targets."""
    return t.expand(b, *t.shape[1:]) if t.shape[0] == 1 and b > 1 else t


def ad_loss(target: list[LayerQKV], style: list[LayerQKV], attn_scale: float = 1.0,
            max_style_tokens: int | None = None, generator: torch.Generator | None = None) -> Tensor:
    """L_distill: sum over layers of L1(Attn(q_t,k_t,v_t), sg[Attn(q_t,k_s,v_s)]).

    The style batch is 1 (shared by every target) or equal to the target batch. Zero when the
    target's features equal the style's (and max_style_tokens keeps all tokens); gradients reach
    only the target (style features never receive gradient; the cross term is detached).
    """
    _check_pairs(target, style, "ad_loss")
    loss = target[0].q.new_zeros(())
    for t, s in zip(target, style):
        b = t.q.shape[0]
        k_s, v_s = subsample_tokens(s.k.detach(), s.v.detach(), max_style_tokens, generator)
        self_out = attention(t.q, t.k, t.v)
        with torch.no_grad():
            cross_out = attention(t.q.detach(), _expand_batch(k_s, b), _expand_batch(v_s, b), attn_scale)
        loss = loss + F.l1_loss(self_out, cross_out)
    return loss


def content_loss(target: list[LayerQKV], content: list[LayerQKV]) -> Tensor:
    """L_content: sum over layers of L1(q_t, sg[q_c]) (queries of the same layers)."""
    _check_pairs(target, content, "content_loss")
    loss = target[0].q.new_zeros(())
    for t, c in zip(target, content):
        loss = loss + F.l1_loss(t.q, _expand_batch(c.q.detach(), t.q.shape[0]))
    return loss


def total_loss(target: list[LayerQKV], style: list[LayerQKV], content: list[LayerQKV] | None,
               cfg: ADLossConfig, generator: torch.Generator | None = None,
               ) -> tuple[Tensor, dict[str, Tensor]]:
    """L_tot = L_distill + lambda * L_content, and the detached parts for logging (no device sync)."""
    distill = ad_loss(target, style, cfg.attn_scale, cfg.max_style_tokens, generator)
    parts = {"distill": distill.detach()}
    if content is None or cfg.lambda_content == 0:
        return distill, parts
    cont = content_loss(target, content)
    parts["content"] = cont.detach()
    return distill + cfg.lambda_content * cont, parts
