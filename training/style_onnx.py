"""An exported model with one more style, derived from the base's own ONNX file (no re-export).

Re-quantizing a grown model changes every old style's INT8 output: calibration cycles the styles
over the frames (so the ranges move), and each table column's int8 scale is the maximum over all
its rows. Instead the base's INT8 graph is kept as it is and only its style tables grow:

    <table>_quantized int8 [S,C] (per-column scale s_c, zero point 0)
        -> append round(new_row / s_c), clipped to [-127, 127]        [S+1,C]
    style_weights input [B,S] -> [B,S+1];  muon_ad.styles / student_config / id metadata updated

Every activation range, weight and kernel is the base's, and ``onehot @ table`` picks the same
int8 row, so the old styles' INT8 outputs are the base's bit for bit. The new style runs with
ranges calibrated on the old styles; values outside a column's range are clipped (counted).
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from muon_ad_ros.core.errors import ModelError

QUANT_SUFFIX = "_quantized"


def _style_tables(proto, num_styles: int) -> dict[str, object]:
    """Initializers of the style tables: ``<module>.style_scale`` / ``style_shift`` (float or int8)."""
    out = {}
    for init in proto.graph.initializer:
        base = init.name[:-len(QUANT_SUFFIX)] if init.name.endswith(QUANT_SUFFIX) else init.name
        if base.endswith((".style_scale", ".style_shift")) and len(init.dims) == 2 and init.dims[0] == num_styles:
            out[base] = init
    return out


def _dequant_params(proto, quantized_name: str) -> tuple[np.ndarray, np.ndarray, int]:
    """Scale, zero point and axis of the DequantizeLinear that reads ``quantized_name``."""
    from onnx import numpy_helper

    inits = {t.name: t for t in proto.graph.initializer}
    for node in proto.graph.node:
        if node.op_type == "DequantizeLinear" and node.input[0] == quantized_name:
            axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
            scale = numpy_helper.to_array(inits[node.input[1]])
            zero = numpy_helper.to_array(inits[node.input[2]]) if len(node.input) > 2 else np.zeros_like(scale)
            return scale.astype(np.float64), zero.astype(np.int64), axis
    raise ModelError(f"no DequantizeLinear reads {quantized_name}")


def add_style_rows(src: str | os.PathLike, dst: str | os.PathLike, new_rows: dict[str, np.ndarray],
                   style_names: list[str], student_config: dict, model_id: str) -> dict:
    """Write ``dst``: ``src`` with ``new_rows[table]`` ([C] float) appended to each style table.

    Returns ``{"tables": n, "values": n, "clipped": n}`` (values outside an int8 column's range).
    """
    import onnx
    from onnx import numpy_helper

    proto = onnx.load(str(src))
    num_styles = len(style_names) - 1
    tables = _style_tables(proto, num_styles)
    if set(tables) != set(new_rows):
        raise ModelError(f"{src}: style tables {sorted(set(tables) ^ set(new_rows))} do not match the model's")
    clipped = values = 0
    for name, init in tables.items():
        old = numpy_helper.to_array(init)
        row = np.asarray(new_rows[name], dtype=np.float64).reshape(-1)
        if init.name.endswith(QUANT_SUFFIX):
            scale, zero, axis = _dequant_params(proto, init.name)
            if axis not in (1, -1) or scale.shape not in ((old.shape[1],), ()):
                raise ModelError(f"{init.name}: expected per-column (axis 1) quantization")
            info = np.iinfo(old.dtype)
            q = np.round(row / scale) + zero
            clipped += int(((q < info.min + 1) | (q > info.max)).sum())  # symmetric: -127..127
            row_q = np.clip(q, info.min + 1, info.max).astype(old.dtype)
        else:
            row_q = row.astype(old.dtype)
        values += row.size
        init.CopyFrom(numpy_helper.from_array(np.concatenate([old, row_q[None]], axis=0), init.name))
    for value in proto.graph.input:
        if value.name == "style_weights":
            value.type.tensor_type.shape.dim[-1].dim_value = len(style_names)
    props = {p.key: p.value for p in proto.metadata_props}
    props.update({"muon_ad.styles": json.dumps(style_names), "muon_ad.student_config": json.dumps(student_config),
                  "muon_ad.id": model_id})
    del proto.metadata_props[:]
    for key, value in props.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(proto)
    dst = Path(dst)
    tmp = dst.with_name(f".{dst.name}.tmp-{os.getpid()}")
    onnx.save(proto, str(tmp))
    os.replace(tmp, dst)
    return {"tables": len(tables), "values": values, "clipped": clipped}


def add_int8_from_base(card_path: Path, model, files, model_id: str) -> None:
    """The INT8 file: the base's INT8 graph with grown tables, parity of the new style measured here.

    If the base's INT8 graph does not hold the tables where expected (another exporter's naming),
    the grown FP32 model is re-quantized instead (calibrated on the export's default frames): the
    bundle is still complete, but the old styles' INT8 outputs then differ slightly from the base's,
    which the card says (``int8_source``)."""
    from muon_ad_ros.core.bundle import io_descriptions, uint8_variants
    from muon_ad_ros.core.checkpoint import atomic_write_json, sha256_file
    from muon_ad_ros.core.quantize import check_tolerance, measure_parity, quantize_int8

    from .export import SKIMAGE_CALIBRATION, SKIMAGE_PARITY, TOLERANCES, skimage_images
    from .style_tables import table_keys

    card = json.loads(card_path.read_text())
    dst = card_path.parent / f"{model_id}.int8.onnx"
    fp32 = card_path.parent / card["files"]["onnx_fp32"]["path"]
    state = model.state_dict()
    rows = {k: state[k][-1].numpy() for k in table_keys(model)}
    styles = [model.config.num_styles - 1]
    try:
        clip = add_style_rows(files.file_for("onnx_int8"), dst, rows, list(model.config.style_names),
                              model.config.to_dict(), model_id)
        source = (f"{files.id}'s INT8 graph and calibration with the style tables grown by one row, so the old "
                  "styles' INT8 outputs are the base's bit for bit")
        extra = {"styles": "the new style only (old styles: the base's INT8 bytes)",
                 "table_values_clipped": clip["clipped"]}
    except ModelError as exc:
        quantize_int8(fp32, dst, list(skimage_images(list(SKIMAGE_CALIBRATION)).values()))
        source = f"re-quantized from the grown FP32 model ({exc}); old styles' INT8 outputs differ from the base's"
        styles, extra = None, {"styles": "all"}
    got = measure_parity(fp32, dst, skimage_images(list(SKIMAGE_PARITY)).values(),
                         card["metrics"]["parity_max_side"], styles=styles)
    tolerance = dict((files.card.get("tolerances") or {}).get("int8", TOLERANCES["int8"]))
    written = {"onnx_int8": dst}
    written.update(uint8_variants(written))  # the uint8-I/O wrapper, as write_bundle makes for every ONNX
    for role, path in written.items():
        card["files"][role] = {"path": path.name, "sha256": sha256_file(path), "bytes": path.stat().st_size}
    card["io"] = io_descriptions(card["files"])
    card["metrics"]["parity"]["int8"] = {"vs": "onnx_fp32", **got.to_dict(), **extra}
    card["metrics"]["tolerances_met"] = card["metrics"]["tolerances_met"] and not check_tolerance(got, tolerance)
    card["tolerances"]["int8"] = tolerance
    card["precisions"] = card["precisions"] + ["int8"]
    card["int8_source"] = source
    atomic_write_json(card_path, card)
