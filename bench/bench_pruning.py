"""Pruning Pareto of the trained student: cost (FLOPs, parameters, CPU latency) vs quality per sparsity.

    python bench/bench_pruning.py --model <unpruned student.safetensors> \
        [--finetuned models/muon_ad_styles_v1.safetensors]
    python bench/bench_pruning.py --quick     # smoke run (fewer photos and runs)

Method (a) of the issue, no fine-tuning: the trained student is run on real photos with attention
capture; each head's normalised attention entropy (pruning.normalised_entropy, 0 = one-hot,
1 = uniform) is averaged over every (photo, style) pair, loaded into an ``EntropyPruner``, and for
each sparsity ``update_masks`` masks the most uniform heads (the phase-3 rule: global ranking,
never a block's last head); ``prune_structurally`` removes them and the result is exported to ONNX
(core.export). The photos used for the entropies are disjoint from the evaluation photos.

``--finetuned`` adds the points of a student whose phase 3 already pruned and fine-tuned it (the
shipped model): as it is, and pruned further by the same rule, so "prune, no fine-tune" and
"prune + 500 steps of fine-tuning" can be compared at the same sparsity.

Per model:
* MACs / FLOPs / parameters at 640x480 (training/flops.py, analytic);
* CPU latency: ONNX Runtime CPUExecutionProvider, 2 threads, 640x480, all models round-robin
  (core.quantize.measure_latency);
* content: luminance SSIM to the photo (evaluation.metrics.luminance_ssim);
* style: Gram distance in a seeded random CNN and colour-histogram Hellinger distance to the
  style reference (both imported from bench/quality_report.py, as the quality report measures them);
* fidelity to the unpruned student: PSNR of the output vs the sparsity-0 output.
Quality: the quality report's 6 photos (long side 480) x the model's styles, ONNX FP32.

Results: docs/bench/pruning.json, docs/bench/pruning_pareto.png and the ``## Pruning Pareto``
section of docs/benchmarks.md.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, SHARED_DATA, machine, update_markdown_section, write_json  # noqa: E402
from quality_report import PHOTOS, RandomGramNet, colour_hellinger, fit, gram_distance, read_rgb  # noqa: E402

from muon_ad_ros.core.checkpoint import load_student  # noqa: E402
from muon_ad_ros.core.export import export_onnx  # noqa: E402
from muon_ad_ros.core.quantize import measure_latency, one_hot, preprocess, psnr  # noqa: E402
from muon_ad_ros.core.student import StudentNet  # noqa: E402
from muon_ad_ros.evaluation.metrics import luminance_ssim  # noqa: E402
from muon_ad_training.flops import attention_share, student_cost  # noqa: E402
from muon_ad_training.pruning import (REPORT_HW, EntropyPruner, PruningConfig, normalised_entropy,  # noqa: E402
                                      prune_structurally, self_attention_mass)
from muon_ad_training.train_config import load_config  # noqa: E402

HEADING = "## Pruning Pareto"
CONFIG = REPO / "config" / "train" / "styles_v1.yaml"
SHIPPED = REPO / "models" / "muon_ad_styles_v1.safetensors"
RUN_CHECKPOINTS = REPO / "runs" / "styles_v1" / "checkpoints"
EVAL_LONG_SIDE = 480  # quality_report's size
OBSERVE_HW = REPORT_HW  # entropies are observed where the model runs: 640x480


def default_model() -> Path:
    """The newest checkpoint of the styles_v1 run whose heads are all unmasked (the end of phase 2
    at the latest: phase 3 masks heads)."""
    for folder in sorted(RUN_CHECKPOINTS.glob("step_*"), reverse=True):
        weights = folder / "student.safetensors"
        if weights.is_file() and not any(bool((a.head_mask == 0).any())
                                         for a in load_student(weights).attention_modules()):
            return weights
    raise SystemExit(f"no unpruned checkpoint in {RUN_CHECKPOINTS}: pass --model")


def style_references(names: list[str]) -> list[np.ndarray]:
    """The style images of the shipped styles (styles_v1.yaml, as quality_report reads them: untiled)."""
    cfg = load_config(CONFIG)
    paths = {s.name: (CONFIG.parent / s.path).resolve() for s in cfg.data.styles}
    missing = [n for n in names if n not in paths]
    if missing:
        raise SystemExit(f"styles {missing} are not in {CONFIG}")
    return [read_rgb(paths[n]) for n in names]


@torch.no_grad()
def observed_entropies(model: StudentNet, photos: list[np.ndarray]) -> dict:
    """Mean normalised entropy and self-attention mass per head over every (photo, style), as an
    EntropyPruner state (``load_state_dict``)."""
    model.eval().set_attention_capture(True)
    modules = model.attention_modules()
    ent = [torch.zeros(m.num_heads) for m in modules]
    diag = [torch.zeros(m.num_heads) for m in modules]
    n = 0
    for rgb in photos:
        x = torch.from_numpy(preprocess(rgb, hw=OBSERVE_HW))
        for s in range(model.config.num_styles):
            model(x, model.style_weights_for(s))
            for i, m in enumerate(modules):
                ent[i] += normalised_entropy(m.last_attention)
                diag[i] += self_attention_mass(m.last_attention)
            n += 1
    model.set_attention_capture(False)
    for m in modules:
        m.last_attention, m.last_qkv = None, None
    return {"heads": [m.num_heads for m in modules], "entropy": [e / n for e in ent],
            "diag": [d / n for d in diag], "masks": [m.head_mask.detach().clone() for m in modules],
            "observations": n, "flips": 0}


def prune_to(model: StudentNet, state: dict | None, sparsity: float) -> tuple[StudentNet, dict]:
    """A structurally pruned copy of ``model`` with ``sparsity`` of its heads removed by the rule
    (entropies from ``state``), or, with ``state=None``, with the heads it has masked removed."""
    work = load_copy(model)
    if state is not None:  # None: keep the model's own masks
        pruner = EntropyPruner(work, PruningConfig(target_sparsity=sparsity, min_observations=0, hysteresis=0.0))
        pruner.load_state_dict(state)
        pruner.update_masks(sparsity)
    work, stats = prune_structurally(work, REPORT_HW)
    return work.eval(), stats


def cost(model: StudentNet) -> dict:
    """MACs and parameters at 640x480 (training/flops.py, analytic)."""
    r = student_cost(model, REPORT_HW)
    return {"macs": r.macs, "params": r.params, "attention_share": round(attention_share(r), 4)}


def load_copy(model: StudentNet) -> StudentNet:
    fresh = StudentNet(model.config)
    fresh.load_state_dict(model.state_dict())
    return fresh.eval()


class OnnxModel:
    def __init__(self, path: Path, threads: int):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        self.num_styles = self.session.get_inputs()[1].shape[-1]

    def stylize(self, rgb: np.ndarray, style: int) -> np.ndarray:
        """HxWx3 uint8 -> HxWx3 uint8 at the input size (the network runs at a multiple of 16)."""
        import cv2

        x = preprocess(rgb, max_side=EVAL_LONG_SIDE)
        y = self.session.run(["stylized"], {"image": x, "style_weights": one_hot(style, self.num_styles)})[0]
        out = (np.clip(y[0].transpose(1, 2, 0), 0, 1) * 255 + 0.5).astype(np.uint8)
        if out.shape[:2] != rgb.shape[:2]:
            out = cv2.resize(out, (rgb.shape[1], rgb.shape[0]), interpolation=cv2.INTER_AREA)
        return out


def quality(model: OnnxModel, photos, styles, gram_net, reference=None) -> tuple[dict, list]:
    ssims, grams, colours, psnrs, outs = [], [], [], [], []
    for p_i, p in enumerate(photos):
        for k, style in enumerate(styles):
            out = model.stylize(p, k)
            outs.append(out)
            ssims.append(luminance_ssim(p, out))
            grams.append(gram_distance(gram_net, out, style))
            colours.append(colour_hellinger(out, style))
            if reference is not None:
                psnrs.append(psnr(reference[len(outs) - 1].astype(np.float32) / 255,
                                  out.astype(np.float32) / 255))
    q = {"ssim_luma": float(np.mean(ssims)), "gram_distance_to_style": float(np.mean(grams)),
         "colour_hellinger_to_style": float(np.mean(colours)),
         "psnr_vs_unpruned_db": float(np.mean(psnrs)) if psnrs else None}
    return q, outs


def variants(base: StudentNet, base_state: dict, sparsities, finetuned: StudentNet | None,
             ft_state: dict | None) -> list[dict]:
    """[{name, model, sparsity, stats, entry}] of every model to measure."""
    total = sum(base_state["heads"])
    out = []
    for s in sparsities:
        model, stats = prune_to(base, base_state, s)
        out.append({"name": f"s{s:g}", "kind": "prune, no fine-tune", "target_sparsity": s, "model": model,
                    "heads": stats["heads_after"], "kept_heads": stats["kept_heads"]})
    if finetuned is not None:
        ft_heads = sum(ft_state["heads"])
        for s in sparsities:
            removed = round(s * total) - (total - ft_heads)  # more heads to remove from the shipped model
            if removed < 0:
                continue
            model, stats = prune_to(finetuned, ft_state, removed / ft_heads)
            tag = "phase-3 fine-tuned" + (", then pruned further (no fine-tune)" if removed else "")
            out.append({"name": f"ft_s{s:g}", "kind": tag, "target_sparsity": s, "model": model,
                        "heads": stats["heads_after"], "kept_heads": stats["kept_heads"]})
    for v in out:
        v["sparsity"] = 1.0 - sum(v["heads"]) / total
    return out


def run(args) -> dict:
    torch.set_num_threads(args.threads)
    base = load_student(args.model)
    names = base.config.style_names
    styles = style_references(names)
    all_photos = sorted(p for p in (SHARED_DATA / "photos").iterdir() if p.suffix.lower() in (".jpg", ".png"))
    eval_names = PHOTOS[: args.eval_photos]
    observe_paths = [p for p in all_photos if p.name not in PHOTOS][: args.observe_photos]
    observe = [read_rgb(p) for p in observe_paths]
    eval_photos = [fit(read_rgb(SHARED_DATA / "photos" / n), EVAL_LONG_SIDE) for n in eval_names]
    t0 = time.perf_counter()
    base_state = observed_entropies(base, observe)
    print(f"entropies over {base_state['observations']} (photo, style) pairs in {time.perf_counter() - t0:.0f} s:")
    for i, e in enumerate(base_state["entropy"]):
        print(f"  block {i}: entropy {[round(float(v), 4) for v in e]}, "
              f"self-attention {[round(float(v), 4) for v in base_state['diag'][i]]}")
    finetuned = ft_state = None
    if args.finetuned:
        finetuned = load_student(args.finetuned)
        if any(bool((a.head_mask == 0).any()) for a in finetuned.attention_modules()):
            # a phase-3 checkpoint still carries its masks: remove the masked heads as the export does
            finetuned, _ = prune_to(finetuned, None, 0.0)
        if finetuned.config.style_names != names:
            raise SystemExit(f"{args.finetuned} has styles {finetuned.config.style_names}, {args.model} {names}")
        ft_state = observed_entropies(finetuned, observe)
    models = variants(base, base_state, args.sparsities, finetuned, ft_state)
    gram_net = RandomGramNet()
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_pruning_") as tmp:
        files = {}
        for v in models:
            files[v["name"]] = export_onnx(v["model"], Path(tmp) / f"{v['name']}.onnx")
        reference = None
        for v in models:
            q, outs = quality(OnnxModel(files[v["name"]], args.threads), eval_photos, styles, gram_net, reference)
            if reference is None:  # the first variant is sparsity 0 of the base model
                reference = outs
                q["psnr_vs_unpruned_db"] = None
            c = cost(v["model"])
            rows.append({"name": v["name"], "kind": v["kind"], "sparsity": round(v["sparsity"], 4),
                         "heads": v["heads"], "kept_heads": v["kept_heads"], **c,
                         "dense_flops": 2 * c["macs"], **q})
            print(f"  {v['name']:<8} heads {v['heads']}  SSIM {q['ssim_luma']:.4f}  "
                  f"gram {q['gram_distance_to_style']:.4f}  hellinger {q['colour_hellinger_to_style']:.4f}",
                  flush=True)
        print(f"latency: {args.runs} round-robin runs of {len(files)} models ...", flush=True)
        lat = measure_latency(files, hw=REPORT_HW, threads=2, runs=args.runs)
    for r in rows:
        r["latency_median_ms"], r["latency_p90_ms"] = lat[r["name"]]["median_ms"], lat[r["name"]]["p90_ms"]
    photo_style = {"gram_distance_to_style": float(np.mean([gram_distance(gram_net, p, s)
                                                            for p in eval_photos for s in styles])),
                   "colour_hellinger_to_style": float(np.mean([colour_hellinger(p, s)
                                                               for p in eval_photos for s in styles]))}
    return {"model": str(Path(args.model)), "finetuned": str(args.finetuned) if args.finetuned else None,
            "styles": names, "eval_photos": eval_names, "observe_photos": [p.name for p in observe_paths],
            "observe_hw": list(OBSERVE_HW), "latency": {"provider": "CPUExecutionProvider", "threads": 2,
                                                        "hw": list(REPORT_HW), "runs": args.runs},
            "entropy": [[round(float(v), 4) for v in e] for e in base_state["entropy"]],
            "self_attention": [[round(float(v), 4) for v in d] for d in base_state["diag"]],
            "finetuned_entropy": [[round(float(v), 4) for v in e] for e in ft_state["entropy"]] if ft_state else None,
            "photo_itself": photo_style, "rows": rows}


# ----------------------------------------------------------------------------- report


def plot(res: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [("ssim_luma", "content: luminance SSIM to the photo (higher = better)"),
            ("gram_distance_to_style", "style: Gram distance, random CNN (lower = better)"),
            ("colour_hellinger_to_style", "style: colour Hellinger distance (lower = better)")]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    for ax, (key, title) in zip(axes, keys):
        for kind, colour, marker in (("prune, no fine-tune", "tab:blue", "o"), ("phase-3", "tab:orange", "s")):
            pts = [r for r in res["rows"] if r["kind"].startswith(kind)]
            if not pts:
                continue
            ax.plot([r["latency_median_ms"] for r in pts], [r[key] for r in pts], marker=marker, color=colour,
                    ls="-" if kind.startswith("prune") else ":", label=kind if kind.startswith("prune")
                    else "phase-3 fine-tuned (shipped) +- further pruning")
            for r in pts:
                ax.annotate(f"{r['sparsity']:.0%} {r['heads']}", (r["latency_median_ms"], r[key]),
                            textcoords="offset points", xytext=(4, 4), fontsize=7, color=colour)
        ax.set_xlabel("CPU latency, ms (ORT, 2 threads, 640x480, median)")
        ax.set_title(title, fontsize=9)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    model = "/".join(Path(res["model"]).parts[-2:])
    fig.suptitle(f"Head pruning Pareto of the styles_v1 student ({model}); labels: sparsity [heads per block]")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def section(res: dict) -> str:
    m = res["machine"]
    lines = [
        HEADING, "",
        f"Student: `{res['model']}`" + (f"; fine-tuned points: `{res['finetuned']}`" if res["finetuned"] else "")
        + f" (styles {', '.join(res['styles'])}). Method (a), no fine-tuning: head entropies observed on "
        f"{len(res['observe_photos'])} real photos x {len(res['styles'])} styles at 640x480 (disjoint from the "
        f"evaluation photos), averaged, loaded into `EntropyPruner`, `update_masks(s)` (the phase-3 rule: "
        "most uniform heads first, global ranking, never a block's last head), `prune_structurally`, ONNX "
        "FP32 export. Cost at 640x480 (analytic, `training/flops.py`); latency: ONNX Runtime CPU EP, 2 "
        f"threads, median of {res['latency']['runs']} round-robin runs. Quality on the quality report's "
        f"{len(res['eval_photos'])} photos (long side 480) x {len(res['styles'])} styles: luminance SSIM to the "
        "photo, Gram distance (seeded random CNN) and colour Hellinger distance to the style image "
        "(`bench/quality_report.py`'s metrics), PSNR of the output vs the unpruned student's. "
        f"{m['cpu']}, {m['cores']} cores, shared with other jobs, {m['date']}.",
        "",
        "Head entropies (normalised, 1 = uniform) per block: "
        + "; ".join(f"block {i}: {e}" for i, e in enumerate(res["entropy"])) + ".",
        "",
        "| model | sparsity | heads | MMACs | GFLOPs (2 x MACs) | params | latency ms (p90) | SSIM | Gram dist | "
        "colour Hellinger | PSNR vs unpruned |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in res["rows"]:
        p = f"{r['psnr_vs_unpruned_db']:.1f} dB" if r["psnr_vs_unpruned_db"] is not None else "-"
        lines.append(f"| {r['kind']} | {r['sparsity']:.0%} | {r['heads']} | {r['macs'] / 1e6:.1f} | "
                     f"{r['dense_flops'] / 1e9:.3f} | {r['params']:,} | {r['latency_median_ms']:.0f} "
                     f"({r['latency_p90_ms']:.0f}) | {r['ssim_luma']:.4f} | {r['gram_distance_to_style']:.4f} | "
                     f"{r['colour_hellinger_to_style']:.4f} | {p} |")
    ps = res["photo_itself"]
    lines += ["", f"Reference: the photo itself has SSIM 1, Gram distance {ps['gram_distance_to_style']:.4f} "
              f"and colour Hellinger {ps['colour_hellinger_to_style']:.4f} to the styles.", ""]
    lines += res.get("notes", [])
    lines += ["", "![Pruning Pareto](bench/pruning_pareto.png)", "",
              f"Reproduce: `{res['command']}` (docs/bench/pruning.json).", ""]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, help="trained, unpruned student .safetensors (default: the newest "
                    "unmasked checkpoint of runs/styles_v1)")
    ap.add_argument("--finetuned", type=Path, help="a phase-3 pruned + fine-tuned student, extra points (default: "
                    "models/muon_ad_styles_v1.safetensors if it exists; 'none' to skip)")
    ap.add_argument("--sparsities", type=float, nargs="+", default=[0.0, 0.25, 0.5, 0.75])
    ap.add_argument("--observe-photos", type=int, default=17, help="photos for the entropies (disjoint from eval)")
    ap.add_argument("--eval-photos", type=int, default=len(PHOTOS))
    ap.add_argument("--runs", type=int, default=60, help="latency runs per model (round-robin)")
    ap.add_argument("--threads", type=int, default=2, help="torch / ORT threads for the quality part")
    ap.add_argument("--quick", action="store_true", help="smoke run: 3 + 2 photos, 3 latency runs")
    ap.add_argument("--note", action="append", default=[], help="a sentence for the docs section")
    ap.add_argument("--json", default=str(REPO / "docs" / "bench" / "pruning.json"))
    ap.add_argument("--plot", default=str(REPO / "docs" / "bench" / "pruning_pareto.png"))
    ap.add_argument("--markdown", default=str(REPO / "docs" / "benchmarks.md"),
                    help="benchmarks page whose section is replaced ('' = do not write)")
    args = ap.parse_args()
    if args.quick:
        args.observe_photos, args.eval_photos, args.runs = 3, 2, 3
    args.model = args.model or default_model()
    if args.finetuned is None and SHIPPED.is_file():
        args.finetuned = SHIPPED
    if args.finetuned is not None and str(args.finetuned) == "none":
        args.finetuned = None
    if 0.0 not in args.sparsities:
        args.sparsities = [0.0, *args.sparsities]
    args.sparsities = sorted(set(args.sparsities))
    start = time.perf_counter()
    res = run(args)
    res["wall_seconds"] = time.perf_counter() - start
    res["command"] = ("python bench/bench_pruning.py " + " ".join(
        a for a in sys.argv[1:] if True)).strip()
    res["machine"] = machine()
    res["notes"] = args.note
    print(f"\n{'model':<10}{'sparsity':>9}{'heads':>10}{'MMACs':>9}{'params':>9}{'ms':>8}{'SSIM':>8}"
          f"{'gram':>8}{'hell':>8}{'PSNR':>7}")
    for r in res["rows"]:
        p = f"{r['psnr_vs_unpruned_db']:.1f}" if r["psnr_vs_unpruned_db"] is not None else "-"
        print(f"{r['name']:<10}{r['sparsity']:>9.2f}{str(r['heads']):>10}{r['macs'] / 1e6:>9.1f}{r['params']:>9}"
              f"{r['latency_median_ms']:>8.0f}{r['ssim_luma']:>8.4f}{r['gram_distance_to_style']:>8.4f}"
              f"{r['colour_hellinger_to_style']:>8.4f}{p:>7}")
    print(f"wall {res['wall_seconds']:.0f} s")
    write_json(Path(args.json), res)
    plot(res, Path(args.plot))
    if args.markdown:
        update_markdown_section(Path(args.markdown), HEADING, section(res))
    print(f"wrote {args.json}, {args.plot}" + (f", {args.markdown}" if args.markdown else ""))


if __name__ == "__main__":
    main()
