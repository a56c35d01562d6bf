"""report.json (every number) and report.md (tables + PNG plots) of a bag evaluation.

Files are written under temporary names and renamed, report.json last: a directory holding a
report.json holds a complete report.
"""
import json
import os
import re
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display on a robot or in CI
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from muon_ad_ros.core.atomic_io import atomic_write_bytes  # noqa: E402
from muon_ad_ros.evaluation.bag_io import BagError  # noqa: E402

SCHEMA = "muon_ad_ros/eval-bag/1"


def build_report(result, model_info):
    """The JSON-ready report of an EvalResult. `model_info`: card id, backend, style... (a dict)."""
    return {
        "schema": SCHEMA,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "input": {
            "path": str(result.input_path),
            "format": result.bag_format,
            "topics": [{"name": t.name, "msgtype": t.msgtype, "count": t.count}
                       for t in result.bag_topics],
        },
        "model": model_info,
        "output_bag": ({"path": str(result.out_path), "topics": result.out_counts}
                       if result.out_path else None),
        "wall_s": result.wall_s,
        "frames_evaluated": (n := sum(r.evaluated for r in result.topics.values())),
        "pipeline_fps": n / result.wall_s if result.wall_s > 0 and n else None,
        "topics": {name: r.summary(result.wall_s) for name, r in result.topics.items()},
        "stereo": getattr(result, "stereo", None),
    }


def slug(topic):
    """'/camera/image_raw' -> 'camera_image_raw' (a file-name part)."""
    return re.sub(r"[^A-Za-z0-9]+", "_", topic).strip("_") or "root"


def check_report_dir(report_dir):
    """BagError unless report_dir is a directory we can write, or can be created."""
    report_dir = Path(report_dir)
    if report_dir.exists() and not report_dir.is_dir():
        raise BagError(f"report directory {report_dir} is a file")
    parent = report_dir if report_dir.exists() else next(
        (p for p in report_dir.absolute().parents if p.exists()), Path("/"))
    if not os.access(parent, os.W_OK | os.X_OK):
        raise BagError(f"cannot write the report into {report_dir}: {parent} is not writable")


def write_report(report_dir, report, result):
    """Write report.json, report.md and the plots into report_dir (created if absent)."""
    report_dir = Path(report_dir)
    try:
        report_dir.mkdir(parents=True, exist_ok=True)
        _write_files(report_dir, report, result)
    except OSError as e:
        raise BagError(f"cannot write the report into {report_dir}: {e.strerror or e}") from None
    return report_dir / "report.json"


def _write_files(report_dir, report, result):
    plots = {}
    for name, res in result.topics.items():
        summary = report["topics"][name]
        stem = slug(name)
        plots[name] = {
            "latency": _save(report_dir, f"{stem}_latency.png", _latency_plot, summary),
            "warping": _save(report_dir, f"{stem}_warping_error.png", _warping_plot, summary),
            "samples": _save(report_dir, f"{stem}_samples.png", _strip_plot, res.samples, name),
        }
    atomic_write_bytes(report_dir / "report.md", markdown(report, plots).encode())
    atomic_write_bytes(report_dir / "report.json", json.dumps(_finite(report), indent=1, allow_nan=False).encode())


def _finite(obj):
    """NaN / inf -> None through nested dicts and lists: JSON has no NaN."""
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    if isinstance(obj, (float, np.floating)):
        return float(obj) if np.isfinite(obj) else None
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


def _save(report_dir, filename, plot_fn, *args):
    """Render one figure to PNG; returns the file name, or None when there is nothing to plot."""
    fig = plot_fn(*args)
    if fig is None:
        return None
    tmp = report_dir / f".{filename}.partial-{os.getpid()}.png"
    fig.savefig(tmp, dpi=100, bbox_inches="tight")
    plt.close(fig)
    os.replace(tmp, report_dir / filename)
    return filename


def _latency_plot(summary):
    ms = summary["per_frame"]["stylize_ms"]
    if not ms:
        return None
    fig, ax = plt.subplots(figsize=(6, 3.2))
    ax.hist(ms, bins=min(50, max(5, len(ms) // 2)), color="tab:blue", alpha=0.8)
    lat = summary["latency"]["stylize"]
    for key, style in (("p50_ms", "-"), ("p95_ms", "--"), ("p99_ms", ":")):
        ax.axvline(lat[key], color="k", linestyle=style, label=f"{key[:3]} {lat[key]:.1f} ms")
    ax.set_xlabel("stylize latency per frame (ms)")
    ax.set_ylabel("frames")
    ax.set_title(summary["topic"])
    ax.legend()
    return fig


def _warping_plot(summary):
    per = summary["per_frame"]
    out = [np.nan if v is None else v for v in per["warping_error"]]
    if not out:
        return None
    inp = [np.nan if v is None else v for v in per["warping_error_input"]]
    x = np.arange(1, len(out) + 1)
    fig, ax = plt.subplots(figsize=(6, 3.2))
    ax.plot(x, out, label="stylized", color="tab:red")
    ax.plot(x, inp, label="input (floor)", color="tab:gray")
    ax.set_xlabel("frame")
    ax.set_ylabel("warping error (MSE, RGB in [0,1])")
    ax.set_title(summary["topic"])
    ax.legend()
    return fig


def _strip_plot(samples, topic):
    if not samples:
        return None
    n = len(samples)
    aspect = samples[0][1].shape[0] / samples[0][1].shape[1]  # h / w
    fig, axes = plt.subplots(2, n, figsize=(2.2 * n, 2 * 2.2 * aspect + 0.6), squeeze=False,
                             layout="constrained")
    for col, (index, rgb_in, rgb_out) in enumerate(samples):
        for row, (img, label) in enumerate(((rgb_in, "input"), (rgb_out, "stylized"))):
            ax = axes[row][col]
            ax.imshow(img)
            ax.set_xticks([])
            ax.set_yticks([])
            if col == 0:
                ax.set_ylabel(label)
        axes[0][col].set_title(f"frame {index}", fontsize=9)
    fig.suptitle(topic)
    return fig


def _fmt(v, spec=".4f"):
    return "n/a" if v is None else format(v, spec)


def markdown(report, plots):
    """report.md: a summary table per topic, then its plots."""
    lines = ["# Bag evaluation", "",
             f"- input: `{report['input']['path']}` ({report['input']['format']})",
             f"- model: `{report['model'].get('id')}` ({report['model'].get('backend')}, "
             f"style {report['model'].get('style')}, strength {report['model'].get('strength')})"]
    if report["output_bag"]:
        lines.append(f"- output bag: `{report['output_bag']['path']}`")
    lines += [f"- wall time: {report['wall_s']:.1f} s for {report['frames_evaluated']} frames "
              f"({_fmt(report['pipeline_fps'], '.1f')} frames/s, decoding, metrics and writing included)",
              "", "## Bag topics", "",
              "| topic | type | messages |", "|---|---|---|"]
    lines += [f"| `{t['name']}` | {t['msgtype']} | {t['count']} |" for t in report["input"]["topics"]]
    for name, s in report["topics"].items():
        q = s["quality"]
        lines += ["", f"## `{name}` -> `{s['output_topic']}`", "",
                  f"{s['frames_evaluated']} frames evaluated of {s['messages_in_bag']}, "
                  f"{s['frames_skipped']} skipped"
                  + (" (" + ", ".join(f"{k}: {v}" for k, v in s["skip_reasons"].items()) + ")"
                     if s["skip_reasons"] else "") + ".", "",
                  "| stage | p50 ms | p95 ms | p99 ms | mean ms |", "|---|---|---|---|---|"]
        for stage, st in s["latency"].items():
            lines.append(f"| {stage} | {_fmt(st['p50_ms'], '.2f')} | {_fmt(st['p95_ms'], '.2f')} | "
                         f"{_fmt(st['p99_ms'], '.2f')} | {_fmt(st['mean_ms'], '.2f')} |")
        lines += ["", f"Throughput: stylizer {_fmt(s['throughput_fps'], '.1f')} frames/s, "
                      f"{_fmt(s['pipeline_fps'], '.1f')} of this topic's frames per second of the "
                      "whole run.", "",
                  "| metric | stylized | input (reference) |", "|---|---|---|",
                  f"| luminance SSIM vs input (1 = same structure) | {_fmt(q['luminance_ssim'])} | 1 |",
                  f"| edge agreement F1 (1 = same edges) | {_fmt(q['edge_agreement'])} | 1 |",
                  f"| warping error (0 = stable) | {_fmt(q['warping_error'], '.5f')} | "
                  f"{_fmt(q['warping_error_input_floor'], '.5f')} |",
                  f"| flicker, mean abs. change of mean luminance | {_fmt(q['flicker'], '.5f')} | "
                  f"{_fmt(q['flicker_input'], '.5f')} |",
                  f"| occluded pixels (flow) | {_fmt(q['occluded_fraction'], '.3f')} | |"]
        for key, title in (("latency", "Latency"), ("warping", "Warping error per frame"),
                           ("samples", "Sample frames")):
            if plots[name][key]:
                lines += ["", f"![{title}]({plots[name][key]})"]
    return "\n".join(lines) + "\n"
