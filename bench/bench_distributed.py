"""DistributedMuon vs DDP + Muon: bytes per step and step time at 2 and 4 processes (gloo, CPU).

Runs ``bench/bench_muon_comm.py --photos`` under torchrun for each world size: the default
``StudentConfig()`` student trained on real photo crops (L1 + edge L1 reconstruction, bench_muon's
objective), a fixed global batch split between the ranks, the three set-ups interleaved step by
step. Bytes come from ``training/comm.py``'s CommLog (DDP through ``counting_allreduce_hook``,
DistributedMuon through its ``Collectives``); a step's time is the slowest rank's.

    python bench/bench_distributed.py           # ~2 min; docs/bench/distributed.json, plot, docs section
    python bench/bench_distributed.py --quick   # a few steps, writes only to the temp folder
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, machine, write_json  # noqa: E402

SECTION = "## Distributed training: DistributedMuon vs DDP"
TORCHRUN = Path(sys.executable).with_name("torchrun")
BASELINE = "ddp+muon"


def run_world(world: int, args) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "comm.json"
        cmd = [str(TORCHRUN), "--standalone", "--nproc_per_node", str(world), str(REPO / "bench" / "bench_muon_comm.py"),
               "--photos", "default", "--size", str(args.crop), "--global-batch", str(args.global_batch),
               "--steps", str(args.steps), "--warmup", str(args.warmup), "--out", str(path)]
        subprocess.run(cmd, check=True, cwd=REPO)  # each rank: torch.set_num_threads(1)
        return json.loads(path.read_text())


def newton_schulz_ms() -> float:
    """Median ms of Newton-Schulz on every Muon matrix of the student, one thread: the work one
    ddp+muon rank repeats each step, and that DistributedMuon divides between the ranks."""
    import torch

    from muon_ad_ros.core.student import StudentConfig, StudentNet
    from muon_ad_training.muon import as_matrix, zeropower_via_newtonschulz5
    from muon_ad_training.param_groups import split_params

    from common import time_interleaved

    torch.set_num_threads(1)
    mats = [torch.randn_like(as_matrix(p)) for _, p in split_params(StudentNet(StudentConfig())).muon]
    t = time_interleaved({"ns": lambda: [zeropower_via_newtonschulz5(g) for g in mats]}, repeats=30)
    return t["ns"]["median_ms"]


def rows_of(worlds: dict) -> list[dict]:
    rows = []
    for world, data in worlds.items():
        base = data["results"][BASELINE]
        for setup, r in data["results"].items():
            med = lambda k: statistics.median(r[k]) * 1e3  # noqa: E731
            rows.append({
                "processes": int(world), "setup": setup,
                "collectives": {k: v["calls"] for k, v in r["per_collective"].items()},
                "payload_kb": r["total"]["payload_bytes"] / 1e3, "sent_per_rank_kb": r["total"]["sent_bytes"] / 1e3,
                "sent_ratio_vs_ddp": r["total"]["sent_bytes"] / base["total"]["sent_bytes"],
                "step_ms_median": med("step_seconds"),
                "step_ms_p90": sorted(r["step_seconds"])[int(0.9 * (len(r["step_seconds"]) - 1))] * 1e3,
                "fwd_bwd_ms_median": med("fwd_bwd_seconds"), "opt_step_ms_median": med("opt_step_seconds"),
                "step_ratio_vs_ddp": statistics.median(r["step_seconds"]) / statistics.median(base["step_seconds"]),
                "ns_numel_per_rank": r["ns_numel_per_rank"], "steps": len(r["step_seconds"]),
            })
    return rows


def print_table(rows) -> None:
    print(f"{'procs':>5} {'set-up':<22} {'sent/rank kB':>12} {'x ddp':>6} {'step ms med':>11} {'p90':>6} "
          f"{'x ddp':>6} {'fwd+bwd':>8} {'opt.step':>8}  NS params/rank")
    for r in rows:
        print(f"{r['processes']:>5} {r['setup']:<22} {r['sent_per_rank_kb']:>12.1f} {r['sent_ratio_vs_ddp']:>6.2f} "
              f"{r['step_ms_median']:>11.1f} {r['step_ms_p90']:>6.1f} {r['step_ratio_vs_ddp']:>6.2f} "
              f"{r['fwd_bwd_ms_median']:>8.1f} {r['opt_step_ms_median']:>8.1f}  {r['ns_numel_per_rank']}")


def plot(res: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    rows = res["rows"]
    setups = list(dict.fromkeys(r["setup"] for r in rows))
    worlds = sorted({r["processes"] for r in rows})
    get = lambda w, s, k: next(r[k] for r in rows if r["processes"] == w and r["setup"] == s)  # noqa: E731
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    x = np.arange(len(worlds))
    width = 0.8 / len(setups)
    for i, s in enumerate(setups):
        off = (i - (len(setups) - 1) / 2) * width
        a.bar(x + off, [get(w, s, "sent_per_rank_kb") for w in worlds], width, label=s)
        fb = [get(w, s, "fwd_bwd_ms_median") for w in worlds]
        b.bar(x + off, fb, width, color=f"C{i}", alpha=0.55)
        b.bar(x + off, [get(w, s, "opt_step_ms_median") for w in worlds], width, bottom=fb, color=f"C{i}", label=s)
    a.set_title("bytes sent per rank per step (ring model)")
    a.set_ylabel("kB")
    b.set_title("medians: forward+backward (light) + optimizer step (dark)")
    b.set_ylabel("ms")
    for ax in (a, b):
        ax.set_xticks(x, [f"{w} processes" + (" (oversubscribed)" if w > res["machine"]["cores"] else "") for w in worlds])
        ax.legend(fontsize=8)
    fig.suptitle(f"StudentNet(StudentConfig()), gloo on CPU, {res['machine']['cores']} cores, {res['machine']['date']}")
    fig.tight_layout()
    fig.savefig(path, dpi=90)


def section(res: dict) -> str:
    rows, m = res["rows"], res["machine"]
    first = res["worlds"][next(iter(res["worlds"]))]["results"][BASELINE]
    lines = [
        SECTION, "",
        f"Default `StudentConfig()` student ({first['param_bytes'] / 1e3:.1f} kB of float32 parameters, "
        f"{first['muon_param_bytes'] / 1e3:.1f} kB of them in Muon matrices), reconstruction objective of "
        f"`bench/bench_muon.py` (L1 + edge L1) on {res['crop']}x{res['crop']} crops of the photos in "
        f"`../shared/data/photos`, a global batch of {res['global_batch']} crops split between the processes "
        f"(the same work per step at every process count), gloo on CPU, 1 thread per process. "
        f"The three set-ups take turns step by step ({res['warmup']} warm-up steps, then {res['steps']} timed); "
        f"a step's time is the slowest rank's, median over the timed steps. Bytes: `training/comm.py`'s ring "
        f"model (all-reduce 2(n-1)/n, reduce-scatter and all-gather (n-1)/n of the payload), counted by "
        f"`counting_allreduce_hook` for DDP and by `DistributedMuon`'s `Collectives`. "
        f"`ddp+muon` = DDP all-reduce of every gradient, every rank runs plain `Muon`; `distributed_muon` = no "
        f"DDP, `DistributedMuon` (reduce-scatter Muon gradients, all-gather the updated matrices, all-reduce the "
        f"AdamW gradients); `ddp+distributed_muon` = DDP plus `DistributedMuon(average_grads=False)` "
        f"(all-gather only).",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores shared with other jobs, torch {m['torch']}, {m['date']}.",
        "",
        "| processes | set-up | sent/rank kB | x DDP bytes | step ms (median) | p90 | x DDP time | fwd+bwd ms | opt.step ms | NS params/rank |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['processes']} | {r['setup']} | {r['sent_per_rank_kb']:.1f} | {r['sent_ratio_vs_ddp']:.2f} | "
                     f"{r['step_ms_median']:.1f} | {r['step_ms_p90']:.1f} | {r['step_ratio_vs_ddp']:.2f} | "
                     f"{r['fwd_bwd_ms_median']:.1f} | {r['opt_step_ms_median']:.1f} | {r['ns_numel_per_rank']} |")
    lines += ["", "![bytes and step time](bench/distributed.png)", ""]
    lines += res["notes"] + ["", f"Reproduce: `{res['command']}` (JSON: `docs/bench/distributed.json`)."]
    return "\n".join(lines) + "\n"


def notes(rows, cores: int, ns_ms: float) -> list[str]:
    get = lambda w, s: next(r for r in rows if r["processes"] == w and r["setup"] == s)  # noqa: E731
    out = []
    for w in sorted({r["processes"] for r in rows}):
        d, b = get(w, "distributed_muon"), get(w, BASELINE)
        out.append(f"- {w} processes: `distributed_muon` sends {d['sent_ratio_vs_ddp']:.2f}x DDP's bytes per rank "
                   f"({d['sent_per_rank_kb']:.1f} vs {b['sent_per_rank_kb']:.1f} kB) and takes "
                   f"{d['step_ratio_vs_ddp']:.2f}x its step time ({d['step_ms_median']:.1f} vs {b['step_ms_median']:.1f} ms); "
                   f"its optimizer step {d['opt_step_ms_median']:.1f} ms vs {b['opt_step_ms_median']:.1f} ms "
                   f"(DistributedMuon's step includes its collectives, DDP's all-reduce runs inside backward).")
    out += [
        "- **Sharding divides the Newton-Schulz work, not the bytes.** A reduce-scatter plus an all-gather moves "
        "what one all-reduce moves, so `distributed_muon` sends what DDP sends (plus the zero padding of uneven "
        "shards); keeping DDP and adding the all-gather sends more. What it buys is the last column: each rank "
        "orthogonalises 1/N of the Muon parameters (and keeps 1/N of the momentum).",
        f"- Newton-Schulz on all of the student's Muon matrices takes {ns_ms:.1f} ms per step on one thread "
        f"(measured in this run); sharding saves each rank at most {ns_ms / 2:.1f} ms at 2 processes and "
        f"{ns_ms * 3 / 4:.1f} ms at 4, against a step of about {get(min(r['processes'] for r in rows), BASELINE)['step_ms_median']:.0f} ms "
        "dominated by forward+backward: on this small student the optimizer is not the bottleneck, and the "
        "difference in step time is mostly where the communication waits land.",
    ]
    if any(w > cores for w in {r["processes"] for r in rows}):
        out.append(f"- With more processes than the {cores} cores the step times are **oversubscribed**: the "
                   "processes time-share the cores, so those rows measure contention, not scaling.")
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--worlds", type=int, nargs="+", default=[2, 4])
    p.add_argument("--steps", type=int, default=40, help="timed steps per set-up")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--crop", type=int, default=128)
    p.add_argument("--global-batch", type=int, default=8)
    p.add_argument("--quick", action="store_true", help="5 timed steps; writes only to the temp folder")
    p.add_argument("--out", type=Path, default=None, help="JSON (default docs/bench/distributed.json)")
    p.add_argument("--no-docs", action="store_true", help="do not rewrite the docs section and plot")
    args = p.parse_args()
    if args.quick:
        args.steps, args.warmup, args.no_docs = 5, 1, True
    out = args.out or (Path(tempfile.gettempdir()) / "bench_distributed_quick.json" if args.quick
                       else REPO / "docs" / "bench" / "distributed.json")
    worlds = {str(w): run_world(w, args) for w in args.worlds}
    rows = rows_of(worlds)
    print_table(rows)
    mach = machine()
    ns_ms = newton_schulz_ms()
    res = {"command": " ".join(["python", "bench/bench_distributed.py"] + sys.argv[1:]),
           "machine": mach, "crop": args.crop, "global_batch": args.global_batch, "steps": args.steps,
           "warmup": args.warmup, "backend": "gloo", "rows": rows, "newton_schulz_ms_one_thread": ns_ms,
           "notes": notes(rows, mach["cores"], ns_ms),
           "worlds": worlds}
    print("\n".join(res["notes"]))
    if not args.no_docs:
        plot(res, REPO / "docs" / "bench" / "distributed.png")
        from common import replace_section

        md = REPO / "docs" / "benchmarks.md"
        md.write_text(replace_section(md.read_text(), SECTION, section(res)))
        print(f"wrote docs/bench/distributed.png and the section '{SECTION}' of {md.name}")
    write_json(out, res)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
