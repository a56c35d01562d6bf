"""Export a trained student as a model bundle: weights, ONNX FP32 / FP16 / INT8 and the model card.

    checkpoint or model -> remove masked heads structurally (if any) -> ONNX FP32 (core.export)
      -> FP16 and INT8 QDQ (core.quantize, INT8 calibrated on real frames)
      -> parity on real photos: FP32 vs PyTorch, FP16 / INT8 vs FP32 (max/mean abs error, PSNR)
      -> CPU latency (ORT, 2 threads, 640x480) -> card (core.bundle) with every file's sha256

A model whose measured parity misses ``TOLERANCES`` is not written (``strict``): the card's
tolerances are a promise that the files were checked against.
"""
from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np

from muon_ad_ros.core.bundle import write_bundle
from muon_ad_ros.core.checkpoint import load_student, sha256_file
from muon_ad_ros.core.errors import ConfigError, ModelError
from muon_ad_ros.core.export import export_onnx, parity_check
from muon_ad_ros.core.quantize import (PRECISIONS, Int8Config, check_tolerance, convert_fp16, measure_latency,
                                       measure_parity, preprocess, quantize_int8)
from muon_ad_ros.core.student import StudentNet
from muon_ad_training.flops import student_cost
from muon_ad_training.pruning import REPORT_HW, masked_heads, prune_structurally

# Parity every export must meet, set from measurements (docs/pruning.md, "Export parity") with margin:
# FP32 ONNX vs PyTorch is float rounding; FP16 ~10 bits of mantissa through ~20 norms; INT8 is
# judged by PSNR (on [0,1] outputs) because its error is spread over the image, not a few pixels.
TOLERANCES = {
    "fp32": {"max_abs": 1e-3, "vs": "pytorch"},
    "fp16": {"max_abs": 0.03, "psnr_min": 45.0, "vs": "onnx_fp32"},
    "int8": {"psnr_min": 26.0, "vs": "onnx_fp32"},
}

# skimage.data photos: in every install, licences as stated in skimage's docstrings.
SKIMAGE_PARITY = {"astronaut": "public domain (NASA)", "coffee": "CC0 (Rachel Michetti)",
                  "chelsea": "CC0 (Stefan van der Walt)"}
SKIMAGE_CALIBRATION = {"rocket": "public domain (SpaceX)",
                       "motorcycle_left": "Middlebury 2014 stereo (skimage)",
                       "motorcycle_right": "Middlebury 2014 stereo (skimage)",
                       "hubble_deep_field": "public domain (NASA/ESA)"}


def skimage_images(names: Sequence[str]) -> dict[str, np.ndarray]:
    """scikit-image photos by name as HxWx3 uint8 (data.skimage_image's names)."""
    from .data import skimage_image

    return {name: (skimage_image(name).permute(1, 2, 0).numpy() * 255.0 + 0.5).astype(np.uint8) for name in names}


def _load(checkpoint_or_model: Union[str, os.PathLike, StudentNet]) -> StudentNet:
    if isinstance(checkpoint_or_model, StudentNet):
        model = checkpoint_or_model
        for attn in model.attention_modules():  # captured tensors cannot be deep-copied
            attn.last_attention, attn.last_qkv = None, None
        return copy.deepcopy(model).cpu().float().eval()
    return load_student(checkpoint_or_model).eval()


def _has_masks(model: StudentNet) -> bool:
    return any(bool((attn.head_mask != 1).any()) for attn in model.attention_modules())


def export_bundle(checkpoint_or_model: Union[str, os.PathLike, StudentNet], out_dir: str | os.PathLike,
                  model_id: str, calibration_images: Optional[dict[str, np.ndarray]] = None,
                  card_extra: Optional[dict] = None, precisions: Sequence[str] = PRECISIONS,
                  parity_images: Optional[dict[str, np.ndarray]] = None, parity_max_side: int = 512,
                  int8_config: Optional[Int8Config] = None, latency_runs: int = 10,
                  strict: bool = True, image_licences: Optional[dict[str, str]] = None,
                  tolerances: Optional[dict[str, dict]] = None) -> Path:
    """Write ``<id>.safetensors``, ``<id>.onnx`` (+ ``<id>.fp16.onnx``, ``<id>.int8.onnx``) and the card.

    ``calibration_images`` / ``parity_images``: name -> HxWx3 uint8 RGB (defaults: disjoint sets of
    skimage photos); ``image_licences``: name -> licence of the caller's images. ``card_extra`` goes
    into the card as is (training config, data provenance and licences...); metrics, tolerances and
    pruning are added here. ``latency_runs=0`` skips latency. ``tolerances`` replaces the default
    tolerance of the precisions it names (a model-specific promise, recorded in the card).
    Returns the card path.
    """
    precisions = list(dict.fromkeys(precisions))
    unknown = [p for p in precisions if p not in PRECISIONS]
    if unknown or "fp32" not in precisions:
        raise ConfigError(f"precisions must include fp32 and be among {', '.join(PRECISIONS)}; "
                          f"got {precisions}")
    if not model_id or any(c in model_id for c in "/\\") or model_id.startswith("."):
        raise ConfigError(f"invalid model id {model_id!r}")
    out_dir = Path(out_dir)
    model = _load(checkpoint_or_model)
    cost_before = student_cost(model, REPORT_HW)
    pruning = None
    if _has_masks(model):
        pruning = {"masked_heads": masked_heads(model)}
        model, stats = prune_structurally(model, REPORT_HW)
        pruning.update(stats)
    cost_after = student_cost(model, REPORT_HW)
    parity_images = parity_images or skimage_images(list(SKIMAGE_PARITY))
    calibration_images = calibration_images or skimage_images(list(SKIMAGE_CALIBRATION))

    out_dir.mkdir(parents=True, exist_ok=True)
    fp32 = export_onnx(model, out_dir / f"{model_id}.onnx", metadata={"id": model_id, "precision": "fp32"})
    fp32_sha = sha256_file(fp32)
    extra_files, parity = {}, {}
    # FP32 ONNX vs PyTorch on the real images, preprocessed as the Stylizer does.
    frames = [(np.clip(preprocess(rgb, max_side=parity_max_side)[0].transpose(1, 2, 0) * 255.0 + 0.5, 0, 255)
               ).astype(np.uint8) for rgb in parity_images.values()]
    torch_errs = [parity_check(model, fp32, frames, style=s) for s in range(model.config.num_styles)]
    parity["fp32"] = {"vs": "pytorch", "max_abs": max(e["max_abs"] for e in torch_errs),
                      "mean_abs": float(np.mean([e["mean_abs"] for e in torch_errs])),
                      "samples": len(frames) * model.config.num_styles}
    if "fp16" in precisions:
        extra_files["onnx_fp16"] = convert_fp16(fp32, out_dir / f"{model_id}.fp16.onnx")
        got = measure_parity(fp32, extra_files["onnx_fp16"], parity_images.values(), parity_max_side)
        parity["fp16"] = {"vs": "onnx_fp32", **got.to_dict()}
    if "int8" in precisions:
        extra_files["onnx_int8"] = quantize_int8(fp32, out_dir / f"{model_id}.int8.onnx",
                                                 list(calibration_images.values()), int8_config)
        got = measure_parity(fp32, extra_files["onnx_int8"], parity_images.values(), parity_max_side)
        parity["int8"] = {"vs": "onnx_fp32", **got.to_dict()}
    tolerances = {p: dict((tolerances or {}).get(p, TOLERANCES[p])) for p in precisions}
    failures = _tolerance_failures(parity, tolerances)
    if failures and strict:
        for path in [fp32, *extra_files.values()]:
            Path(path).unlink(missing_ok=True)
        raise ModelError(f"export of {model_id!r} misses its parity tolerance: {'; '.join(failures)}")
    metrics = {"parity": parity, "parity_images": sorted(parity_images), "parity_max_side": parity_max_side,
               "tolerances_met": not failures,
               "cost": {"report_hw": list(REPORT_HW), "macs_before_pruning": cost_before.macs,
                        "macs": cost_after.macs, "params_before_pruning": cost_before.params,
                        "params": cost_after.params}}
    if latency_runs > 0:
        files = {"fp32": fp32, **{k.split("_")[1]: v for k, v in extra_files.items()}}
        metrics["latency_cpu"] = {"provider": "CPUExecutionProvider", "threads": 2, "note": (
            "median of round-robin runs on the exporting machine; shared or loaded machines inflate it"),
            **measure_latency(files, hw=REPORT_HW, threads=2, runs=latency_runs)}
    licences = {**SKIMAGE_CALIBRATION, **SKIMAGE_PARITY, **(image_licences or {})}

    def licence_of(names):
        return {k: licences.get(k, "not recorded (supplied by the caller)") for k in sorted(names)}

    extra = dict(card_extra or {})
    extra.setdefault("data", [])
    extra["data"] = list(extra["data"]) + [
        {"use": "int8_calibration", "images": sorted(calibration_images),
         "licences": licence_of(calibration_images)},
        {"use": "parity", "images": sorted(parity_images),
         "licences": licence_of(parity_images)},
    ]
    extra["metrics"] = {**extra.get("metrics", {}), **metrics}
    extra["tolerances"] = tolerances
    extra["pruning"] = pruning
    extra["precisions"] = precisions
    card = write_bundle(model, out_dir, model_id, card_extra=extra, extra_files=extra_files)
    if sha256_file(fp32) != fp32_sha:  # write_bundle re-exports FP32: FP16/INT8 must derive from these bytes
        raise ModelError(f"{fp32}: FP32 re-export differs from the file FP16/INT8 were derived from")
    return card


def card_data_paths(paths: Sequence[str], base_dir: str | os.PathLike) -> tuple[str, list[str]]:
    """Data paths as a card records them: (data root, paths relative to it).

    The data root is the deepest folder holding every file (e.g. ``shared/data``), written relative
    to ``base_dir`` (the training config's folder, against which the config's own paths resolve), so
    a card names no machine's absolute path and the same card is written on every machine.
    ``skimage:<name>`` entries are kept as they are.
    """
    files = [p for p in paths if not str(p).startswith("skimage:")]
    absolute = [os.path.normpath(os.path.join(base_dir, p)) for p in files]   # join keeps an absolute p
    if not absolute:
        return ".", [str(p) for p in paths]
    root = os.path.commonpath(absolute)
    if root in absolute:                      # one file (or a file and its folder): its folder
        root = os.path.dirname(root)
    relative = {p: os.path.relpath(a, root) for p, a in zip(files, absolute)}
    return os.path.relpath(root, base_dir), [relative.get(p, str(p)) for p in paths]


def _tolerance_failures(parity: dict, tolerances: dict) -> list[str]:
    from muon_ad_ros.core.quantize import Parity

    failures = []
    for precision, tol in tolerances.items():
        got = parity.get(precision)
        if got is None:
            continue
        psnr = {k: got[k] if got.get(k) is not None else float("inf") for k in ("psnr_min", "psnr_mean")}
        measured = Parity(max_abs=got["max_abs"], mean_abs=got["mean_abs"], **psnr)
        failures += [f"{precision}: {p}" for p in check_tolerance(measured, tol)]
    return failures
