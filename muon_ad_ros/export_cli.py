"""``muon-ad export CHECKPOINT.safetensors --out DIR``: ONNX FP32 / FP16 / INT8 + model card.

Masked attention heads are removed structurally first; parity to FP32 is measured on real photos
and the export fails (exit 2) if a precision misses the tolerance stated in its card.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from muon_ad_ros.core.errors import ConfigError, ModelError, MuonAdError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}


def register(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("export", help="export a checkpoint to ONNX FP32/FP16/INT8 with a model card")
    p.add_argument("checkpoint", help="student checkpoint (.safetensors, with its .json beside it)")
    p.add_argument("--out", required=True, help="output directory of the bundle")
    p.add_argument("--id", default=None, help="model id (default: the checkpoint's file name)")
    p.add_argument("--precisions", default="fp32,fp16,int8", help="comma-separated subset of fp32,fp16,int8")
    p.add_argument("--calibration", nargs="*", default=None,
                   help="INT8 calibration images or folders of them (default: skimage photos)")
    p.add_argument("--parity", nargs="*", default=None,
                   help="images or folders to measure parity on (default: skimage astronaut/coffee/chelsea)")
    p.add_argument("--card-extra", default=None,
                   help="JSON file merged into the card (training, data, licences)")
    p.add_argument("--latency-runs", type=int, default=10, help="CPU latency runs per precision (0: skip)")
    p.add_argument("--no-strict", action="store_true", help="write the bundle even if a tolerance is missed")
    p.set_defaults(func=run)
    return p


def _read_rgb(path: Path):
    import cv2

    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ConfigError(f"cannot read image {path}")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def read_images(entries: list[str], what: str) -> dict:
    """name -> HxWx3 uint8 RGB from image files and folders of images."""
    paths = []
    for entry in entries:
        path = Path(entry).expanduser()
        if path.is_dir():
            paths += sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        elif path.is_file():
            paths.append(path)
        else:
            raise ConfigError(f"{what} image or folder not found: {path}")
    if not paths:
        raise ConfigError(f"no {what} images ({', '.join(sorted(IMAGE_SUFFIXES))}) in {' '.join(entries)}")
    return {p.stem if p.stem else str(p): _read_rgb(p) for p in paths}


def run(args) -> int:
    try:
        return _run(args)
    except MuonAdError as exc:
        print(f"muon-ad export: error: {exc}", file=sys.stderr)
        return 2


def _run(args) -> int:
    checkpoint = Path(args.checkpoint)
    if checkpoint.suffix != ".safetensors":
        raise ConfigError(f"expected a .safetensors checkpoint, got {checkpoint}")
    if not checkpoint.is_file():
        raise ModelError(f"checkpoint not found: {checkpoint}")
    precisions = [p.strip() for p in args.precisions.split(",") if p.strip()]
    if args.latency_runs < 0:
        raise ConfigError("--latency-runs must be >= 0")
    calibration = read_images(args.calibration, "calibration") if args.calibration else None
    parity = read_images(args.parity, "parity") if args.parity else None
    card_extra = {}
    if args.card_extra:
        try:
            card_extra = json.loads(Path(args.card_extra).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ConfigError(f"--card-extra {args.card_extra}: not a readable JSON file ({exc})") from None
        if not isinstance(card_extra, dict):
            raise ConfigError("--card-extra must hold a JSON object")
    sidecar = checkpoint.with_suffix(".json")  # training metadata saved with the checkpoint
    if sidecar.is_file():
        try:
            meta = json.loads(sidecar.read_text())
        except json.JSONDecodeError:
            meta = {}
        training = {k: v for k, v in meta.items() if k != "student_config"}
        if training:
            card_extra.setdefault("training", training)
    card_extra.setdefault("source_checkpoint", checkpoint.name)

    from muon_ad_training.export import export_bundle  # training-side deps, imported only when used

    card = export_bundle(checkpoint, args.out, args.id or checkpoint.stem, calibration_images=calibration,
                         card_extra=card_extra, precisions=precisions, parity_images=parity,
                         latency_runs=args.latency_runs, strict=not args.no_strict)
    summary = json.loads(card.read_text())
    print(f"wrote {card}")
    for precision, got in summary["metrics"]["parity"].items():
        psnr = f", PSNR min {got['psnr_min']:.1f} dB" if got.get("psnr_min") is not None else ""
        print(f"  {precision}: max |err| {got['max_abs']:.2e} vs {got['vs']}{psnr}")
    if not summary["metrics"]["tolerances_met"]:
        print("  warning: some tolerances were missed (--no-strict)", file=sys.stderr)
    return 0
