"""``muon-ad texture``: synthesize a (tileable) texture from an exemplar photo, optionally on a mesh.

    muon-ad texture EXEMPLAR OUT.png --size 512 [--width W --height H] [--tileable] [--seed N]
                    [--minutes M] [--mesh IN.(obj|glb|gltf|ply) --mesh-out OUT.glb [--repeat R]]

Everything that can be checked (exemplar, output paths, mesh) is checked before the minutes of
synthesis start; outputs are written atomically, so a failure never leaves a partial file. The
synthesis lives in the training package (muon_ad_training.texture, torch), imported only when this
command runs.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

from muon_ad_ros.core.errors import MuonAdError

IMAGE_OUT_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


class TextureError(MuonAdError):
    """A bad argument or file of `muon-ad texture`."""


def register(sub) -> None:
    p = sub.add_parser("texture", help="synthesize a texture from an exemplar (tileable, on a mesh)")
    p.add_argument("exemplar", help="exemplar image (at least 16x16)")
    p.add_argument("output", help="output image (.png recommended)")
    p.add_argument("--size", type=int, default=512, help="output side in pixels (square)")
    p.add_argument("--width", type=int, default=None, help="output width (overrides --size)")
    p.add_argument("--height", type=int, default=None, help="output height (overrides --size)")
    p.add_argument("--tileable", action="store_true", help="seamless when tiled (wrap-around)")
    p.add_argument("--seed", type=int, default=0, help="another seed gives another texture")
    p.add_argument("--minutes", type=float, default=5.0, help="wall-time cap of the synthesis")
    p.add_argument("--mesh", default=None, help="mesh to texture (.obj, .glb, .gltf, .ply)")
    p.add_argument("--mesh-out", default=None, help="textured mesh output (.glb)")
    p.add_argument("--repeat", type=float, default=1.0,
                   help="texture repeats across the mesh's largest extent")
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads (1 is fastest on a machine other jobs keep busy)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_texture)


def check_writable(path: Path, suffixes: tuple[str, ...], what: str) -> None:
    """Fail now (not after the synthesis) if `path` cannot be written: wrong suffix, a directory,
    or no writable existing ancestor directory."""
    if path.suffix.lower() not in suffixes:
        raise TextureError(f"{what} {path}: expected one of {', '.join(suffixes)}")
    if path.is_dir():
        raise TextureError(f"{what} {path} is a directory")
    parent = path.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK):
        raise TextureError(f"cannot write {what} {path}: {parent} is not a writable directory")


def write_image_atomic(path: Path, rgb) -> None:
    import cv2

    from muon_ad_ros.core.texture_mesh import write_file_atomic

    ok, buf = cv2.imencode(path.suffix.lower(), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise TextureError(f"cannot encode {path}")
    write_file_atomic(path, buf.tobytes())


def cmd_texture(args) -> int:
    from muon_ad_ros.core import texture_mesh

    height = args.height if args.height is not None else args.size
    width = args.width if args.width is not None else args.size
    if min(height, width) < 16:
        raise TextureError(f"output size {width}x{height}: each side must be at least 16")
    if args.repeat <= 0:
        raise TextureError(f"--repeat must be > 0, got {args.repeat}")
    if (args.mesh is None) != (args.mesh_out is None):
        raise TextureError("--mesh and --mesh-out go together")
    out = Path(args.output)
    check_writable(out, IMAGE_OUT_SUFFIXES, "output")
    mesh = None
    if args.mesh is not None:
        check_writable(Path(args.mesh_out), (".glb",), "--mesh-out")
        mesh = texture_mesh.load_mesh(args.mesh)  # no faces / unreadable: fail before synthesizing

    from muon_ad_training.texture import load_exemplar, synthesize

    load_exemplar(args.exemplar)  # unreadable / too small: one line, before the teacher loads
    if args.threads is not None:
        if args.threads < 1:
            raise TextureError(f"--threads must be >= 1, got {args.threads}")
        import torch

        torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    rgb = synthesize(args.exemplar, (height, width), tileable=args.tileable, seed=args.seed,
                     minutes=args.minutes, progress=not args.quiet)
    dt = time.perf_counter() - t0
    write_image_atomic(out, rgb)
    print(f"synthesized {width}x{height}{' tileable' if args.tileable else ''} texture in {dt:.1f} s -> {out}")
    if mesh is not None:
        path = texture_mesh.write_textured_glb(mesh, rgb, args.mesh_out, args.repeat)
        print(f"textured mesh ({len(mesh.faces)} faces, repeat {args.repeat:g}) -> {path}")
    return 0
