"""Analytic cost of the student: multiply-accumulates (MACs) and parameters for one input size.

Counted per module from its shapes, no forward pass, so it is exact for any resolution (even ones
too large to run) and for structurally pruned students (``attn.num_heads`` shrinks).

Conventions (the same as ``torch.utils.flop_counter``, which a test cross-checks against):
* ``macs`` counts the dense linear algebra only: convolutions (dense and depthwise), linear layers,
  the two attention matmuls (QK^T and AV, each heads*N*N*d: the N^2 terms), and the tiny
  ``style_weights @ table`` lookups of the conditional norms. FLOPs of these = 2 * macs.
* ``other_ops`` is a rough count of the elementwise work (norm statistics and affine, softmax,
  ReLU/sigmoid, residual adds, pooling). It is reported separately because it is approximate;
  ``flops = 2 * macs + other_ops``.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch.nn as nn

from muon_ad_ros.core.student import (ATTN_POOL, AttentionBlock, BlurDownConv, ConditionalInstanceNorm,
                                      ConvNormAct, ResidualBlock, SeparableConv, StudentNet, count_parameters)

# Rough elementwise op counts per element (mean, variance, normalise; affine; softmax exp+sum+div).
NORM_OPS_PER_ELEMENT = 5
AFFINE_OPS_PER_ELEMENT = 2
SOFTMAX_OPS_PER_ELEMENT = 3


@dataclass
class CostReport:
    input_hw: tuple[int, int]
    macs: int = 0  # dense linear algebra (conv, linear, attention matmuls)
    other_ops: int = 0  # approximate elementwise ops
    params: int = 0
    per_module: dict[str, int] = field(default_factory=dict)  # name -> MACs

    @property
    def flops(self) -> int:
        return 2 * self.macs + self.other_ops

    def add(self, name: str, macs: int, other_ops: int = 0) -> None:
        self.macs += int(macs)
        self.other_ops += int(other_ops)
        self.per_module[name] = self.per_module.get(name, 0) + int(macs)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["input_hw"] = list(self.input_hw)
        d["flops"] = self.flops
        d["gmacs"] = round(self.macs / 1e9, 4)
        return d


def conv_out_hw(conv: nn.Conv2d, h: int, w: int) -> tuple[int, int]:
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = conv.kernel_size, conv.stride, conv.padding, conv.dilation
    return (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1, (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1


def conv_macs(conv: nn.Conv2d, h: int, w: int) -> tuple[int, int, int]:
    """MACs of one Conv2d on an h x w input (groups-aware: depthwise is Cout*k*k per pixel)."""
    oh, ow = conv_out_hw(conv, h, w)
    kh, kw = conv.kernel_size
    macs = oh * ow * conv.out_channels * (conv.in_channels // conv.groups) * kh * kw
    return macs, oh, ow


def norm_cost(norm: ConditionalInstanceNorm, channels: int, h: int, w: int) -> tuple[int, int]:
    """(MACs, other ops) of a conditional instance norm: two [1,S]@[S,C] lookups + normalise + affine."""
    macs = 2 * norm.style_scale.shape[0] * channels
    return macs, channels * h * w * (NORM_OPS_PER_ELEMENT + AFFINE_OPS_PER_ELEMENT)


def _separable(report: CostReport, name: str, conv: SeparableConv, h: int, w: int) -> tuple[int, int]:
    macs, h, w = conv_macs(conv.depthwise, h, w)
    report.add(f"{name}.depthwise", macs)
    macs, h, w = conv_macs(conv.pointwise, h, w)
    report.add(f"{name}.pointwise", macs)
    return h, w


def _conv_any(report: CostReport, name: str, conv: nn.Module, h: int, w: int) -> tuple[int, int]:
    if isinstance(conv, SeparableConv):
        return _separable(report, name, conv, h, w)
    if isinstance(conv, BlurDownConv):  # fixed 3x3 depthwise blur, then the strided conv
        report.add(f"{name}.blur", conv.in_channels * 9 * h * w)
        return _conv_any(report, f"{name}.conv", conv.conv, h, w)
    if isinstance(conv, nn.Sequential):  # e.g. the head: depthwise 3x3 then 1x1
        for i, part in enumerate(conv):
            h, w = _conv_any(report, f"{name}.{i}", part, h, w)
        return h, w
    macs, h, w = conv_macs(conv, h, w)
    report.add(name, macs)
    return h, w


def _conv_norm_act(report: CostReport, name: str, block: ConvNormAct, h: int, w: int) -> tuple[int, int]:
    h, w = _conv_any(report, f"{name}.conv", block.conv, h, w)
    channels = block.norm.style_scale.shape[1]
    macs, other = norm_cost(block.norm, channels, h, w)
    report.add(f"{name}.norm", macs, other + channels * h * w)  # + ReLU
    return h, w


def attention_cost(block: AttentionBlock, h: int, w: int) -> tuple[int, int]:
    """(MACs, other ops) of one attention block on an h x w (H/4) map; attention runs at h/4 x w/4."""
    attn = block.attn
    c, heads, d = attn.channels, attn.num_heads, attn.head_dim
    if heads == 0:
        return 0, 0
    n = (h // ATTN_POOL) * (w // ATTN_POOL)  # tokens after the average pool
    macs = n * c * 3 * heads * d  # qkv projection
    macs += 2 * heads * n * n * d  # QK^T and AV: the quadratic terms
    macs += n * heads * d * c  # output projection
    other = c * h * w  # average pool
    other += n * c * (NORM_OPS_PER_ELEMENT + AFFINE_OPS_PER_ELEMENT)  # LayerNorm
    other += heads * n * n * (SOFTMAX_OPS_PER_ELEMENT + 1)  # softmax + 1/sqrt(d) scaling
    other += c * h * w  # residual add of the upsampled update
    return macs, other


def student_cost(model: StudentNet, hw: tuple[int, int]) -> CostReport:
    """MACs, approximate other ops and parameters of ``model`` on a [1,3,H,W] input."""
    h, w = int(hw[0]), int(hw[1])
    report = CostReport(input_hw=(h, w), params=count_parameters(model))
    report.other_ops += 3 * h * w * 2  # image * 2 - 1
    c0 = model.stem.out_channels
    _conv_any(report, "stem", model.stem, h, w)
    report.other_ops += 2 * c0 * h * w  # bias + ReLU
    h2, w2 = _conv_norm_act(report, "down1", model.down1, h, w)
    h4, w4 = _conv_norm_act(report, "down2", model.down2, h2, w2)
    res_index, attn_index = 0, 0
    for block in model._body_order():
        if isinstance(block, ResidualBlock):
            name = f"res_blocks.{res_index}"
            res_index += 1
            channels = block.norm1.style_scale.shape[1]
            for conv, norm, tag in ((block.conv1, block.norm1, "1"), (block.conv2, block.norm2, "2")):
                _separable(report, f"{name}.conv{tag}", conv, h4, w4)
                macs, other = norm_cost(norm, channels, h4, w4)
                report.add(f"{name}.norm{tag}", macs, other + channels * h4 * w4)  # + ReLU / residual add
        else:
            macs, other = attention_cost(block, h4, w4)
            report.add(f"attn_blocks.{attn_index}", macs, other)
            attn_index += 1
    _conv_norm_act(report, "reduce", model.reduce, h4, w4)
    c1 = model.merge.conv.depthwise.in_channels
    report.other_ops += 5 * c1 * h2 * w2  # bilinear x2 (4) + skip add (1)
    _conv_norm_act(report, "merge", model.merge, h2, w2)
    _conv_any(report, "to_full", model.to_full, h2, w2)
    report.other_ops += 6 * c0 * h * w  # bias, bilinear x2, skip add, ReLU
    _conv_any(report, "out", model.out, h, w)
    report.other_ops += 3 * h * w * 5  # bias + sigmoid (~4 ops per element)
    return report


def attention_share(report: CostReport) -> float:
    """Fraction of the MACs spent in attention blocks (what head pruning can remove)."""
    attn = sum(v for k, v in report.per_module.items() if k.startswith("attn_blocks."))
    return attn / report.macs if report.macs else 0.0


if __name__ == "__main__":  # python -m muon_ad_training.flops: the default student's cost table
    from muon_ad_ros.core.student import StudentConfig

    for hw in ((256, 256), (480, 640), (720, 1280)):
        full = StudentNet(StudentConfig())
        r = student_cost(full, hw)
        half = StudentNet(StudentConfig())
        half.prune_heads([list(range(n // 2)) for n in half.config.attn_heads])  # a no-op without attention
        p = student_cost(half, hw)
        print(f"{hw[0]}x{hw[1]}: {r.macs / 1e6:.1f} MMACs ({100 * attention_share(r):.1f}% attention), "
              f"{r.params} params; half the heads pruned: {p.macs / 1e6:.1f} MMACs, {p.params} params")
