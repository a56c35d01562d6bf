"""ONNX export of the student and the parity check that every exported model must pass.

The exported graph has dynamic height and width (any multiple of 16), opset 17, and carries its
style names and student config in ``metadata_props`` so that an ONNX file alone says what it is.
"""
from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Iterable

import numpy as np
import torch

from muon_ad_ros.core.onnx_contract import (DEFAULT_OPSET, INPUT_IMAGE, INPUT_STYLE, OUTPUT, SIZE_MULTIPLE,
                                            read_onnx_metadata)
from muon_ad_ros.core.student import StudentNet

__all__ = ["DEFAULT_OPSET", "INPUT_IMAGE", "INPUT_STYLE", "OUTPUT", "export_onnx", "parity_check",
           "read_onnx_metadata"]


def export_onnx(model: StudentNet, path: str | os.PathLike, opset: int = DEFAULT_OPSET,
                sample_hw: tuple[int, int] = (256, 256), metadata: dict | None = None) -> Path:
    """Export ``model`` (eval mode, float32, CPU) to ONNX with dynamic batch, H and W; returns the path."""
    import onnx

    if opset < 17:
        raise ValueError("opset must be >= 17 (LayerNormalization)")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval().float().cpu()
    h, w = sample_hw
    image = torch.rand(1, 3, h, w)
    style = model.style_weights_for(0)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with warnings.catch_warnings():
        # The TorchScript exporter is the one whose dynamic-shape handling of interpolate/pixel
        # shuffle is proven here; it warns that the dynamo exporter is now the default.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model, (image, style), str(tmp),
            input_names=[INPUT_IMAGE, INPUT_STYLE], output_names=[OUTPUT],
            dynamic_axes={INPUT_IMAGE: {0: "batch", 2: "height", 3: "width"}, INPUT_STYLE: {0: "batch"},
                          OUTPUT: {0: "batch", 2: "height", 3: "width"}},
            opset_version=opset, dynamo=False,
        )
    proto = onnx.load(str(tmp))
    props = {"muon_ad.student_config": json.dumps(model.config.to_dict()),
             "muon_ad.styles": json.dumps(model.config.style_names),
             "muon_ad.size_multiple": str(SIZE_MULTIPLE)}
    props.update({f"muon_ad.{k}": (v if isinstance(v, str) else json.dumps(v))
                  for k, v in (metadata or {}).items()})
    onnx.helper.set_model_props(proto, props)
    onnx.checker.check_model(proto)
    onnx.save(proto, str(tmp))
    os.replace(tmp, path)
    return path


def parity_check(model: StudentNet, onnx_path: str | os.PathLike, images: Iterable[np.ndarray],
                 style: int = 0, providers: list[str] | None = None) -> dict:
    """Max and mean |ONNX Runtime - PyTorch| over real images (HxWx3 uint8, multiples of 16)."""
    import onnxruntime as ort

    sess = ort.InferenceSession(str(onnx_path), providers=providers or ["CPUExecutionProvider"])
    style_w = model.style_weights_for(style)
    max_err, mean_errs = 0.0, []
    for rgb in images:
        x = torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1))).float()[None] / 255.0
        with torch.no_grad():
            ref = model(x, style_w).numpy()
        got = sess.run([OUTPUT], {INPUT_IMAGE: x.numpy(), INPUT_STYLE: style_w.numpy()})[0]
        err = np.abs(got.astype(np.float32) - ref)
        max_err = max(max_err, float(err.max()))
        mean_errs.append(float(err.mean()))
    return {"max_abs": max_err, "mean_abs": float(np.mean(mean_errs)) if mean_errs else 0.0}
