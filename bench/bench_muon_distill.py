"""Muon vs AdamW on the real distillation objective (the trainer's phase 2), a script, not a test.

    python bench/bench_muon_distill.py            # ~10 min on 2 idle CPU cores
    python bench/bench_muon_distill.py --quick    # a smoke run (~1 min)

The objective is the one the shipped styles are trained on, built by the trainer's own pieces:
``config/train/styles_v1.yaml`` is loaded as is (data, styles, mobilenet teacher, loss settings,
grad clip) and its phases are replaced by

  1. its ``content`` phase (AdamW, reconstruction + colour), run once: every optimizer starts from
     the same content-trained student, as phase 2 does in the real curriculum;
  2. its ``distill`` phase at a smaller resolution (``--resolution``, 128 px) and ``--steps`` steps:
     L_tot = the phase's weighted terms (AD through the teacher, attention KL, style colour, ...)
             + lambda * L_content with the config's lambda schedule, warmup and cooldown;
     only ``optimizer`` (muon | adamw) and the learning rates differ between runs.

``Trainer.train_step`` runs every step, so batches are the same pure function of (seed, step) in
every run. Every ``--eval-every`` steps the phase objective is evaluated on a fixed held-out set
(``--eval-batches`` batches of the trainer's held-out step numbers, never trained on) at a fixed
lambda (phase progress t = 0.5, as ``Trainer.evaluate`` does), so the curve is one objective
throughout. The target is AdamW's best final held-out loss; the report gives the steps and the
training seconds (train_step only; evaluation excluded) each optimizer's best run needs to reach
it, and, as a direct check of the ">= 2x fewer steps" goal, the final loss of Muon (best lr) on a
schedule half as long.

Results: docs/bench/muon_distill.json, docs/bench/muon_distill.png and the
``## Muon vs AdamW on the distillation objective`` section of docs/benchmarks.md.
"""
from __future__ import annotations

import argparse
import copy
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, machine, update_markdown_section, write_json  # noqa: E402

from muon_ad_training.curriculum import lambda_at  # noqa: E402
from muon_ad_training.train_config import _merge, config_from_dict, read_yaml  # noqa: E402
from muon_ad_training.trainer import EVAL_STEP, Trainer  # noqa: E402

CONFIG = REPO / "config" / "train" / "styles_v1.yaml"
HEADING = "## Muon vs AdamW on the distillation objective"
HELD_OUT_OFFSET = 1000  # held-out batches are steps EVAL_STEP + 1000 + k: disjoint from Trainer.evaluate's


@dataclass
class BenchConfig:
    steps: int = 200  # distill-phase steps per run
    resolution: int = 128
    content_steps: int = 300  # the shared phase-1 initialisation (styles_v1's content phase length)
    eval_every: int = 20
    eval_batches: int = 1  # held-out batches per style (x 4 styles x batch 4 = 16 crops)
    adamw_lrs: tuple[float, ...] = (3e-3, 1e-2, 3e-2)  # styles_v1 trains with adamw_lr 3e-3
    muon_lrs: tuple[float, ...] = (5e-3, 0.01, 0.02)  # styles_v1 trains with muon_lr 0.02
    threads: int = 1  # the machine is shared: one thread per process is the least noisy there
    half_schedule: bool = True


QUICK = BenchConfig(steps=20, content_steps=10, eval_every=10, eval_batches=1, adamw_lrs=(3e-3,),
                    muon_lrs=(0.02,))


def base_config_dict() -> dict:
    """styles_v1.yaml as a mapping, read once: every run builds from the same snapshot even if the
    file is edited while the bench runs."""
    return read_yaml(CONFIG)


def bench_config(base: dict, out_dir: str, phase: str, steps: int, resolution: int | None = None,
                 optimizer: str | None = None, muon_lr: float = 0.02, adamw_lr: float = 3e-3):
    """styles_v1 with only its ``phase`` phase, at the bench's length / resolution / optimizer / lrs."""
    over = {"output_dir": out_dir, "device": "cpu",
            "optim": {"muon_lr": muon_lr, "adamw_lr": adamw_lr},
            "logging": {"tensorboard": False, "progress": False, "checkpoint_every": 10**9},
            "export": {"enabled": False}}
    cfg = config_from_dict(_merge(copy.deepcopy(base), over), where=str(CONFIG))
    pc = next(p for p in cfg.phases if p.name == phase)
    changes = {"steps": steps}
    if resolution is not None:
        changes["resolution"] = resolution
    if optimizer is not None:
        changes["optimizer"] = optimizer
    cfg.phases = [replace(pc, **changes)]
    cfg.validate()
    return cfg


def content_init(bc: BenchConfig, base: dict, out_dir: str) -> dict:
    """The student after styles_v1's content phase (AdamW; shared by every run), as a state dict."""
    cfg = bench_config(base, out_dir, "content", bc.content_steps)
    trainer = Trainer(cfg, base_dir=CONFIG.parent)
    start = time.perf_counter()
    while trainer.step < bc.content_steps:
        trainer.train_step()
    print(f"content phase: {bc.content_steps} steps in {time.perf_counter() - start:.1f} s, "
          f"last loss {trainer.history[-1]['total']:.4f}", flush=True)
    return copy.deepcopy(trainer.model.state_dict())


@torch.no_grad()
def held_out_loss(trainer: Trainer, batches) -> float:
    """Mean phase objective on the fixed held-out batches at t = 0.5 (what Trainer.evaluate does,
    on more images)."""
    phase = trainer.schedule.phases[0]
    trainer.model.eval()
    losses = []
    for batch in batches:
        gen = torch.Generator().manual_seed(trainer.cfg.seed)
        loss, _, _ = trainer._phase_loss(trainer.model, batch, phase, 0.5,
                                         capture=phase.config.weights.attn > 0, generator=gen)
        losses.append(float(loss))
    trainer.model.set_attention_capture(False)
    trainer.model.train()
    return sum(losses) / len(losses)


def held_out_steps(trainer: Trainer, per_style: int) -> list[int]:
    """Held-out step numbers (never trained on) giving ``per_style`` batches of every style: a batch
    shares one style, so a few consecutive held-out batches could miss a style entirely."""
    styles = trainer.source.num_styles
    chosen: dict[int, list[int]] = {s: [] for s in range(styles)}
    step = EVAL_STEP + HELD_OUT_OFFSET
    while any(len(v) < per_style for v in chosen.values()):
        style, _ = trainer.source.plan(step)
        if len(chosen[style]) < per_style:
            chosen[style].append(step)
        step += 1
    return sorted(x for v in chosen.values() for x in v)


def train_run(bc: BenchConfig, base: dict, init: dict, optimizer: str, lr: float, aux_lr: float, steps: int,
              out_dir: str) -> dict:
    muon_lr, adamw_lr = (lr, aux_lr) if optimizer == "muon" else (0.02, lr)
    cfg = bench_config(base, out_dir, "distill", steps, bc.resolution, optimizer, muon_lr, adamw_lr)
    trainer = Trainer(cfg, base_dir=CONFIG.parent)
    trainer.model.load_state_dict(init)
    held_out = [trainer.source.batch(step, bc.resolution) for step in held_out_steps(trainer, bc.eval_batches)]
    curve, seconds = [], 0.0
    curve.append({"step": 0, "loss": held_out_loss(trainer, held_out), "seconds": 0.0})
    while trainer.step < steps:
        start = time.perf_counter()
        trainer.train_step()  # the first call also builds the optimizer (split_params for Muon)
        seconds += time.perf_counter() - start
        if trainer.step % bc.eval_every == 0 or trainer.step == steps:
            curve.append({"step": trainer.step, "loss": held_out_loss(trainer, held_out), "seconds": seconds})
    last = trainer.history[-1]
    print(f"  {optimizer:<5} lr {lr:<7g}{f' (aux {aux_lr:g})' if optimizer == 'muon' else '':<12} "
          f"{steps} steps: held-out {curve[0]['loss']:.4f} -> {curve[-1]['loss']:.4f}  "
          f"({seconds:.1f} s, {seconds / steps:.2f} s/step)", flush=True)
    return {"optimizer": optimizer, "lr": lr, "aux_lr": aux_lr if optimizer == "muon" else None,
            "steps": steps, "final_loss": curve[-1]["loss"], "seconds": seconds, "curve": curve,
            "last_train_parts": {k: v for k, v in last.items() if isinstance(v, float)}}


def first_reach(curve: list[dict], target: float):
    return next((p for p in curve if p["loss"] <= target), None)


def run(bc: BenchConfig, out_dir: str) -> dict:
    torch.set_num_threads(bc.threads)
    base = base_config_dict()
    init = content_init(bc, base, out_dir)
    print(f"distill phase at {bc.resolution} px, {bc.steps} steps; held-out: {bc.eval_batches} batch(es) per style")
    adamw = [train_run(bc, base, init, "adamw", lr, 0.0, bc.steps, out_dir) for lr in bc.adamw_lrs]
    best_adamw = min(adamw, key=lambda r: r["final_loss"])
    target = best_adamw["final_loss"]
    muon = [train_run(bc, base, init, "muon", lr, best_adamw["lr"], bc.steps, out_dir) for lr in bc.muon_lrs]
    best_muon = min(muon, key=lambda r: ((first_reach(r["curve"], target) or {"step": 1e9})["step"],
                                         r["final_loss"]))
    half = None
    if bc.half_schedule:
        half = train_run(bc, base, init, "muon", best_muon["lr"], best_adamw["lr"], bc.steps // 2, out_dir)
    ra, rm = first_reach(best_adamw["curve"], target), first_reach(best_muon["curve"], target)
    summary = {"target_loss": target, "adamw_best_lr": best_adamw["lr"], "muon_best_lr": best_muon["lr"],
               "adamw_steps": ra["step"], "adamw_seconds": ra["seconds"],
               "muon_steps": rm["step"] if rm else None, "muon_seconds": rm["seconds"] if rm else None,
               "muon_final_loss": best_muon["final_loss"],
               "adamw_s_per_step": best_adamw["seconds"] / best_adamw["steps"],
               "muon_s_per_step": best_muon["seconds"] / best_muon["steps"]}
    if rm:
        summary["step_ratio"] = rm["step"] / ra["step"]
        summary["time_ratio"] = rm["seconds"] / ra["seconds"]
    if half:
        summary.update(half_schedule_steps=half["steps"], half_schedule_final_loss=half["final_loss"],
                       half_schedule_meets_target=half["final_loss"] <= target)
    phase = bench_config(base, out_dir, "distill", bc.steps, bc.resolution).phases[0]
    shipped = next(p for p in config_from_dict(copy.deepcopy(base), str(CONFIG)).phases if p.name == "distill")
    return {"bench_config": asdict(bc), "phase": asdict(phase),
            "config_distill": {"steps": shipped.steps, "resolution": shipped.resolution},
            "eval_lambda": lambda_at(phase.lambda_content, 0.5), "runs": adamw + muon,
            "held_out_crops": bc.eval_batches * len(base["data"]["styles"]) * base["data"]["batch_size"],
            "half_schedule_run": half, "summary": summary}


# ----------------------------------------------------------------------------- report


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    runs = results["runs"] + ([results["half_schedule_run"]] if results["half_schedule_run"] else [])
    for i, r in enumerate(runs):
        half = r is results["half_schedule_run"]
        label = f"{r['optimizer']} lr {r['lr']:g}" + (f" ({r['steps']} steps)" if half else "")
        style = dict(color=("tab:red" if r["optimizer"] == "adamw" else "tab:blue"),
                     alpha=0.35 + 0.3 * (i % 3), ls="--" if half else "-")
        for ax, key in zip(axes, ("step", "seconds")):
            ax.plot([p[key] for p in r["curve"]], [p["loss"] for p in r["curve"]], label=label, **style)
    for ax, xl in zip(axes, ("distill step", "training seconds (eval excluded)")):
        ax.axhline(results["summary"]["target_loss"], color="k", lw=0.8, ls=":", label="AdamW best final")
        ax.set_xlabel(xl)
        ax.set_ylabel("held-out L_tot (t = 0.5)")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle("Muon vs AdamW, styles_v1 distill phase (mobilenet AD teacher) at "
                 f"{results['bench_config']['resolution']} px")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def section(res: dict) -> str:
    s, bc, ph, m = res["summary"], res["bench_config"], res["phase"], res["machine"]
    w = ph["weights"]
    lines = [
        HEADING, "",
        "Objective: the trainer's phase-2 loss of `config/train/styles_v1.yaml` (4 styles, mobilenet AD "
        "teacher, its data, loss settings and grad clip), built by `Trainer` itself: L_tot = "
        + " + ".join(f"{v:g} * {k}" for k, v in w.items() if v) + " + lambda * content (terms of "
        f"`training/student_loss.py`), lambda {ph['lambda_content']['schedule']} "
        f"{ph['lambda_content']['start']:g} -> {ph['lambda_content']['end']:g}, "
        f"warmup {ph['warmup']:g} / cooldown {ph['cooldown']:g} of the phase. Changed for the bench: one "
        f"distill phase of {bc['steps']} steps at {bc['resolution']} px (styles_v1: "
        f"{res['config_distill']['steps']} at {res['config_distill']['resolution']}), batch 4, "
        f"starting from the same student after styles_v1's content phase ({bc['content_steps']} AdamW "
        f"steps). Same seed, so the same batches, in every run. Held-out: L_tot at lambda "
        f"{res['eval_lambda']:g} (t = 0.5) on {res['held_out_crops']} fixed crops (every style alike) never trained on, every "
        f"{bc['eval_every']} steps. AdamW = the trainer's `optimizer: adamw` (AdamW on every parameter); "
        f"Muon = `optimizer: muon` (Muon on the hidden matrices, AdamW aux at AdamW's best lr). "
        f"{m['cpu']}, {bc['threads']} torch thread(s), {m['date']}; seconds are indicative (shared machine).",
        "",
        "| optimizer | lr | final held-out L_tot | train seconds | s/step |",
        "|---|---|---|---|---|",
    ]
    for r in res["runs"]:
        lr = f"{r['lr']:g}" + (f" (aux AdamW {r['aux_lr']:g})" if r["aux_lr"] else "")
        lines.append(f"| {r['optimizer']} | {lr} | {r['final_loss']:.4f} | {r['seconds']:.1f} | "
                     f"{r['seconds'] / r['steps']:.3f} |")
    per_step = [r["seconds"] / r["steps"] for r in res["runs"] if r["optimizer"] == "adamw"]
    spread = f"{min(per_step):.2f}-{max(per_step):.2f}"
    edges = []
    for name, lrs, best in (("AdamW", bc["adamw_lrs"], s["adamw_best_lr"]), ("Muon", bc["muon_lrs"], s["muon_best_lr"])):
        if best in (min(lrs), max(lrs)):
            edges.append(f"{name}'s best lr ({best:g}) is at the edge of its sweep")
    lines += ["", f"Start (content-trained student): held-out L_tot {res['runs'][0]['curve'][0]['loss']:.4f}. "
              f"Target = AdamW's best final held-out loss: **{s['target_loss']:.4f}** "
              f"(AdamW lr {s['adamw_best_lr']:g}).", "",
              "| optimizer (best lr) | steps to target | seconds to target |", "|---|---|---|",
              f"| AdamW (lr {s['adamw_best_lr']:g}) | {s['adamw_steps']} | {s['adamw_seconds']:.1f} |"]
    if s.get("muon_steps"):
        met = s["step_ratio"] <= 0.5
        lines += [f"| Muon (lr {s['muon_best_lr']:g}) | {s['muon_steps']} | {s['muon_seconds']:.1f} |", "",
                  f"Muon needs **{s['step_ratio']:.2f}x the steps** of AdamW ({1 / s['step_ratio']:.2f}x fewer) "
                  f"and {s['time_ratio']:.2f}x the seconds to reach the target. Goal >= 2x fewer steps: "
                  f"**{'met' if met else 'not met'}**. Steps are counted on the {bc['eval_every']}-step "
                  f"evaluation grid. Seconds mostly measure the load of the shared machine: AdamW's own runs "
                  f"took {spread} s/step."]
    else:
        lines += [f"| Muon (lr {s['muon_best_lr']:g}) | not reached | - |", "",
                  f"Muon does not reach AdamW's best loss within {bc['steps']} steps (best Muon final "
                  f"{s['muon_final_loss']:.4f}). Goal >= 2x fewer steps: **not met**."]
    lines += ["", f"Within the same {bc['steps']}-step schedule Muon's best final held-out loss is "
              f"{s['muon_final_loss']:.4f}, {1 - s['muon_final_loss'] / s['target_loss']:.1%} below AdamW's best."]
    if s.get("half_schedule_steps"):
        ok = s["half_schedule_meets_target"]
        lines += ["", f"Direct check of the goal (steps-to-target inside one schedule mixes in the lr "
                  f"cooldown): Muon (lr {s['muon_best_lr']:g}) on a schedule of {s['half_schedule_steps']} "
                  f"steps (same batches, the phase's warmup/cooldown/lambda over its own length) ends at "
                  f"{s['half_schedule_final_loss']:.4f}, "
                  + ("**at or below** AdamW's best: half the steps suffice." if ok else
                     f"**above** AdamW's best ({s['target_loss']:.4f}): half the steps do not suffice.")]
    if edges:
        lines += ["", "Note: " + "; ".join(edges) + " (a wider sweep may move the target)."]
    lines += ["", f"Caveats: one seed, a 3-point lr sweep per optimizer, a short phase at {bc['resolution']} px "
              f"(styles_v1 trains {res['config_distill']['steps']} steps at {res['config_distill']['resolution']} "
              f"px), a held-out set of {res['held_out_crops']} crops.", "",
              "![Muon vs AdamW on the distillation objective](bench/muon_distill.png)", "",
              f"Reproduce: `{res['command']}` (docs/bench/muon_distill.json has every curve).", ""]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smoke run: few steps, one lr each")
    ap.add_argument("--steps", type=int)
    ap.add_argument("--resolution", type=int)
    ap.add_argument("--adamw-lrs", type=float, nargs="+")
    ap.add_argument("--muon-lrs", type=float, nargs="+")
    ap.add_argument("--threads", type=int)
    ap.add_argument("--no-half", action="store_true", help="skip the half-schedule Muon run")
    ap.add_argument("--json", default=str(REPO / "docs" / "bench" / "muon_distill.json"))
    ap.add_argument("--plot", default=str(REPO / "docs" / "bench" / "muon_distill.png"))
    ap.add_argument("--markdown", default=str(REPO / "docs" / "benchmarks.md"),
                    help="benchmarks page whose section is replaced ('' = do not write)")
    args = ap.parse_args()
    bc = copy.deepcopy(QUICK if args.quick else BenchConfig())
    for key in ("steps", "resolution", "threads"):
        if getattr(args, key) is not None:
            setattr(bc, key, getattr(args, key))
    for key in ("adamw_lrs", "muon_lrs"):
        if getattr(args, key):
            setattr(bc, key, tuple(getattr(args, key)))
    bc.half_schedule = not args.no_half
    import tempfile

    with tempfile.TemporaryDirectory(prefix="bench_muon_distill_") as tmp:
        start = time.perf_counter()
        res = run(bc, tmp)
    res["wall_seconds"] = time.perf_counter() - start
    res["command"] = "python bench/bench_muon_distill.py " + " ".join(sys.argv[1:])
    res["command"] = res["command"].strip()
    res["machine"] = machine()
    s = res["summary"]
    print(f"\n{'optimizer':<8}{'lr':>8}{'final':>10}{'seconds':>10}")
    for r in res["runs"]:
        print(f"{r['optimizer']:<8}{r['lr']:>8g}{r['final_loss']:>10.4f}{r['seconds']:>10.1f}")
    print(f"target {s['target_loss']:.4f}: AdamW {s['adamw_steps']} steps / {s['adamw_seconds']:.1f} s; "
          f"Muon {s['muon_steps']} steps / {s['muon_seconds'] or float('nan'):.1f} s; "
          f"step ratio {s.get('step_ratio', float('nan')):.2f}; half schedule final "
          f"{s.get('half_schedule_final_loss', float('nan')):.4f}; wall {res['wall_seconds']:.0f} s")
    write_json(Path(args.json), res)
    plot(res, Path(args.plot))
    if args.markdown:
        update_markdown_section(Path(args.markdown), HEADING, section(res))
    print(f"wrote {args.json}, {args.plot}" + (f", {args.markdown}" if args.markdown else ""))


if __name__ == "__main__":
    main()
