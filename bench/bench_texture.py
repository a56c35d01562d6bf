"""Texture synthesis (issue 13): seams, copying, likeness against a shuffled-patch baseline, time.

On exemplars no network of the synthesis was trained on (gimp_bark, gimp_cracked, gimp_rock, gimp_wood1,
gimp_marble1, gimp_ice from ../shared/data/textures; scikit-image's brick, grass, gravel; the synthesis
uses the mobilenet teacher, not the student, whose shipped styles_v2 has gimp_bark and gimp_rock as
styles), for each:

* synthesis with --tileable at --size, seeds 0..--seeds-1 (likeness, colour and seam over all of them,
  against --baseline-seeds shuffled-patch baselines; seed 1 against seed 0 for the copy test);
* seam ratio: mean |difference| across the wrap-around boundary of the 2x2-tiled output over the
  same between neighbouring interior rows/columns (1 = the boundary looks like any other line), the
  mean over seeds and the worst seed; with it, how often the synthesis's own interior lines would
  exceed the limit were they the boundary (on brick a third do: mortar edges), and where the boundary
  ranks among them (a seam ranks above nearly all; a line like any other anywhere, 0.5 on average);
* not a copy: for 32x32 patches of the output on a grid, the highest normalised cross-correlation
  (NCC) with any 32x32 window of the exemplar, averaged over patches; the same for the seed-1
  synthesis against the seed-0 one (two independent syntheses share no patch either); the
  shuffled-patch baseline copies the exemplar by construction, but its crops (a third of the
  exemplar's side) are smaller than 32 px, so its 32x32 patches straddle crops and score below 1;
* likeness (bench/texture_measures.py): Gram-matrix distance in networks the synthesis never
  optimises, Magenta's trained multistyle encoder and a seeded random 3-stage CNN (quality_report),
  border-free at the images' own pixel scale (and the random CNN with its zero border, the measure
  before 2026-12-05), and the Hellinger distance of RGB histograms, each to the exemplar, for the
  synthesis, for the shuffled-patch baseline (random exemplar crops of a third of its side laid in
  a grid: right local statistics, seams between crops) and, for scale, for the exemplar's own
  central 75 % and (scikit-image textures) the rest of the photo; lower is better; the Gram
  measures see the image shifted to the exemplar's mean colour (texture_measures.mean_aligned);
  the gimp exemplars are periodic tiles, so for them also the texture itself (crops of the
  exemplar's periodic tiling at the output size: what a perfect synthesis scores; where it does
  not score below the baseline, the measure cannot tell the baseline from the texture) and a
  shuffled-patch baseline whose crops are drawn uniformly over the period (the baseline's crops lie
  wholly inside the exemplar, so they over-represent its middle);
* time: wall and process CPU time of each synthesis (the machine is shared: CPU seconds / cores is
  the better estimate of an idle machine's wall time; absolute times here swing 2x).

Writes docs/bench/texture.json, docs/textures/sheet_*.jpg (contact sheets) and the measures section
of docs/textures.md.

    OMP_NUM_THREADS=1 python bench/bench_texture.py [--size 256] [--names gimp_bark,brick] [--sizes-timing 512]
        [--seeds 4] [--baseline-seeds 8] [--set gram_weight=0] (an ablation: TextureConfig fields as JSON)
        [--outputs DIR] (the PNGs)
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

import cv2
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, SHARED_DATA, machine, update_markdown_section, write_json  # noqa: E402
from quality_report import colour_hellinger  # noqa: E402
from texture_measures import (  # noqa: E402
    Likeness, interior_seam_exceedance, max_ncc, mean_sem, periodic_crops, quarters, seam_ratio,
)

SEAM_LIMIT = 1.2  # issue 13: seam ratio <= 1.2 with --tileable

GIMP = ["gimp_bark", "gimp_cracked", "gimp_rock", "gimp_wood1", "gimp_marble1", "gimp_ice"]
SKIMAGE = ["brick", "grass", "gravel"]
ITSELF_CROPS = 12  # crops of a periodic exemplar's tiling measured as "the texture itself"
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


def held_out_quarters(name: str) -> list[np.ndarray] | None:
    """A real new sample of the same material at the exemplar's scale: scikit-image's photo
    downscaled 2x like the exemplar, the three 128 px quarters that do not hold the exemplar (its
    top-left corner); None for the gimp exemplars (no more of their photo exists)."""
    if name not in SKIMAGE:
        return None
    import skimage.data

    img = cv2.resize(getattr(skimage.data, name)(), (SKIMAGE_SIDE * 2, SKIMAGE_SIDE * 2), interpolation=cv2.INTER_AREA)
    img = np.stack([img] * 3, -1) if img.ndim == 2 else img
    return quarters(img)[1:]


# -- measures ------------------------------------------------------------------------------------
def shuffled_baseline(ex: np.ndarray, size: int, seed: int, torus: bool = False) -> np.ndarray:
    """Crops a third of the exemplar's side in random order, edge to edge. Crops wholly inside the
    exemplar (the baseline): a pixel near its border lies in fewer of them than one in the middle, so
    the middle is over-represented. `torus` (for a periodic exemplar): crops of its periodic tiling
    at offsets uniform over one period, every pixel equally often."""
    from muon_ad_training.texture import load_exemplar, shuffled_patches

    patch = max(8, min(ex.shape[:2]) // 3)
    h, w = ex.shape[:2]
    source = np.tile(ex, (2, 2, 1))[:h + patch - 1, :w + patch - 1] if torus else ex  # offsets 0..h-1, 0..w-1
    out = shuffled_patches(load_exemplar(source), (size, size), patch, torch.Generator().manual_seed(seed))
    return (out[0].permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)


def real_sample_likeness(likeness: Likeness, name: str, ex: np.ndarray, syn: np.ndarray, base: np.ndarray) -> dict:
    """Where a real new sample of the material exists (held_out_quarters): its likeness to the
    exemplar, and that of ours and the baseline cut into quarters of the same size, each the mean
    over the quarters. It tells what the measures give a faithful texture that is not the exemplar."""
    real = held_out_quarters(name)
    if real is None or syn.shape[0] != 2 * real[0].shape[0]:
        return {}
    out = {}
    for m in ("encoder", "gram"):
        mean = lambda imgs: float(np.mean([likeness.measure(m, q, ex) for q in imgs]))  # noqa: E731
        out.update({f"{m}_real_quarters": mean(real), f"{m}_quarters": mean(quarters(syn)),
                    f"{m}_baseline_quarters": mean(quarters(base))})
    return out


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
    ap.add_argument("--set", action="append", default=[], metavar="KEY=JSON",
                    help="override a TextureConfig field for an ablation, e.g. --set gram_weight=0")
    ap.add_argument("--outputs", default=None, help="also write every synthesis here as PNG")
    ap.add_argument("--seeds", type=int, default=4, help="syntheses per texture (seeds 0..N-1), at least 2")
    ap.add_argument("--baseline-seeds", type=int, default=8, help="shuffled-patch baselines per texture")
    args = ap.parse_args()
    if args.seeds < 2 or args.baseline_seeds < 2:
        ap.error("--seeds and --baseline-seeds must be at least 2 (seed 1 is compared with seed 0)")
    from muon_ad_training.texture import _teacher, TextureConfig, synthesize

    overrides = {k: json.loads(v) for k, v in (item.split("=", 1) for item in args.set)}
    config = TextureConfig(**overrides)
    out_dir = Path(args.outputs) if args.outputs else None
    if out_dir:
        out_dir.mkdir(parents=True, exist_ok=True)

    docs = Path(args.docs)
    (docs / "textures").mkdir(parents=True, exist_ok=True)
    (docs / "bench").mkdir(parents=True, exist_ok=True)
    teacher = _teacher(config.layers, tileable=True)
    likeness = Likeness()
    names = [n for n in args.names.split(",") if n]
    results, rows = [], []
    for name in names:
        ex = exemplar(name)

        def run(seed, size=args.size):
            return synthesize(ex, (size, size), tileable=True, seed=seed, minutes=args.minutes,
                              progress=False, teacher=teacher, config=config)

        runs = [timed(lambda: run(seed)) for seed in range(args.seeds)]
        syns = [syn for syn, _, _ in runs]
        bases = [shuffled_baseline(ex, args.size, seed) for seed in range(args.baseline_seeds)]
        # the gimp patterns are periodic tiles: the texture itself, and a baseline drawing every pixel equally often
        references = dict(itself=periodic_crops(ex, args.size, ITSELF_CROPS),
                          baseline_torus=[shuffled_baseline(ex, args.size, seed, torus=True)
                                          for seed in range(args.baseline_seeds)]) if name in GIMP else {}
        syn0, syn1, base = syns[0], syns[1], bases[0]
        seams = [seam_ratio(s) for s in syns]
        r = dict(name=name, exemplar=list(ex.shape[:2]), size=args.size, seeds=args.seeds,
                 baseline_seeds=args.baseline_seeds,
                 **mean_sem("seam", seams), seam_worst=max(seams),
                 **mean_sem("seam_baseline", [seam_ratio(b) for b in bases]),
                 seam_interior_above=float(np.mean([interior_seam_exceedance(s, SEAM_LIMIT) for s in syns])),
                 seam_wrap_rank=[interior_seam_exceedance(s, seam) for s, seam in zip(syns, seams)],
                 ncc_exemplar=max_ncc(syn0, ex), ncc_other_seed=max_ncc(syn1, syn0),
                 ncc_baseline=max_ncc(base, ex),
                 exemplar_seam=seam_ratio(ex) if name in GIMP else None,
                 **likeness.all(ex, syns, bases, references),
                 **mean_sem("hist", [colour_hellinger(s, ex) for s in syns]),
                 **mean_sem("hist_baseline", [colour_hellinger(b, ex) for b in bases]),
                 **real_sample_likeness(likeness, name, ex, syn0, base),
                 seeds_mean_abs_diff=float(np.abs(syn0.astype(int) - syn1.astype(int)).mean()),
                 wall_s=[w for _, w, _ in runs], cpu_s=[c for _, _, c in runs])
        print({k: (round(v, 3) if isinstance(v, float) else v) for k, v in r.items()}, flush=True)
        results.append(r)
        if out_dir:
            for seed, img in enumerate(syns):
                cv2.imwrite(str(out_dir / f"{name}_seed{seed}.png"), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
        rows.append((name, ex, syn0))
    for i in range(0, len(rows), 3):
        cv2.imwrite(str(docs / "textures" / f"sheet_{i // 3}.jpg"), cv2.cvtColor(sheet(rows[i:i + 3]), cv2.COLOR_RGB2BGR),
                    [cv2.IMWRITE_JPEG_QUALITY, 90])
    timing = []
    for s in [int(v) for v in args.sizes_timing.split(",") if v]:
        _, wall, cpu = timed(lambda: synthesize(exemplar(names[0]), (s, s), tileable=True, seed=0,
                                                minutes=args.minutes, progress=False, teacher=teacher,
                                                config=config))
        timing.append(dict(size=s, wall_s=wall, cpu_s=cpu))
    timing.append(dict(size=args.size, wall_s=float(np.mean([w for r in results for w in r["wall_s"]])),
                       cpu_s=float(np.mean([c for r in results for c in r["cpu_s"]]))))
    payload = dict(machine=machine(), threads=torch.get_num_threads(), config=asdict(config),
                   results=results, timing=timing)
    write_json(docs / "bench" / "texture.json", payload)
    update_markdown_section(docs / "textures.md", "## Measures", markdown(results, timing))
    print(markdown(results, timing))


def _pair(ours: float, base: float, fmt: str, sems: tuple[float, float] | None = None) -> str:
    """'ours / baseline' with the lower (better) one in bold; with `sems`, each '±' its standard error."""
    a, b = format(ours, fmt), format(base, fmt)
    if sems:
        a, b = f"{a}±{sems[0]:.1g}", f"{b}±{sems[1]:.1g}"
    return f"**{a}** / {b}" if ours < base else (f"{a} / **{b}**" if base < ours else f"{a} / {b}")


def _resolution(results: list[dict]) -> list[str]:
    """What the texture itself and the uniformly drawn baseline say about the likeness counts (the
    periodic exemplars only), as one paragraph; none without them."""
    periodic = [r for r in results if "gram_itself" in r]
    if not periodic:
        return []
    n = len(periodic)
    names = lambda rs: ", ".join(r["name"] for r in rs) or "none"  # noqa: E731
    unresolved = {m: [r for r in periodic if r[m + "_itself"] >= r[m + "_baseline"]] for m in ("encoder", "gram")}
    wins = {m: sum(r[m] < r[m + "_baseline_torus"] for r in periodic) for m in ("encoder", "gram")}
    behind = [r for r in periodic if r["gram"] >= r["gram_baseline"]]
    return ["", f"The texture itself (the {n} periodic gimp exemplars, their own seam ratio "
            + ", ".join(f"{r['exemplar_seam']:.2f}" for r in periodic) + "): it does not score below the baseline "
            f"in the random CNN on {len(unresolved['gram'])}/{n} ({names(unresolved['gram'])}), in the Magenta "
            f"encoder on {len(unresolved['encoder'])}/{n} ({names(unresolved['encoder'])}); there the measure "
            "cannot tell the baseline from the texture. Ours is behind the baseline in the random CNN on "
            f"{names(behind)}. Against the shuffled-patch baseline with its crops drawn uniformly over the "
            f"period (every exemplar pixel equally often), ours is below it in the Magenta encoder on "
            f"{wins['encoder']}/{n} and in the random CNN on {wins['gram']}/{n} ("
            + "; ".join(f"{r['name']} {r['gram']:.3g} / {r['gram_baseline_torus']:.3g}" for r in periodic) + ")."]


def markdown(results: list[dict], timing: list[dict]) -> str:
    lines = ["## Measures", "", "Produced by `OMP_NUM_THREADS=1 python bench/bench_texture.py --size 256 --sizes-timing 512` "
             "(raw numbers: docs/bench/texture.json); lower is better, the better of ours / shuffled in bold. "
             "Likeness (bench/texture_measures.py): Gram distance to the exemplar in Magenta's trained multistyle "
             "encoder and in a seeded random CNN, border-free, and in the random CNN with its zero border (the "
             "measure before 2026-12-05), each with the image first shifted to the exemplar's mean colour (a "
             "constant per channel: one grey level, which no viewer sees, moves these uncentred Grams 3-10x; "
             "colour is measured by the histogram distance; the unaligned numbers are in the JSON as *_raw and "
             f"counted below); each as ours / shuffled, the mean over {results[0]['seeds']} syntheses "
             f"(seeds 0-{results[0]['seeds'] - 1}) and {results[0]['baseline_seeds']} baselines ± its standard "
             "error (the colour distance likewise), then the texture itself: for the gimp patterns, which are "
             f"periodic tiles, {ITSELF_CROPS} crops of the exemplar's periodic tiling at the output size (what a "
             "perfect synthesis scores); scikit-image's exemplars are crops of a photo, not periodic (–; a real "
             "new sample of their material is below). The exemplar's own central 75 %, the reference until "
             "2026-12-06, is in the JSON (*_exemplar_centre).", "",
             "| texture | seam ratio (ours / shuffled; our worst seed; interior lines above the limit) | NCC to exemplar (ours / seed 1 vs seed 0 / shuffled) "
             "| Gram, Magenta encoder (ours / shuffled; itself) | Gram, random CNN (ours / shuffled; itself) "
             "| Gram, random CNN, zero border (ours / shuffled; itself) | colour Hellinger (ours / shuffled) "
             "| seed diff |",
             "|---|---|---|---|---|---|---|---|"]
    for r in results:
        grams = " | ".join(f"{_pair(r[m], r[m + '_baseline'], '.3g', (r[m + '_sem'], r[m + '_baseline_sem']))}; "
                           + (f"{r[m + '_itself']:.3g}" if m + "_itself" in r else "–")
                           for m in ("encoder", "gram", "gram_padded"))
        seam = _pair(r['seam'], r['seam_baseline'], '.2f', (r['seam_sem'], r['seam_baseline_sem']))
        lines.append(f"| {r['name']} | {seam}; {r['seam_worst']:.2f}; {100 * r['seam_interior_above']:.0f} % "
                     f"| {r['ncc_exemplar']:.2f} / {r['ncc_other_seed']:.2f} / {r['ncc_baseline']:.2f} | {grams} "
                     f"| {_pair(r['hist'], r['hist_baseline'], '.3f', (r['hist_sem'], r['hist_baseline_sem']))} | {r['seeds_mean_abs_diff']:.1f} |")
    n = len(results)
    wins = {m: sum(r[m] < r[m + "_baseline"] for r in results) for m in ("encoder", "gram", "gram_padded", "hist")}
    raw = {m: sum(r[m + "_raw"] < r[m + "_baseline_raw"] for r in results) for m in ("encoder", "gram", "gram_padded")}
    worst = max(results, key=lambda r: r["seam_worst"])
    ranks = [v for r in results for v in r["seam_wrap_rank"]]
    under = sum(r["seam"] <= SEAM_LIMIT for r in results)
    lines += ["", f"Seam ratio (limit {SEAM_LIMIT}): ours the mean over its seeds ± its standard error, at most the "
              f"limit on {under}/{n} textures; the worst single synthesis {worst['seam_worst']:.2f} ({worst['name']}). "
              "One synthesis's boundary is one line of the texture: on a texture of strong lines (brick's mortar) a "
              "line that is not a seam often steps more than the mean; the last number is the fraction of the "
              "synthesis's own interior (row, column) line pairs that would exceed the limit were they the boundary "
              "(mean over seeds). Whether the boundary is distinguishable: the fraction of interior line pairs that "
              f"step more than it, over all {len(ranks)} syntheses, is {np.mean(ranks):.2f} ± "
              f"{np.std(ranks, ddof=1) / np.sqrt(len(ranks)):.2f} (0.5 when it is a line like any other; a seam "
              "pushes it towards 0). Below the baseline (means): "
              f"Magenta-encoder Gram distance on {wins['encoder']}/{n} textures, random-CNN Gram distance on "
              f"{wins['gram']}/{n} (with the zero border: {wins['gram_padded']}/{n}), colour distance on "
              f"{wins['hist']}/{n}. Unaligned (*_raw): encoder {raw['encoder']}/{n}, random CNN {raw['gram']}/{n}, "
              f"zero border {raw['gram_padded']}/{n}.", *_resolution(results), "",
              "| size | wall s | process CPU s |", "|---|---|---|"]
    lines += [f"| {t['size']} | {t['wall_s']:.0f} | {t['cpu_s']:.0f} |" for t in timing]
    real = [r for r in results if "gram_real_quarters" in r]
    if real:
        lines += ["", "A real new sample of the same material, for scale: the rest of scikit-image's photo at the "
                  "exemplar's scale (three 128 px quarters that do not hold the exemplar), and ours and the baseline (seed 0 "
                  "of each) cut into 128 px quarters; Gram distance to the exemplar (Magenta encoder / random CNN, "
                  "border-free), mean over the quarters:", "",
                  "| texture | real new sample | ours | shuffled |", "|---|---|---|---|"]
        lines += ["| " + " | ".join([r["name"]] + [f"{r['encoder' + k]:.3f} / {r['gram' + k]:.3f}"
                                                   for k in ("_real_quarters", "_quarters", "_baseline_quarters")]) + " |"
                  for r in real]
    lines += ["", f"The table is at {results[0]['size']}x{results[0]['size']} (the first timing rows time "
              f"{results[0]['name']} once per size; the last row is the table's mean). The exemplars are "
              "80-144 px: the six gimp textures of ../shared/data/textures other than gimp_leopard (the synthesis "
              "uses the offline mobilenet teacher, trained on none of them, and no student; the shipped student "
              "has gimp_bark and gimp_rock among its styles, which the synthesis never sees), and "
              "128 px crops (a 256 px corner downscaled 2x) of scikit-image's brick, grass and gravel. Neither "
              "Gram network is part of the synthesis loss (its random-filter term draws other filters, of "
              "another shape, at every step); ours and the baseline are measured at the same size against the "
              "same exemplar. Border-free: unpadded convolutions, every feature sees image pixels only; with the "
              "zero border a third of an 80 px exemplar's third-stage features see the border, which weighs on a "
              "small exemplar's statistics and not on a 256 px output's."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
