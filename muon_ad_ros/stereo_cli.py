"""``muon-ad stylize-stereo``: stylize a rectified stereo pair, two videos or two image folders.

    muon-ad stylize-stereo left.png right.png out_left.png out_right.png --style starry_night
    muon-ad stylize-stereo left.avi right.avi out_left.avi out_right.avi --side-by-side sbs.avi
    muon-ad stylize-stereo left_dir/ right_dir/ out_left/ out_right/ --mode independent

Consistent mode (the default) builds the right view from the stylized left one, carried over by the
disparity of the input pair (core/stereo.py). Folders pair their images in sorted name order; videos
pair frame by frame; the shorter input ends the run (the rest is counted as unmatched).
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np


def register(subparsers):
    from muon_ad_ros.cli import _add_model_args

    p = subparsers.add_parser("stylize-stereo", help="stylize a stereo pair (images, videos or folders), "
                              "both eyes painted alike")
    p.add_argument("left")
    p.add_argument("right")
    p.add_argument("out_left")
    p.add_argument("out_right")
    _add_model_args(p)
    p.add_argument("--mode", default="consistent", choices=["consistent", "independent"],
                   help="consistent: right view from the stylized left one via disparity (default)")
    p.add_argument("--side-by-side", default=None, metavar="PATH",
                   help="also write left|right side by side (image, video or folder like the outputs)")
    p.set_defaults(func=cmd_stylize_stereo)
    return p


def _kind(path: Path) -> str:
    from muon_ad_ros.cli import IMAGE_SUFFIXES, VIDEO_SUFFIXES, UserError

    if not path.exists():
        raise UserError(f"input not found: {path}")
    if path.is_dir():
        return "folder"
    if path.suffix.lower() in VIDEO_SUFFIXES:
        return "video"
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return "image"
    raise UserError(f"{path}: not an image ({', '.join(sorted(IMAGE_SUFFIXES))}), a video or a folder")


def side_by_side(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """HxWx3 + HxWx3 -> Hx2Wx3 (left eye on the left), the layout headset viewers take."""
    return np.ascontiguousarray(np.concatenate([left, right], axis=1))


def _pairs(left: Path, right: Path, kind: str):
    """(name, left rgb, right rgb) in order, and a callable giving the unmatched count after the run."""
    from muon_ad_ros.cli import UserError, read_rgb
    from muon_ad_ros.core.frame_sources import ImageFolderSource, VideoSource

    if kind == "image":
        return iter([(left.stem, read_rgb(left), read_rgb(right))]), lambda: 0
    cls = ImageFolderSource if kind == "folder" else VideoSource
    src_l, src_r = cls(left), cls(right)
    if kind == "folder" and len(src_l.files) != len(src_r.files):
        raise UserError(f"{left} has {len(src_l.files)} images, {right} has {len(src_r.files)}: "
                        "a folder pair needs one right image per left image")
    counts = {"left": 0, "right": 0}

    def gen():
        it_l, it_r = src_l.frames(), src_r.frames()
        for fl in it_l:
            counts["left"] += 1
            fr = next(it_r, None)
            if fr is None:
                return
            counts["right"] += 1
            yield Path(fl.label).stem if kind == "folder" else f"{fl.index:06d}", fl.rgb, fr.rgb
        counts["right"] += sum(1 for _ in it_r)

    return gen(), lambda: abs(counts["left"] - counts["right"])


class _Outputs:
    """Where stylized pairs go: image files, image folders or videos (written atomically)."""

    def __init__(self, kind: str, paths: list, fps: float = 25.0):
        from muon_ad_ros.core.contact_sheet import VideoRecorder

        self.kind, self.paths = kind, [Path(p) for p in paths]
        self.sinks = [VideoRecorder(p, fps) for p in self.paths] if kind == "video" else []

    def write(self, name: str, images: list) -> None:
        from muon_ad_ros.cli import write_rgb

        for i, (path, img) in enumerate(zip(self.paths, images)):
            if self.kind == "video":
                self.sinks[i].write(img)
            elif self.kind == "folder":
                write_rgb(path / f"{name}.png", img)
            else:
                write_rgb(path, img)

    def commit(self) -> None:
        for sink in self.sinks:
            sink.close()

    def discard(self) -> None:
        for sink in self.sinks:
            sink.discard()


def cmd_stylize_stereo(args) -> int:
    from muon_ad_ros.cli import UserError, build_stylizer
    from muon_ad_ros.core.frame_sources import VideoSource
    from muon_ad_ros.core.stereo import StereoStylizer

    left, right = Path(args.left), Path(args.right)
    kind = _kind(left)
    if _kind(right) != kind:
        raise UserError(f"{left} and {right} must both be images, videos or folders")
    pairs, unmatched = _pairs(left, right, kind)
    stereo = StereoStylizer(build_stylizer(args), mode=args.mode)
    paths = [args.out_left, args.out_right] + ([args.side_by_side] if args.side_by_side else [])
    outputs = _Outputs(kind, paths, VideoSource(left).fps if kind == "video" else 25.0)
    count, t0, ms = 0, time.perf_counter(), []
    try:
        for name, rgb_l, rgb_r in pairs:
            result = stereo.stylize_pair(rgb_l, rgb_r)
            images = [result.left, result.right]
            if args.side_by_side:
                images.append(side_by_side(result.left, result.right))
            outputs.write(name, images)
            ms.append(result.timings["total"])
            count += 1
    except BaseException:
        outputs.discard()
        raise
    if count == 0:
        outputs.discard()
        raise UserError(f"no stereo pair could be read from {left} and {right}")
    outputs.commit()
    extra = f", {unmatched()} unmatched frame(s) skipped" if unmatched() else ""
    print(f"stylized {count} pair(s) ({args.mode}) with {stereo.stylizer.describe()} in "
          f"{time.perf_counter() - t0:.2f} s, median {float(np.median(ms)):.0f} ms per pair{extra} "
          f"-> {args.out_left}, {args.out_right}")
    return 0
