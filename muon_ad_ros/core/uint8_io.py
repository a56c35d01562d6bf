"""The uint8 variant of an exported graph: pixel conversions moved from Python into the model.

    image_rgb8 [N,H,W,3] uint8 -> Transpose(0,3,1,2) -> Cast float32 -> * 1/255 (-> Cast float16)
        -> the float graph, unchanged ->
    stylized [N,3,H,W] (-> Cast float32) -> * 255 -> + 0.5 -> Clip(0, 255) -> Cast uint8
        -> Transpose(0,2,3,1) -> stylized_rgb8 [N,H,W,3] uint8

The arithmetic is the float contract's reference conversion (core/onnx_contract.rgb8_to_nchw and
nchw_to_rgb8: x / 255 in float32, floor(y * 255 + 0.5) clamped; Cast truncates, and the value is
non-negative after the clip), so the output matches today's float path to within a level.
Transposes run on uint8 (a quarter of the bytes of float32). ``style_weights`` is float32 in every
variant (a Cast to float16 inside FP16 files), so a caller feeds every precision the same arrays.

Torch-free (onnx only): a robot can add the variant to a model it was given.
"""
from __future__ import annotations

import os
from pathlib import Path

from muon_ad_ros.core.errors import ModelError
from muon_ad_ros.core.onnx_contract import INPUT_IMAGE, INPUT_RGB8, INPUT_STYLE, OUTPUT, OUTPUT_RGB8

IO_KEY = "muon_ad.io"


def _dims(value_info) -> list:
    return [d.dim_param or d.dim_value for d in value_info.type.tensor_type.shape.dim]


def uint8_model(proto):
    """A copy of the float model ``proto`` with uint8 HWC image I/O (see the module docstring)."""
    import onnx
    from onnx import TensorProto, helper

    model = onnx.ModelProto()
    model.CopyFrom(proto)
    g = model.graph
    inputs = {i.name: i for i in g.input}
    outputs = {o.name: o for o in g.output}
    if set(inputs) - {i.name for i in g.initializer} != {INPUT_IMAGE, INPUT_STYLE} or set(outputs) != {OUTPUT}:
        raise ModelError(f"expected a float model with inputs {INPUT_IMAGE}, {INPUT_STYLE} and output {OUTPUT}, "
                         f"got {sorted(inputs)} -> {sorted(outputs)}")
    float_type = inputs[INPUT_IMAGE].type.tensor_type.elem_type  # FLOAT or FLOAT16
    n, _, h, w = _dims(inputs[INPUT_IMAGE])
    styles = _dims(inputs[INPUT_STYLE])
    pre = [
        helper.make_node("Transpose", [INPUT_RGB8], ["u8_nchw"], perm=[0, 3, 1, 2], name="u8_to_nchw"),
        helper.make_node("Cast", ["u8_nchw"], ["u8_f32"], to=TensorProto.FLOAT, name="u8_cast_in"),
        helper.make_node("Mul", ["u8_f32", "u8_inv255"],
                         [INPUT_IMAGE if float_type == TensorProto.FLOAT else "u8_scaled"], name="u8_scale_in"),
    ]
    post_in = OUTPUT
    post = []
    if float_type != TensorProto.FLOAT:
        pre += [helper.make_node("Cast", ["u8_scaled"], [INPUT_IMAGE], to=float_type, name="u8_cast_half_in"),
                helper.make_node("Cast", ["u8_style_f32"], [INPUT_STYLE], to=float_type, name="u8_cast_style")]
        post.append(helper.make_node("Cast", [OUTPUT], ["u8_out_f32"], to=TensorProto.FLOAT, name="u8_cast_half_out"))
        post_in = "u8_out_f32"
    post += [
        helper.make_node("Mul", [post_in, "u8_255"], ["u8_out_scaled"], name="u8_scale_out"),
        helper.make_node("Add", ["u8_out_scaled", "u8_half"], ["u8_out_round"], name="u8_round_out"),
        helper.make_node("Clip", ["u8_out_round", "u8_zero", "u8_255"], ["u8_out_clip"], name="u8_clip_out"),
        helper.make_node("Cast", ["u8_out_clip"], ["u8_out_nchw"], to=TensorProto.UINT8, name="u8_cast_out"),
        helper.make_node("Transpose", ["u8_out_nchw"], [OUTPUT_RGB8], perm=[0, 2, 3, 1], name="u8_to_nhwc"),
    ]
    g.initializer.extend([helper.make_tensor(name, TensorProto.FLOAT, [], [value]) for name, value in
                          (("u8_inv255", 1.0 / 255.0), ("u8_255", 255.0), ("u8_half", 0.5), ("u8_zero", 0.0))])
    style_in = INPUT_STYLE if float_type == TensorProto.FLOAT else "u8_style_f32"
    new_inputs = [helper.make_tensor_value_info(INPUT_RGB8, TensorProto.UINT8, [n, h, w, 3]),
                  helper.make_tensor_value_info(style_in, TensorProto.FLOAT, styles)]
    if style_in != INPUT_STYLE:  # FP16: the float32 style input is a new name, cast to the old one
        new_inputs[1].name = INPUT_STYLE
        pre[-1].input[0] = INPUT_STYLE
        for node in g.node:  # the original consumers read the cast's output
            node.input[:] = ["u8_style_half" if i == INPUT_STYLE else i for i in node.input]
        pre[-1].output[0] = "u8_style_half"
    keep = [i for i in g.input if i.name not in (INPUT_IMAGE, INPUT_STYLE)]
    del g.input[:]
    g.input.extend(new_inputs + keep)
    del g.output[:]
    g.output.extend([helper.make_tensor_value_info(OUTPUT_RGB8, TensorProto.UINT8, [n, h, w, 3])])
    nodes = pre + list(g.node) + post
    del g.node[:]
    g.node.extend(nodes)
    props = {p.key: p.value for p in model.metadata_props}
    props[IO_KEY] = "uint8"
    onnx.helper.set_model_props(model, props)
    onnx.checker.check_model(model)
    return model


def write_uint8_variant(src: str | os.PathLike, dst: str | os.PathLike | None = None) -> Path:
    """Write the uint8 variant of the float ONNX ``src`` (default ``<stem>.u8.onnx`` beside it),
    atomically; returns its path."""
    import onnx

    src = Path(src)
    dst = Path(dst) if dst is not None else uint8_path(src)
    try:
        proto = onnx.load(str(src))
    except Exception as exc:  # DecodeError, OSError... for a corrupt file
        raise ModelError(f"{src}: not a readable ONNX model ({exc})") from None
    model = uint8_model(proto)
    tmp = dst.with_name(f".{dst.name}.tmp-{os.getpid()}")
    try:
        onnx.save(model, str(tmp))
        os.replace(tmp, dst)
    finally:
        tmp.unlink(missing_ok=True)
    return dst


def uint8_path(float_path: str | os.PathLike) -> Path:
    """``x.onnx`` -> ``x.u8.onnx``, ``x.fp16.onnx`` -> ``x.fp16.u8.onnx``."""
    p = Path(float_path)
    return p.with_name(p.name[: -len(".onnx")] + ".u8.onnx") if p.name.endswith(".onnx") else p.with_suffix(".u8.onnx")
