"""``muon-ad``: the command-line tool (stylize files, inspect models, export, build engines, evaluate bags).

Sub-commands that live with their subsystem register themselves through ``register(subparsers)``.
Every user error is one clear line on stderr and exit status 2, never a traceback.
"""
from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
from pathlib import Path

import numpy as np

from muon_ad_ros.core.errors import MuonAdError
from muon_ad_ros.core.image_codec import DEFAULT_MAX_SIDE

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}
VIDEO_SUFFIXES = {".avi", ".mp4", ".mkv", ".mov", ".webm", ".m4v"}
# Sub-commands owned by other modules; each module provides register(subparsers).
PLUGIN_MODULES = ("muon_ad_ros.export_cli", "muon_ad_ros.evaluation.eval_bag_cli", "muon_ad_ros.demo",
                  "muon_ad_ros.stereo_cli", "muon_ad_ros.texture_cli")


class UserError(MuonAdError):
    """A mistake in the command line or the files named on it."""


def _add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="default", help="model id, card (.card.json), .onnx or .safetensors")
    p.add_argument("--backend", default="onnxruntime", choices=["onnxruntime", "torch", "tensorrt"])
    p.add_argument("--precision", default="fp32", choices=["fp32", "fp16", "int8"])
    p.add_argument("--style", default="0",
                   help="style name, index or mixture such as 'a:0.7,b:0.3' (see `muon-ad info`)")
    p.add_argument("--strength", type=float, default=1.0, help="blend with the input, 0..1")
    p.add_argument("--resolution", default="", help="network resolution WxH (default: the frame's own)")
    p.add_argument("--max-side", type=int, default=DEFAULT_MAX_SIDE,
                   help=f"cap the network's longer side (default {DEFAULT_MAX_SIDE}; 0: full size)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for onnxruntime")


def parse_resolution(text: str):
    from muon_ad_ros.core.stylizer import parse_wxh

    return parse_wxh(text, "--resolution") if text else None


def build_stylizer(args):
    from muon_ad_ros.core.stylizer import Stylizer

    return Stylizer.from_model(args.model, backend=args.backend, precision=args.precision, style=args.style,
                               strength=args.strength, resolution=parse_resolution(args.resolution),
                               max_side=args.max_side, threads=args.threads,
                               temporal=getattr(args, 'temporal', False))


def read_rgb(path: Path) -> np.ndarray:
    import cv2

    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise UserError(f"cannot read image {path}")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def write_rgb(path: Path, rgb: np.ndarray) -> None:
    import cv2

    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)):
        raise UserError(f"cannot write image {path} (unknown extension or unwritable)")


def _stylize_video(stylizer, src: Path, dst: Path) -> int:
    """Frame by frame through the stylizer (in order: a temporal stylizer sees a video);
    the output gets its name only when complete."""
    from muon_ad_ros.core.contact_sheet import VideoRecorder
    from muon_ad_ros.core.frame_sources import VideoSource

    source = VideoSource(src)
    recorder = VideoRecorder(dst, source.fps or 25.0)
    try:
        for frame in source.frames():
            recorder.write(stylizer.stylize(frame.rgb).image)
    except BaseException:
        recorder.discard()
        raise
    if recorder.close() is None:
        raise UserError(f"no frame could be read from {src}")
    return recorder.frames


def cmd_stylize(args) -> int:
    src, dst = Path(args.input), Path(args.output)
    if not src.exists():
        raise UserError(f"input not found: {src}")
    stylizer = build_stylizer(args)
    t0 = time.perf_counter()
    if src.is_dir():
        images = sorted(p for p in src.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not images:
            raise UserError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in {src}")
        for p in images:
            write_rgb(dst / (p.stem + ".png"), stylizer.stylize(read_rgb(p)).image)
        count = len(images)
    elif src.suffix.lower() in VIDEO_SUFFIXES:
        count = _stylize_video(stylizer, src, dst)
    else:
        write_rgb(dst, stylizer.stylize(read_rgb(src)).image)
        count = 1
    dt = time.perf_counter() - t0
    print(f"stylized {count} frame(s) with {stylizer.describe()} in {dt:.2f} s -> {dst}")
    if stylizer.card.get("untrained"):
        print("note: this model is UNTRAINED (seeded random weights); its output is not a real style")
    return 0


def cmd_info(args) -> int:
    from muon_ad_ros.core.model_store import resolve_model

    files = resolve_model(args.model)
    card = files.card
    if args.json:
        print(json.dumps(card, indent=2))
        return 0
    print(f"model      {files.id}{'  (UNTRAINED)' if card.get('untrained') else ''}")
    print(f"card       {files.card_path or '(none: described by the file itself)'}")
    print(f"styles     {', '.join(files.styles)}")
    for role, path in sorted(files.files.items()):
        size = f"{path.stat().st_size / 1e6:.2f} MB" if path.exists() else "MISSING"
        print(f"{role:<10} {path}  {size}")
    for key in ("parameters", "description"):
        if key in card:
            print(f"{key:<10} {card[key]}")
    return 0


def cmd_build_engine(args) -> int:
    from muon_ad_ros.core.engines.engine_cache import EngineCache, ShapeProfile, default_cache_dir
    from muon_ad_ros.core.engines.tensorrt_engine import build_serialized_engine, current_key
    from muon_ad_ros.core.model_store import resolve_model

    files = resolve_model(args.model)
    onnx_path = files.file_for("onnx_int8" if args.precision == "int8" else "onnx_fp32")
    from muon_ad_ros.core.stylizer import parse_wxh

    (min_w, min_h), (opt_w, opt_h), (max_w, max_h) = (parse_wxh(getattr(args, k), f"--{k}")
                                                      for k in ("min", "opt", "max"))
    profile = ShapeProfile((min_h, min_w), (opt_h, opt_w), (max_h, max_w))
    key = current_key(onnx_path, args.precision, profile)
    cache = EngineCache(args.cache_dir or default_cache_dir())
    t0 = time.perf_counter()
    path = cache.store(key, build_serialized_engine(onnx_path, args.precision, profile, len(files.styles)))
    print(f"built {args.precision} engine for {files.id} in {time.perf_counter() - t0:.1f} s -> {path}")
    return 0


def cmd_add_style(args) -> int:
    try:  # training-side code (torch, the teacher): imported only when this command runs
        from muon_ad_training.add_style import AddStyleConfig, add_style
    except ImportError as exc:
        raise UserError(f"add-style needs the training extras (pip install .[train]): {exc}") from None
    if not args.minutes > 0:
        raise UserError(f"--minutes must be > 0, got {args.minutes}")
    config = AddStyleConfig(minutes=args.minutes, tile=args.tile, seed=args.seed)
    card = add_style(args.image, args.name, args.out, model=args.model, content=args.content or (),
                     config=config, provenance=args.provenance)
    info = json.loads(card.read_text())
    added = info["added_styles"][-1]["training"]
    print(f"wrote {card} (styles: {', '.join(info['styles'])}; {added['steps']} steps in {added['seconds']} s, "
          f"loss {added['loss_first']:.3f} -> {added['loss_last']:.3f})")
    print(f"try: muon-ad stylize PHOTO out.png --model {card} --style {args.name}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="muon-ad", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("stylize", help="stylize an image, a folder of images or a video")
    p.add_argument("input")
    p.add_argument("output", help="output image, folder (for a folder input) or video")
    _add_model_args(p)
    p.add_argument("--temporal", action="store_true",
                   help="video and folder inputs: steady output (each frame blended with the previous "
                        "one along the input's optical flow; a folder is a sequence in name order)")
    p.set_defaults(func=cmd_stylize)

    p = sub.add_parser("info", help="describe a model: styles, files, card")
    p.add_argument("model", nargs="?", default="default")
    p.add_argument("--json", action="store_true", help="print the whole model card")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("build-engine", help="build (or rebuild) a TensorRT engine into the cache")
    p.add_argument("--model", default="default")
    p.add_argument("--precision", default="fp16", choices=["fp32", "fp16", "int8"])
    p.add_argument("--min", default="320x240", help="smallest input WxH of the shape profile")
    p.add_argument("--opt", default="640x480", help="input WxH the engine is tuned for")
    p.add_argument("--max", default="1920x1088", help="largest input WxH")
    p.add_argument("--cache-dir", default=None)
    p.set_defaults(func=cmd_build_engine)

    p = sub.add_parser("add-style", help="train a new style into a copy of a model (minutes on a CPU)")
    p.add_argument("image", help="the style image (a painting, a texture; at least 64 px per side)")
    p.add_argument("--name", required=True, help="name of the new style (letters, digits, _ or -)")
    p.add_argument("--out", required=True, help="new folder for the bundle (must not exist or be empty)")
    p.add_argument("--model", default="default", help="base model: id, card (.card.json) or .safetensors")
    p.add_argument("--minutes", type=float, default=5.0, help="wall-time budget, export included")
    p.add_argument("--tile", type=int, default=1, help="tile a small texture KxK before use (keeps its scale)")
    p.add_argument("--content", action="append", default=None, metavar="DIR",
                   help="folder of content photos to train on (repeatable; 'sample' = the bundled photos, "
                        "the default)")
    p.add_argument("--provenance", default=None, help="source and licence of the style image, for the card")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_add_style)

    for module_name in PLUGIN_MODULES:
        importlib.import_module(module_name).register(sub)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except MuonAdError as exc:
        print(f"muon-ad {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"muon-ad {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
