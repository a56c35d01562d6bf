"""The exported model's I/O contract, without torch: tensor names, the size rule, the card's
description of each file's inputs, the ``muon_ad.*`` ONNX metadata, and the reference pixel
conversions of the float contract.

Two graph interfaces exist for the same network (one file each, listed in the card):

    float ("onnx_<precision>"):    image [N,3,H,W] float in [0,1] + style_weights [N,S] -> stylized [N,3,H,W]
    uint8 ("onnx_<precision>_u8"): image_rgb8 [N,H,W,3] uint8 RGB + style_weights [N,S] float32
                                   -> stylized_rgb8 [N,H,W,3] uint8 (cast, layout, scaling and
                                   rounding/clamping inside the graph, core/uint8_io.py)

The float file stays the contract for other consumers (TensorRT, third-party tools); the runtime
uses the uint8 file when the card lists one, because it saves two full-frame float conversions in
Python per frame.
"""
from __future__ import annotations

import json
import os

import numpy as np

from muon_ad_ros.core.errors import ModelError

SIZE_MULTIPLE = 16  # input H and W must be multiples of this (two stride-2 steps + 4x4 attention pool)
DEFAULT_OPSET = 17

INPUT_IMAGE = "image"  # float32 (float16 in FP16 files) [N,3,H,W] RGB in [0,1]
INPUT_STYLE = "style_weights"  # float32 (float16 in FP16 files) [N,S]
OUTPUT = "stylized"  # float32 (float16) [N,3,H,W] in [0,1]
INPUT_RGB8 = "image_rgb8"  # uint8 [N,H,W,3] RGB
OUTPUT_RGB8 = "stylized_rgb8"  # uint8 [N,H,W,3] RGB
UINT8_SUFFIX = "_u8"  # card role suffix of the uint8 variant: onnx_fp32 -> onnx_fp32_u8
IO_KINDS = ("float", "uint8")


def uint8_role(role: str) -> str:
    """``onnx_fp32`` -> ``onnx_fp32_u8``: the card role of a float file's uint8 variant."""
    return role + UINT8_SUFFIX


def io_description(kind: str, precision: str) -> dict:
    """What a file takes and returns, as the card records it under ``io[role]``."""
    if kind == "uint8":
        return {"inputs": {INPUT_RGB8: {"dtype": "uint8", "shape": ["N", "H", "W", 3], "layout": "NHWC RGB",
                                        "range": [0, 255]},
                           INPUT_STYLE: {"dtype": "float32", "shape": ["N", "S"]}},
                "outputs": {OUTPUT_RGB8: {"dtype": "uint8", "shape": ["N", "H", "W", 3], "layout": "NHWC RGB",
                                          "rounding": "floor(y * 255 + 0.5) clamped to 0..255"}},
                "size_multiple": SIZE_MULTIPLE}
    dtype = "float16" if precision == "fp16" else "float32"
    return {"inputs": {INPUT_IMAGE: {"dtype": dtype, "shape": ["N", 3, "H", "W"], "layout": "NCHW RGB",
                                     "range": [0.0, 1.0]},
                       INPUT_STYLE: {"dtype": dtype, "shape": ["N", "S"]}},
            "outputs": {OUTPUT: {"dtype": dtype, "shape": ["N", 3, "H", "W"], "range": [0.0, 1.0]}},
            "size_multiple": SIZE_MULTIPLE}


# -- the float contract's pixel conversions (the reference the uint8 graph must match) ----------------
def rgb8_to_nchw(rgb: np.ndarray) -> np.ndarray:
    """HxWx3 uint8 -> [1,3,H,W] float32 in [0,1]."""
    return rgb.transpose(2, 0, 1)[None].astype(np.float32) * (1.0 / 255.0)


def nchw_to_rgb8(y: np.ndarray) -> np.ndarray:
    """[1,3,H,W] float in [0,1] -> HxWx3 uint8, rounded half up and clamped."""
    return np.clip(y[0].transpose(1, 2, 0) * 255.0 + 0.5, 0, 255).astype(np.uint8)


def read_onnx_metadata(path: str | os.PathLike) -> dict:
    """The ``muon_ad.*`` metadata of an exported model (styles, student config, precision, io...)."""
    import onnx

    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # onnx raises DecodeError, OSError... for a corrupt file
        raise ModelError(f"{path}: not a readable ONNX model ({exc})") from None
    meta = {}
    for prop in proto.metadata_props:
        if prop.key.startswith("muon_ad."):
            key = prop.key[len("muon_ad."):]
            try:
                meta[key] = json.loads(prop.value)
            except json.JSONDecodeError:
                meta[key] = prop.value
    return meta
