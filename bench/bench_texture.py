"""Texture synthesis (issue 13): seams, copying, likeness against a shuffled-patch baseline, time.

On exemplars the student never saw in training (gimp_bark, gimp_cracked, gimp_rock, gimp_wood1,
gimp_marble1, gimp_ice from ../shared/data/textures; scikit-image's brick, grass, gravel), for each:

* synthesis with --tileable at --size (seed 0, and seed 1 for the copy test);
* seam ratio: mean |difference| across the wrap-around boundary of the 2x2-tiled output over the
  same between neighbouring interior rows/columns (1 = the boundary looks like any other line);
* not a copy: for 32x32 patches of the output on a grid, the highest normalised cross-correlation
  (NCC) with any 32x32 window of the exemplar, averaged over patches; the same for the seed-1
  synthesis against the seed-0 one (two independent syntheses share no patch either); the
  shuffled-patch baseline copies the exemplar by construction, but its crops (a third of the
  exemplar's side) are smaller than 32 px, so its 32x32 patches straddle crops and score below 1;
* likeness: Gram-matrix distance in a seeded random 3-stage CNN (bench/quality_report.py: a
  network *other* than the mobilenet teacher, at native pixel scale) and Hellinger distance of RGB
  histograms, each to the exemplar, for the synthesis and for the shuffled-patch baseline (random
  exemplar crops of a third of its side laid in a grid: right local statistics, seams between
  crops); lower is better;
* time: wall and process CPU time of each synthesis (the machine is shared: CPU seconds / cores is
  the better estimate of an idle machine's wall time; absolute times here swing 2x).

Writes docs/bench/texture.json, docs/textures/sheet_*.jpg (contact sheets) and the measures section
of docs/textures.md.

    OMP_NUM_THREADS=1 python bench/bench_texture.py [--size 256] [--names gimp_bark,brick] [--sizes-timing 512]
"""
from __future__ import annotations

import argparse
import sys
import time
from dataclasses import asdict
from pathlib import Path

import cv2
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, SHARED_DATA, machine, update_markdown_section, write_json  # noqa: E402
from quality_report import RandomGramNet, colour_hellinger  # noqa: E402

GIMP = ["gimp_bark", "gimp_cracked", "gimp_rock", "gimp_wood1", "gimp_marble1", "gimp_ice"]
SKIMAGE = ["brick", "grass", "gravel"]
SKIMAGE_SIDE = 128  # scikit-image's 512 px photos are cropped to a small exemplar like the others


def exemplar(name: str) -> np.ndarray:
    if name in SKIMAGE:
        import skimage.data

        img = getattr(skimage.data, name)()
        img = img[:SKIMAGE_SIDE * 2, :SKIMAGE_SIDE * 2]  # a corner, downscaled 2x: 128 px of texture
        img = cv2.resize(img, (SKIMAGE_SIDE, SKIMAGE_SIDE), interpolation=cv2.INTER_AREA)
        return np.stack([img] * 3, -1) if img.ndim == 2 else img
    bgr = cv2.imread(str(SHARED_DATA / "textures" / f"{name}.png"), cv2.IMREAD_COLOR)
    if bgr is None:
        raise SystemExit(f"cannot read {name} from {SHARED_DATA / 'textures'}")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


# -- measures ------------------------------------------------------------------------------------
def seam_ratio(img: np.ndarray) -> float:
    """Wrap-around boundary step over the mean interior step (rows and columns together)."""
    d = img.astype(np.float64)
    seam = np.abs(d[:, -1] - d[:, 0]).mean() + np.abs(d[-1] - d[0]).mean()
    inner = np.abs(np.diff(d, axis=1)).mean() + np.abs(np.diff(d, axis=0)).mean()
    return float(seam / inner)


def max_ncc(img: np.ndarray, ref: np.ndarray, patch: int = 32, grid: int = 8) -> float:
    """Mean over a grid x grid set of patch x patch crops of `img` of their best NCC in `ref`."""
    g_img = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY).astype(np.float32)
    g_ref = cv2.cvtColor(ref, cv2.COLOR_RGB2GRAY).astype(np.float32)
    h, w = g_img.shape
    best = []
    for y in np.linspace(0, h - patch, grid).astype(int):
        for x in np.linspace(0, w - patch, grid).astype(int):
            p = g_img[y:y + patch, x:x + patch]
            if p.std() < 1e-3:
                continue
            best.append(float(cv2.matchTemplate(g_ref, p, cv2.TM_CCOEFF_NORMED).max()))
    return float(np.mean(best))


def gram_distance_native(net: RandomGramNet, a: np.ndarray, b: np.ndarray) -> float:
    """quality_report's Gram distance at the images' own pixel scale (textures of different sizes
    are compared feature for feature; `fit` to 256 px would magnify a small exemplar)."""
    ga, gb = net.grams(a, long_side=None), net.grams(b, long_side=None)
    return float(np.mean([float((x - y).norm() / (y.norm() + 1e-8)) for x, y in zip(ga, gb)]))


def shuffled_baseline(ex: np.ndarray, size: int, seed: int) -> np.ndarray:
    from muon_ad_training.texture import load_exemplar, shuffled_patches

    t = load_exemplar(ex)
    out = shuffled_patches(t, (size, size), max(8, min(ex.shape[:2]) // 3), torch.Generator().manual_seed(seed))
    return (out[0].permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)


# -- run -----------------------------------------------------------------------------------------
def timed(fn):
    w0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - w0, time.process_time() - c0


def sheet(rows: list[tuple[str, np.ndarray, np.ndarray]], tile: int = 256) -> np.ndarray:
    """One row per texture: exemplar (at scale, centred), synthesis, synthesis tiled 2x2 (half scale)."""
    out = []
    for name, ex, syn in rows:
        cells = []
        canvas = np.full((tile, tile, 3), 255, np.uint8)
        e = ex[:tile, :tile]
        y0, x0 = (tile - e.shape[0]) // 2, (tile - e.shape[1]) // 2
        canvas[y0:y0 + e.shape[0], x0:x0 + e.shape[1]] = e
        cells.append(canvas)
        cells.append(cv2.resize(syn, (tile, tile), interpolation=cv2.INTER_AREA))
        cells.append(cv2.resize(np.tile(syn, (2, 2, 1)), (tile, tile), interpolation=cv2.INTER_AREA))
        row = np.concatenate([np.pad(c, ((4, 4), (4, 4), (0, 0)), constant_values=255) for c in cells], 1)
        cv2.putText(row, name, (8, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (255, 255, 255), 3, cv2.LINE_AA)
        cv2.putText(row, name, (8, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (0, 0, 0), 1, cv2.LINE_AA)
        out.append(row)
    return np.concatenate(out, 0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--names", default=",".join(GIMP + SKIMAGE))
    ap.add_argument("--sizes-timing", default="128,256", help="extra sizes timed on the first texture")
    ap.add_argument("--minutes", type=float, default=None, help="cap per synthesis (default: none)")
    ap.add_argument("--docs", default=str(REPO / "docs"))
    args = ap.parse_args()
    from muon_ad_training.texture import _teacher, TextureConfig, synthesize

    docs = Path(args.docs)
    (docs / "textures").mkdir(parents=True, exist_ok=True)
    (docs / "bench").mkdir(parents=True, exist_ok=True)
    teacher = _teacher(TextureConfig().layers, tileable=True)
    net = RandomGramNet()
    names = [n for n in args.names.split(",") if n]
    results, rows = [], []
    for name in names:
        ex = exemplar(name)

        def run(seed, size=args.size):
            return synthesize(ex, (size, size), tileable=True, seed=seed, minutes=args.minutes,
                              progress=False, teacher=teacher)

        syn0, wall, cpu = timed(lambda: run(0))
        syn1, wall1, cpu1 = timed(lambda: run(1))
        base = shuffled_baseline(ex, args.size, 0)
        r = dict(name=name, exemplar=list(ex.shape[:2]), size=args.size,
                 seam=seam_ratio(syn0), seam_seed1=seam_ratio(syn1), seam_baseline=seam_ratio(base),
                 ncc_exemplar=max_ncc(syn0, ex), ncc_other_seed=max_ncc(syn1, syn0),
                 ncc_baseline=max_ncc(base, ex),
                 gram=gram_distance_native(net, syn0, ex), gram_baseline=gram_distance_native(net, base, ex),
                 hist=colour_hellinger(syn0, ex), hist_baseline=colour_hellinger(base, ex),
                 seeds_mean_abs_diff=float(np.abs(syn0.astype(int) - syn1.astype(int)).mean()),
                 wall_s=[wall, wall1], cpu_s=[cpu, cpu1])
        print({k: (round(v, 3) if isinstance(v, float) else v) for k, v in r.items()}, flush=True)
        results.append(r)
        rows.append((name, ex, syn0))
    for i in range(0, len(rows), 3):
        cv2.imwrite(str(docs / "textures" / f"sheet_{i // 3}.jpg"), cv2.cvtColor(sheet(rows[i:i + 3]), cv2.COLOR_RGB2BGR),
                    [cv2.IMWRITE_JPEG_QUALITY, 90])
    timing = []
    for s in [int(v) for v in args.sizes_timing.split(",") if v]:
        _, wall, cpu = timed(lambda: synthesize(exemplar(names[0]), (s, s), tileable=True, seed=0,
                                                minutes=args.minutes, progress=False, teacher=teacher))
        timing.append(dict(size=s, wall_s=wall, cpu_s=cpu))
    timing.append(dict(size=args.size, wall_s=float(np.mean([w for r in results for w in r["wall_s"]])),
                       cpu_s=float(np.mean([c for r in results for c in r["cpu_s"]]))))
    payload = dict(machine=machine(), threads=torch.get_num_threads(), config=asdict(TextureConfig()),
                   results=results, timing=timing)
    write_json(docs / "bench" / "texture.json", payload)
    update_markdown_section(docs / "textures.md", "## Measures", markdown(results, timing))
    print(markdown(results, timing))


def _pair(ours: float, base: float, fmt: str) -> str:
    """'ours / baseline' with the lower (better) one in bold."""
    a, b = format(ours, fmt), format(base, fmt)
    return f"**{a}** / {b}" if ours < base else (f"{a} / **{b}**" if base < ours else f"{a} / {b}")


def markdown(results: list[dict], timing: list[dict]) -> str:
    lines = ["## Measures", "", "Produced by `OMP_NUM_THREADS=1 python bench/bench_texture.py --size 256 --sizes-timing 512` "
             "(raw numbers: docs/bench/texture.json); lower is better, the better of ours / shuffled in bold.", "",
             "| texture | seam ratio (ours / shuffled) | NCC to exemplar (ours / seed 1 vs seed 0 / shuffled) "
             "| Gram dist. (ours / shuffled) | colour Hellinger (ours / shuffled) | seed diff |",
             "|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r['name']} | {_pair(max(r['seam'], r['seam_seed1']), r['seam_baseline'], '.2f')} "
                     f"| {r['ncc_exemplar']:.2f} / {r['ncc_other_seed']:.2f} / {r['ncc_baseline']:.2f} "
                     f"| {_pair(r['gram'], r['gram_baseline'], '.3f')} "
                     f"| {_pair(r['hist'], r['hist_baseline'], '.3f')} | {r['seeds_mean_abs_diff']:.1f} |")
    n = len(results)
    wins = sum(r["gram"] < r["gram_baseline"] for r in results), sum(r["hist"] < r["hist_baseline"] for r in results)
    worst = max(max(r["seam"], r["seam_seed1"]) for r in results)
    lines += ["", f"Seam ratio: the worse of seeds 0 and 1 (worst overall {worst:.2f}). Gram distance below the "
              f"baseline on {wins[0]}/{n} textures, colour distance on {wins[1]}/{n}.", "",
              "| size | wall s | process CPU s |", "|---|---|---|"]
    lines += [f"| {t['size']} | {t['wall_s']:.0f} | {t['cpu_s']:.0f} |" for t in timing]
    lines += ["", f"The table is at {results[0]['size']}x{results[0]['size']} (the first timing rows time "
              f"{results[0]['name']} once per size; the last row is the table's mean). The exemplars are "
              "80-144 px: the six gimp textures of ../shared/data/textures the student is not trained on, and "
              "128 px crops (a 256 px corner downscaled 2x) of scikit-image's brick, grass and gravel. The Gram "
              "network is bench/quality_report.py's seeded random 3-stage CNN at the images' own scale, never "
              "part of the synthesis loss; ours and the baseline are measured at the same size against the same "
              "exemplar."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
