"""The student stylizer network: the small, fast model that every engine runs.

Design (v2), chosen so that the output keeps the photo's detail and carries no pattern locked to the
pixel grid, within half the CPU time of Magenta's multistyle network at 640x480:

    image [B,3,H,W] in [0,1]           style_weights [B,S] (one-hot or a mixture)
      -> stem: dense 3x3 at full resolution                                   s0 [B,c0,H,W]
      -> down1: binomial blur + dense 3x3 stride 2                            s1 [B,c1,H/2,W/2]
      -> down2: binomial blur + dense 3x3 stride 2                               [B,c2,H/4,W/4]
      -> body at H/4: residual depthwise-separable blocks, and self-attention blocks that run on an
         H/16 token grid (4x4 average pool -> multi-head self-attention -> bilinear upsample, residual)
      -> up1: bilinear x2, separable 3x3, + s1 (skip)                            [B,c1,H/2,W/2]
      -> up2: bilinear x2, separable 3x3, + s0 (skip)                            [B,c0,H,W]
      -> out: dense 3x3 -> sigmoid                                               [B,3,H,W]

Why this layout (measured causes of v1's artifacts, issue "Quality v2"):
* Full-resolution stem and output conv, body at H/4 (not H/8) and encoder->decoder skips: fine
  content (cables, faces, lights) reaches the output instead of dying in an H/8 bottleneck.
* Resize-convolution upsampling (bilinear then 3x3) instead of a pixel-shuffle head: pixel shuffle
  gives every 2x2 sub-pixel its own bias, a fixed checkerboard locked to the pixel grid.
* Low-pass before every stride-2 conv (a fixed [1,2,1]^2/16 depthwise blur, Zhang 2019): strided
  convs alias, so a 1-px shift of the input changed v1's output by ~23 levels; with the blur (and
  the shift-consistency loss in training) the network is close to shift-equivariant.
* Every normalisation is *conditional instance norm* (Dumoulin et al. 2017): instance statistics,
  then a per-style scale and shift looked up as ``style_weights @ table``. One set of convolution
  weights serves all styles; mixing weights blends styles at run time; a new style is a new row
  (``muon-ad add-style``).
* Reflect padding everywhere: zero padding makes border features differ from the interior, which a
  stylizer paints as a coloured frame.
* The attention blocks are what the teacher's self-attention is distilled into and what entropy-
  driven pruning removes heads from. Each block has a ``head_mask`` buffer (1 = kept) and
  ``prune_heads`` that removes heads structurally (smaller matrices, smaller exported graph).
  ``attn_heads: []`` builds the network without attention.
* Inputs must be multiples of 16 on each side (H/4 body, 4x4 attention pool); the ``Stylizer``
  resizes frames to that policy and back.
"""
from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass, field
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from muon_ad_ros.core.onnx_contract import SIZE_MULTIPLE  # noqa: F401 (the torch-free home of the size rule)

ATTN_POOL = 4  # the attention grid is the H/4 body pooled 4x4: H/16 x W/16 tokens


@dataclass
class StudentConfig:
    """Hyperparameters of the student. Saved with every checkpoint and model card."""

    style_names: list[str] = field(default_factory=lambda: ["style0", "style1", "style2", "style3"])
    stem_channels: int = 8  # full resolution (stem and the last decoder stage)
    mid_channels: int = 32  # at H/2
    body_channels: int = 48  # at H/4: residual and attention blocks
    num_res_blocks: int = 3
    # Heads per attention block ([] = none). The shipped v2 student has none: at H/4 one 4-head block
    # cost +0.04-0.1x of Magenta multistyle's time at 640x480, which the 0.5x budget did not hold.
    attn_heads: list[int] = field(default_factory=list)
    attn_head_dim: int = 16
    attn_after_res_block: int = 2  # attention blocks are interleaved after this many res blocks

    @property
    def num_styles(self) -> int:
        return len(self.style_names)

    @property
    def num_attn_blocks(self) -> int:
        return len(self.attn_heads)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "StudentConfig":
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown StudentConfig keys: {sorted(unknown)}")
        return cls(**data)

    @classmethod
    def tiny(cls, num_styles: int = 2) -> "StudentConfig":
        """A few-thousand-parameter student for tests and smoke runs."""
        return cls(
            style_names=[f"style{i}" for i in range(num_styles)],
            stem_channels=8,
            mid_channels=8,
            body_channels=16,
            num_res_blocks=1,
            attn_heads=[2],
            attn_head_dim=8,
            attn_after_res_block=1,
        )

    def validate(self) -> None:
        if self.num_styles < 1:
            raise ValueError("StudentConfig needs at least one style")
        for name in ("stem_channels", "mid_channels", "body_channels", "attn_head_dim"):
            if getattr(self, name) < 1:
                raise ValueError(f"StudentConfig.{name} must be positive")
        if any(h < 0 for h in self.attn_heads):
            raise ValueError("StudentConfig.attn_heads must be non-negative")


def upsample(x: torch.Tensor, factor: int = 2) -> torch.Tensor:
    """Bilinear upsampling: nearest-neighbour leaves visible blocks, pixel shuffle a fixed checkerboard."""
    return F.interpolate(x, scale_factor=float(factor), mode="bilinear", align_corners=False)


class BlurDownConv(nn.Module):
    """Binomial [1,2,1]^2/16 low-pass, then a dense 3x3 stride-2 conv (anti-aliased downsampling).

    A strided conv samples its input every other pixel: without the low-pass, high frequencies fold
    into patterns that move when the input moves by one pixel (v1's 2-px checkerboard under shifts).
    The blur is a fixed depthwise conv (a buffer, never trained), exported as a plain Conv.
    """

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        k = torch.tensor([1.0, 2.0, 1.0])
        kernel = (k[:, None] * k[None, :]) / 16.0  # [3,3], sums to 1
        self.register_buffer("blur_kernel", kernel.expand(in_ch, 1, 3, 3).clone())  # [Cin,1,3,3]
        self.conv = nn.Conv2d(in_ch, out_ch, 3, 2, 1, bias=False, padding_mode="reflect")

    @property
    def in_channels(self) -> int:
        return self.conv.in_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="reflect"), self.blur_kernel, groups=x.shape[1])
        return self.conv(x)


class ConditionalInstanceNorm(nn.Module):
    """Instance norm whose affine parameters are a style-weighted mix of per-style tables."""

    def __init__(self, channels: int, num_styles: int):
        super().__init__()
        self.norm = nn.InstanceNorm2d(channels, affine=False)
        self.style_scale = nn.Parameter(torch.ones(num_styles, channels))  # [S,C]
        self.style_shift = nn.Parameter(torch.zeros(num_styles, channels))  # [S,C]

    def forward(self, x: torch.Tensor, style_weights: torch.Tensor) -> torch.Tensor:
        # x: [B,C,H,W], style_weights: [B,S]
        scale = (style_weights @ self.style_scale)[:, :, None, None]  # [B,C,1,1]
        shift = (style_weights @ self.style_shift)[:, :, None, None]
        return self.norm(x) * scale + shift


class SeparableConv(nn.Module):
    """Depthwise 3x3 (optionally strided) then pointwise 1x1: the cheap replacement of a dense 3x3."""

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1):
        super().__init__()
        self.depthwise = nn.Conv2d(in_ch, in_ch, 3, stride, 1, groups=in_ch, bias=False, padding_mode="reflect")
        self.pointwise = nn.Conv2d(in_ch, out_ch, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise(self.depthwise(x))


class ConvNormAct(nn.Module):
    """conv -> conditional instance norm -> ReLU."""

    def __init__(self, conv: nn.Module, out_ch: int, num_styles: int):
        super().__init__()
        self.conv = conv
        self.norm = ConditionalInstanceNorm(out_ch, num_styles)

    def forward(self, x: torch.Tensor, style_weights: torch.Tensor) -> torch.Tensor:
        return F.relu(self.norm(self.conv(x), style_weights))


class ResidualBlock(nn.Module):
    """Two separable convs with conditional norms and an identity skip."""

    def __init__(self, channels: int, num_styles: int):
        super().__init__()
        self.conv1 = SeparableConv(channels, channels)
        self.norm1 = ConditionalInstanceNorm(channels, num_styles)
        self.conv2 = SeparableConv(channels, channels)
        self.norm2 = ConditionalInstanceNorm(channels, num_styles)

    def forward(self, x: torch.Tensor, style_weights: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.norm1(self.conv1(x), style_weights))
        return x + self.norm2(self.conv2(h), style_weights)


class MultiHeadSelfAttention(nn.Module):
    """Multi-head self-attention over a [B,C,h,w] grid, with head masking and structural pruning.

    Returns the attention *update* [B,C,h,w] (pre-norm, no residual); the caller adds it.

    ``capture_attention = True`` keeps the last attention probabilities ([B,heads,N,N]) and q/k/v
    ([B,heads,N,d]) for entropy tracking and attention distillation. Capture uses the explicit
    softmax(QK^T)V path; otherwise the fused ``scaled_dot_product_attention`` runs.
    """

    def __init__(self, channels: int, num_heads: int, head_dim: int):
        super().__init__()
        self.channels = channels
        self.num_heads = num_heads
        self.head_dim = head_dim
        self.norm = nn.LayerNorm(channels)
        self.qkv = nn.Linear(channels, 3 * num_heads * head_dim)
        self.proj = nn.Linear(num_heads * head_dim, channels)
        self.register_buffer("head_mask", torch.ones(num_heads))
        self.capture_attention = False
        self.last_attention: Optional[torch.Tensor] = None
        self.last_qkv: Optional[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        if self.num_heads == 0:  # every head pruned: only the output projection's bias is left
            return self.proj.bias.view(1, -1, 1, 1).expand_as(x)
        tokens = self.norm(x.flatten(2).transpose(1, 2))  # [B,N,C], N = h*w
        qkv = self.qkv(tokens).reshape(b, h * w, 3, self.num_heads, self.head_dim)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each [B,heads,N,d]
        if self.capture_attention:
            logits = (q @ k.transpose(-2, -1)) / math.sqrt(self.head_dim)  # [B,heads,N,N]
            attn = logits.softmax(dim=-1)
            self.last_attention = attn
            self.last_qkv = (q, k, v)
            out = attn @ v  # [B,heads,N,d]
        else:
            out = F.scaled_dot_product_attention(q, k, v)
        out = out * self.head_mask.view(1, -1, 1, 1)
        out = out.transpose(1, 2).reshape(b, h * w, self.num_heads * self.head_dim)
        out = self.proj(out)  # [B,N,C]
        return out.transpose(1, 2).reshape(b, c, h, w)  # the update; the caller adds the residual

    @torch.no_grad()
    def prune_heads(self, keep: list[int]) -> None:
        """Remove every head not in ``keep``: slice q/k/v rows and the output projection's columns."""
        keep = sorted(set(int(i) for i in keep))
        if any(i < 0 or i >= self.num_heads for i in keep):
            raise ValueError(f"head index out of range 0..{self.num_heads - 1}: {keep}")
        d = self.head_dim
        idx = torch.tensor([i * d + j for i in keep for j in range(d)], dtype=torch.long)
        rows = torch.cat([idx + part * self.num_heads * d for part in range(3)])  # q, k, v blocks
        # Kept heads are scaled by their mask (a soft mask < 1 must survive pruning unchanged).
        like = dict(device=self.qkv.weight.device, dtype=self.qkv.weight.dtype)
        idx, rows = idx.to(like["device"]), rows.to(like["device"])
        col_scale = self.head_mask[keep].repeat_interleave(d) if keep else torch.ones(0, **like)
        new_qkv = nn.Linear(self.channels, 3 * len(keep) * d, **like)
        new_proj = nn.Linear(len(keep) * d, self.channels, **like)
        new_qkv.weight.copy_(self.qkv.weight[rows])
        new_qkv.bias.copy_(self.qkv.bias[rows])
        new_proj.weight.copy_(self.proj.weight[:, idx] * col_scale)
        new_proj.bias.copy_(self.proj.bias)
        self.qkv, self.proj = new_qkv, new_proj
        self.num_heads = len(keep)
        self.head_mask = torch.ones(len(keep), **like)


class AttentionBlock(nn.Module):
    """Self-attention on the H/16 grid: 4x4 average pool of the H/4 body, attention, bilinear upsample,
    residual. Tokens are 16x16-pixel cells: 1,200 at 640x480, the grid of the teacher's stride-16 tap."""

    def __init__(self, channels: int, num_heads: int, head_dim: int):
        super().__init__()
        self.attn = MultiHeadSelfAttention(channels, num_heads, head_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.attn.num_heads == 0:
            return x + self.attn.proj.bias.view(1, -1, 1, 1)
        update = self.attn(F.avg_pool2d(x, ATTN_POOL))  # [B,C,H/16,W/16]
        return x + upsample(update, ATTN_POOL)


class StudentNet(nn.Module):
    """Multi-style stylizer: ``forward(image [B,3,H,W] in [0,1], style_weights [B,S]) -> [B,3,H,W]``."""

    def __init__(self, config: StudentConfig):
        super().__init__()
        config = copy.deepcopy(config)  # pruning edits the config; never alias the caller's
        config.validate()
        self.config = config
        s, c0, c1, c2 = config.num_styles, config.stem_channels, config.mid_channels, config.body_channels
        # full resolution: a light content branch (no norm: every full-resolution pass costs memory
        # traffic at 640x480) that carries edges to the output conv
        self.stem = nn.Conv2d(3, c0, 3, 1, 1, padding_mode="reflect")
        self.down1 = ConvNormAct(BlurDownConv(3, c1), c1, s)  # image -> H/2
        self.down2 = ConvNormAct(BlurDownConv(c1, c2), c2, s)  # H/4
        self.res_blocks = nn.ModuleList(ResidualBlock(c2, s) for _ in range(config.num_res_blocks))
        self.attn_blocks = nn.ModuleList(
            AttentionBlock(c2, heads, config.attn_head_dim) for heads in config.attn_heads
        )
        self.reduce = ConvNormAct(SeparableConv(c2, c1), c1, s)  # H/4, before upsampling (4x cheaper)
        self.merge = ConvNormAct(SeparableConv(c1, c1), c1, s)  # H/2: upsampled body + down1's skip
        self.to_full = nn.Conv2d(c1, c0, 1)  # H/2, before upsampling to full resolution
        self.out = nn.Conv2d(c0, 3, 3, 1, 1, padding_mode="reflect")  # full resolution

    def _body_order(self) -> list[nn.Module]:
        """Residual blocks with an attention block after every ``attn_after_res_block`` of them."""
        order, attn = [], list(self.attn_blocks)
        every = max(1, self.config.attn_after_res_block)
        for i, block in enumerate(self.res_blocks):
            order.append(block)
            if (i + 1) % every == 0 and attn:
                order.append(attn.pop(0))
        return order + attn

    def forward(self, image: torch.Tensor, style_weights: torch.Tensor) -> torch.Tensor:
        # image: [B,3,H,W] in [0,1], H and W multiples of 16; style_weights: [B,S] (or [S])
        if style_weights.dim() == 1:
            style_weights = style_weights.unsqueeze(0).expand(image.shape[0], -1)
        x = image * 2.0 - 1.0
        s0 = F.relu(self.stem(x))  # [B,c0,H,W]
        s1 = self.down1(x, style_weights)  # [B,c1,H/2,W/2]
        h = self.down2(s1, style_weights)  # [B,c2,H/4,W/4]
        for block in self._body_order():
            h = block(h, style_weights) if isinstance(block, ResidualBlock) else block(h)
        h = self.reduce(h, style_weights)  # [B,c1,H/4,W/4]
        h = self.merge(upsample(h) + s1, style_weights)  # [B,c1,H/2,W/2]
        h = F.relu(upsample(self.to_full(h)) + s0)  # [B,c0,H,W]
        return torch.sigmoid(self.out(h))  # [B,3,H,W]

    def attention_modules(self) -> list[MultiHeadSelfAttention]:
        return [block.attn for block in self.attn_blocks]

    def set_attention_capture(self, enabled: bool) -> None:
        for attn in self.attention_modules():
            attn.capture_attention = enabled
            if not enabled:
                attn.last_attention = None
                attn.last_qkv = None

    def prune_heads(self, keep_per_block: list[list[int]]) -> None:
        """Structurally remove heads; the config is updated so checkpoints reload the pruned shape."""
        if len(keep_per_block) != len(self.attn_blocks):
            raise ValueError(f"need one keep list per attention block ({len(self.attn_blocks)})")
        for attn, keep in zip(self.attention_modules(), keep_per_block):
            attn.prune_heads(keep)
        self.config.attn_heads = [attn.num_heads for attn in self.attention_modules()]

    def style_weights_for(self, style: int, batch: int = 1) -> torch.Tensor:
        """One-hot style weights [batch,S] selecting style index ``style``."""
        w = torch.zeros(batch, self.config.num_styles)
        w[:, style] = 1.0
        return w


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
