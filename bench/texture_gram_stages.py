"""What the random CNN's likeness distance is made of (issue 13): per stage, for the syntheses a
bench_texture.py run wrote with --outputs and for as many shuffled-patch baselines, the Gram distance,
the Gram norm's excess over the exemplar's and the rarely firing filters' excess of summed mean
response (texture_measures.random_gram_stages). docs/textures_log.md, "2026-12-06 (later)", reads it for
gimp_ice, gimp_marble1 and gimp_wood1, where the baseline stays ahead in this measure.

    OMP_NUM_THREADS=1 python bench/bench_texture.py --size 256 --names gimp_ice --seeds 12 --outputs OUT
    python bench/texture_gram_stages.py OUT --names gimp_ice --seeds 12
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_texture import exemplar, shuffled_baseline  # noqa: E402
from quality_report import RandomGramNet, read_rgb  # noqa: E402
from texture_measures import random_gram_stages  # noqa: E402


def summary(net: RandomGramNet, imgs: list[np.ndarray], ex: np.ndarray) -> np.ndarray:
    """[stages, 3]: the means over imgs of distance, norm excess (ratio - 1) and sparse excess."""
    rows = [[(s["distance"], s["norm_ratio"] - 1.0, s["sparse_excess"]) for s in random_gram_stages(net, img, ex)]
            for img in imgs]
    return np.mean(rows, axis=0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("outputs", help="bench_texture.py --outputs folder: NAME_seedN.png")
    ap.add_argument("--names", default="gimp_ice,gimp_marble1,gimp_wood1")
    ap.add_argument("--seeds", type=int, default=4, help="syntheses per texture (seeds 0..N-1) and baselines")
    args = ap.parse_args()
    net = RandomGramNet()
    print("texture      kind  stage  distance  norm excess  sparse excess")
    for name in [n for n in args.names.split(",") if n]:
        ex = exemplar(name)
        ours = [read_rgb(Path(args.outputs) / f"{name}_seed{seed}.png") for seed in range(args.seeds)]
        bases = [shuffled_baseline(ex, ours[0].shape[0], seed) for seed in range(args.seeds)]
        for kind, imgs in (("ours", ours), ("base", bases)):
            for stage, (dist, norm, sparse) in enumerate(summary(net, imgs, ex), start=1):
                print(f"{name:<12} {kind:<5} {stage:>5}  {dist:8.5f}  {100 * norm:9.3f} %  {100 * sparse:11.1f} %")


if __name__ == "__main__":
    main()
