"""Add a style to a trained student in minutes: one new row of every conditional-norm table.

Conditional instance norm (Dumoulin et al. 2017) keeps everything a style is in per-style tables
``style_scale`` / ``style_shift`` [S,C]; the convolutions are shared. So a new style is

    base bundle -> grow every ConditionalInstanceNorm table to [S+1,C]
                   (new row = the existing row, or the mean row, whose loss on a fixed batch is lowest)
                -> freeze every other tensor, train only row S with the curriculum's own distillation
                   loss (StudentLoss + the mobilenet teacher, weights of the base's distill phase)
                -> copy rows 0..S-1 back from the base (bit-exact) and check that nothing else moved
                -> export (training/export.py: FP32/FP16/INT8 ONNX, weights, card) into a temporary
                   folder, renamed to the output folder only when complete.

Old styles are unchanged by construction: their rows and every shared weight are the base's bytes,
and a one-hot ``style_weights @ table`` adds exact zeros for the new row. The tables are found by
module type, so any student whose style conditioning lives in ConditionalInstanceNorm works.

The ``attn`` and ``target`` terms of the curriculum are left out: attention distillation shapes the
shared attention weights (frozen here), and per-image teacher targets cost minutes per image.
"""
from __future__ import annotations

import dataclasses
import math
import os
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import torch

from muon_ad_ros.core.checkpoint import load_student
from muon_ad_ros.core.errors import ConfigError, ModelError
from muon_ad_ros.core.model_store import ModelFiles, models_dir, resolve_model
from muon_ad_ros.core.student import StudentNet

from .add_style_bundle import claim_output, export_new_style, publish
from .style_tables import freeze_all_but_new_rows, grow, restore_and_check, row_init
from .train_config import DataConfig, LossConfig, LossWeights, PhaseConfig, build, read_yaml

MIN_STYLE_SIDE = 64  # a style image smaller than this has too little texture for the teacher's taps
STYLE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")  # never an index, no ',' or ':' (mixtures)
SAMPLE_CONTENT = "sample"  # the package's bundled sample frames (the demo's scikit-image photos)


@dataclass
class AddStyleConfig:
    """Hyperparameters of one add-style run (the loss itself comes from the base model's recipe)."""

    minutes: float = 5.0  # wall-time bound of the whole run, export included
    export_reserve_s: float = 75.0  # part of ``minutes`` kept for the export (measured 40-65 s, loaded CPU)
    # ... or more on a slower (busier) machine: the export took 1.3-1.8x the set-up time (teacher,
    # content) in every measured run, so the reserve is at least this multiple of the set-up time.
    export_per_setup: float = 1.8
    tile: int = 1  # repeat a small tileable texture tile x tile before resizing (keeps its scale)
    lr: float = 0.05  # Adam on the new rows only (~1k numbers, no shared weight moves: a large step is safe)
    warmup: float = 0.05  # fractions of the budget; then cosine decay to 10%
    init: str = "best"  # "best" (lowest loss of the mean row and every existing row), "mean", "nearest"
    max_steps: int = 0  # 0: as many as fit in the time budget
    resolution: int = 0  # training crop side; 0: the base's distill phase
    # Coarse to fine: the first ``coarse_fraction`` of the budget at ``coarse_scale`` x the resolution
    # (4x cheaper steps at 0.5). Off by default: measured (docs/styles.md) 20 half + 20 full steps at
    # lr 0.08 ended further from the style's palette (Hellinger 0.88) than 40 full steps at lr 0.05 (0.70).
    coarse_fraction: float = 0.0
    coarse_scale: float = 0.5
    # Teacher-free first stage, when the base was trained with Magenta pseudo-targets: the first
    # ``imitate_fraction`` of the budget uses the base's imitation weights (pooled Magenta target of the
    # new style + palette), ~10x cheaper steps than the teacher's, which bring the palette in first.
    imitate_fraction: float = 0.5
    batch_size: int = 0  # 0: the base's batch size
    seed: int = 0
    precisions: Sequence[str] = ("fp32", "fp16", "int8")
    recipe: Optional[str] = None  # training YAML; None: the base card's own config, else default.yaml
    progress: bool = True


@dataclass
class Recipe:
    """What the curriculum trained the base with, as far as add-style uses it."""

    weights: LossWeights
    lambda_content: float
    loss: LossConfig
    data: DataConfig
    resolution: int
    teacher_options: dict = field(default_factory=dict)
    source: str = ""
    imitate_weights: Optional[LossWeights] = None  # the base's teacher-free phase with a target term


# ----------------------------------------------------------------------------- inputs


def check_style_name(name: str, existing: Sequence[str]) -> None:
    if not isinstance(name, str) or not STYLE_NAME.match(name):
        raise ConfigError(f"style name {name!r} must start with a letter and hold only letters, digits, "
                          "'_' or '-' (at most 64)")
    if name in existing:
        raise ConfigError(f"the base model already has a style named {name!r} (has: {', '.join(existing)})")


def read_style_image(path: str | os.PathLike) -> np.ndarray:
    """HxWx3 uint8 RGB of the style image; one-line errors for unreadable or tiny images."""
    import cv2

    path = Path(path).expanduser()
    if not path.is_file():
        raise ConfigError(f"style image not found: {path}")
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ConfigError(f"cannot read style image {path} (not an image OpenCV can decode)")
    h, w = bgr.shape[:2]
    if min(h, w) < MIN_STYLE_SIDE:
        raise ConfigError(f"style image {path} is {w}x{h}; it needs at least {MIN_STYLE_SIDE} px on each side")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def load_recipe(files: ModelFiles, recipe: Optional[str]) -> Recipe:
    """Loss weights, lambda and data settings of the base's distill phase (the longest phase with an
    AD term): from ``recipe`` (a training YAML), else the base card's training config, else the
    packaged config/train/default.yaml."""
    if recipe:
        data, source = read_yaml(recipe), str(recipe)
    elif isinstance(files.card.get("training", {}).get("config"), dict):
        data, source = files.card["training"]["config"], f"card of {files.id}"
    else:
        default = models_dir().parent / "config" / "train" / "default.yaml"
        data, source = read_yaml(default), "config/train/default.yaml"
    phases = [build(PhaseConfig, p, f"{source}: phases[{i}]") for i, p in enumerate(data.get("phases", []))]
    distill = [p for p in phases if p.weights.ad > 0]
    if not distill:
        raise ConfigError(f"{source}: no phase with an AD term to take the loss weights from")
    phase = max(distill, key=lambda p: p.steps)
    teacher = data.get("teacher", {}) or {}
    if teacher.get("kind", "mobilenet") != "mobilenet":
        raise ConfigError(f"{source}: add-style runs the mobilenet teacher (a CPU budget), not {teacher['kind']!r}")
    magenta = (data.get("targets", {}) or {}).get("kind") == "magenta" and \
        (data.get("targets", {}) or {}).get("enabled", False)
    # the trainer's shift/noise stability term is not part of StudentLoss (a second student pass)
    weights = dataclasses.replace(phase.weights, attn=0.0, stability=0.0,
                                  target=phase.weights.target if magenta else 0.0)
    imitate = [p for p in phases if p.weights.target > 0 and not p.weights.ad] if magenta else []
    imitate_weights = dataclasses.replace(imitate[0].weights, stability=0.0) if imitate else None
    return Recipe(weights=weights, lambda_content=phase.lambda_content.end, imitate_weights=imitate_weights,
                  loss=build(LossConfig, data.get("loss", {}) or {}, f"{source}: loss"),
                  data=build(DataConfig, {k: v for k, v in (data.get("data", {}) or {}).items()
                                          if k in ("batch_size", "base_size", "style_size", "augment")},
                             f"{source}: data"),
                  resolution=phase.resolution, teacher_options=dict(teacher.get("options", {}) or {}),
                  source=source)


def content_config(recipe: Recipe, content: Sequence[str]) -> DataConfig:
    """The content sources: folders given by the user, or the bundled sample frames."""
    folders = [str(c) for c in content if str(c) != SAMPLE_CONTENT]
    for folder in folders:
        if not Path(folder).expanduser().is_dir():
            raise ConfigError(f"--content {folder}: not a folder")
    sample = not content or SAMPLE_CONTENT in [str(c) for c in content]
    from muon_ad_ros.core.frame_sources import SAMPLE_IMAGES

    return dataclasses.replace(recipe.data, folders=[str(Path(f).expanduser()) for f in folders], videos=[],
                               skimage=list(SAMPLE_IMAGES) if sample else [], styles=[])


# ----------------------------------------------------------------------------- training


class NewStyleObjective:
    """The curriculum's StudentLoss on batches of the content, for the new style index only."""

    def __init__(self, model: StudentNet, style_image: torch.Tensor, recipe: Recipe, data: DataConfig,
                 resolution: int, seed: int):
        from .data import BatchSource, load_content
        from .student_loss import StudentLoss
        from .teachers import build_teacher

        self.model, self.recipe, self.resolution, self.seed = model, recipe, resolution, seed
        contents, self.content_names = load_content(data)
        targets = None
        if recipe.weights.target or recipe.imitate_weights is not None:
            import tempfile

            from .magenta_targets import magenta_targets

            # Magenta arbitrary's rendering of each content image in the new style (~0.1 s each, cached)
            cache = Path(tempfile.gettempdir()) / "muon_ad_add_style_targets"
            targets = magenta_targets(contents, [style_image], cache)
        self.source = BatchSource(contents, 1, data, seed, targets)
        teacher = build_teacher("mobilenet", **recipe.teacher_options).freeze_()
        self.loss_fn = StudentLoss(teacher, [style_image], recipe.loss)
        self.index = model.config.num_styles - 1

    def __call__(self, step: int, resolution: int = 0, imitate: bool = False) -> tuple[torch.Tensor, dict]:
        """The loss of ``step``'s batch; ``imitate``: the teacher-free weights (no AD, no content term)."""
        batch = self.source.batch(step, resolution or self.resolution)
        weights = torch.zeros(batch.content.shape[0], self.model.config.num_styles)
        weights[:, self.index] = 1.0  # [B,S+1] one-hot on the new style
        y = self.model(batch.content, weights)  # [B,3,r,r]
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + step)
        if imitate and self.recipe.imitate_weights is not None:
            return self.loss_fn(y, batch.clean, 0, self.recipe.imitate_weights, 0.0, batch.target, generator=gen)
        return self.loss_fn(y, batch.clean, 0, self.recipe.weights, self.recipe.lambda_content, batch.target,
                            generator=gen)


EVAL_STEP = 10**12  # the fixed batch on which the initial rows are compared (never a training step)


@torch.no_grad()
def choose_init(base: StudentNet, model: StudentNet, objective: NewStyleObjective, how: str) -> str:
    """Set the new rows to the candidate ("mean" or an existing style) with the lowest loss."""
    if how == "mean":
        candidates: list = ["mean"]
    elif how in ("nearest", "best"):
        candidates = list(range(base.config.num_styles)) + (["mean"] if how == "best" else [])
    else:
        raise ConfigError(f"init must be best, mean or nearest, got {how!r}")
    scores = {}
    half = smaller_resolution(objective.resolution, 0.5)  # ranking only: 4x cheaper at half resolution
    for cand in candidates:
        _set_new_rows(model, row_init(base, cand))
        scores[cand] = float(objective(EVAL_STEP, half)[0])
    best = min(scores, key=scores.get)
    _set_new_rows(model, row_init(base, best))
    return "mean" if best == "mean" else base.config.style_names[best]


def smaller_resolution(resolution: int, scale: float, floor: int = 64) -> int:
    """``scale`` x ``resolution`` in multiples of 16, but not below ``floor`` (the teacher reflect-pads
    its input) nor above ``resolution``."""
    return min(resolution, max(floor, int(resolution * scale) // 16 * 16))


def _set_new_rows(model: StudentNet, rows: dict[str, torch.Tensor]) -> None:
    state = model.state_dict()
    for key, row in rows.items():
        state[key][-1].copy_(row)


def lr_factor(t: float, warmup: float) -> float:
    """Linear warmup over ``warmup``, then cosine from 1 to 0.1 at the end of the budget (t in [0,1])."""
    if t < warmup:
        return (t + 1e-3) / warmup
    u = min(1.0, (t - warmup) / max(1e-6, 1.0 - warmup))
    return 0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * u))


def train_new_rows(model: StudentNet, objective: NewStyleObjective, cfg: AddStyleConfig, seconds: float,
                   on_step: Optional[Callable[[dict], None]] = None) -> dict:
    """Adam on the tables (only the new rows get gradient) until ``seconds`` or ``cfg.max_steps``."""
    params = freeze_all_but_new_rows(model)
    opt = torch.optim.Adam(params, lr=cfg.lr, weight_decay=0.0)
    model.train()
    losses, step, coarse_steps, t0, cpu0 = [], 0, 0, time.perf_counter(), time.process_time()
    while True:
        elapsed = time.perf_counter() - t0
        if (cfg.max_steps and step >= cfg.max_steps) or (not cfg.max_steps and elapsed >= seconds):
            break
        t = step / cfg.max_steps if cfg.max_steps else elapsed / max(seconds, 1e-6)
        for g in opt.param_groups:
            g["lr"] = cfg.lr * lr_factor(t, cfg.warmup)
        coarse = smaller_resolution(objective.resolution, cfg.coarse_scale)
        loss, parts = objective(step, coarse if t < cfg.coarse_fraction else 0, imitate=t < cfg.imitate_fraction)
        coarse_steps += t < cfg.coarse_fraction
        if not torch.isfinite(loss):
            raise FloatingPointError(f"add-style: non-finite loss at step {step}: {parts}")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
        step += 1
        if on_step is not None:
            on_step({"step": step, "loss": losses[-1], "elapsed": time.perf_counter() - t0})
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    k = max(1, min(10, len(losses) // 4))
    # CPU seconds (all threads) say what the wall time would be on an idle machine: on a shared
    # CPU the same budget runs far fewer steps.
    return {"steps": step, "coarse_steps": coarse_steps, "seconds": round(time.perf_counter() - t0, 1),
            "cpu_seconds": round(time.process_time() - cpu0, 1),
            "loss_first": float(np.mean(losses[:k])) if losses else None,
            "loss_last": float(np.mean(losses[-k:])) if losses else None}


def _progress_bar(total_s: float, enabled: bool):
    """A tqdm bar over the time budget (so its ETA is the real one), with step and loss."""
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=round(total_s, 1), unit="s", desc="add-style", dynamic_ncols=True,
                bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.0f}/{total:.0f} s [ETA {remaining}{postfix}]")


# ----------------------------------------------------------------------------- the API


def add_style(image: str | os.PathLike, name: str, out: str | os.PathLike, model: str = "default",
              content: Sequence[str] = (), config: Optional[AddStyleConfig] = None,
              provenance: Optional[str] = None, model_id: Optional[str] = None) -> Path:
    """Train style ``name`` from ``image`` into a copy of ``model`` and write the bundle to folder ``out``.

    ``content``: folders of content images and/or ``"sample"`` (default: the bundled sample frames).
    ``provenance``: where the style image comes from and its licence (recorded in the card).
    Returns the card path inside ``out``. Nothing is left at ``out`` unless the bundle is complete.
    """
    cfg = config or AddStyleConfig()
    start = time.perf_counter()
    if cfg.minutes <= 0 or cfg.tile < 1 or cfg.tile > 16:
        raise ConfigError("minutes must be > 0 and tile within 1..16")
    files = resolve_model(model)
    if "weights" not in files.files:
        raise ModelError(f"model {files.id!r} has no weights file (add-style needs the .safetensors)")
    check_style_name(name, files.styles)
    rgb = read_style_image(image)
    recipe = load_recipe(files, cfg.recipe)
    data = content_config(recipe, content)
    if cfg.batch_size:
        data = dataclasses.replace(data, batch_size=cfg.batch_size)
    resolution = cfg.resolution or recipe.resolution
    model_id = model_id or f"{files.id}_{name}"
    out = Path(out).expanduser()
    tmp = claim_output(out)
    try:
        base = load_student(files.file_for("weights")).eval()
        grown = grow(base, name)
        from .data import resize_square, to_tensor

        style_t = to_tensor(rgb).repeat(1, cfg.tile, cfg.tile) if cfg.tile > 1 else to_tensor(rgb)
        style_t = resize_square(style_t, recipe.data.style_size)
        torch.manual_seed(cfg.seed)
        objective = NewStyleObjective(grown, style_t, recipe, data, resolution, cfg.seed)
        loading = time.perf_counter() - start  # reading model, teacher, content: scales like the export
        init = choose_init(base, grown, objective, cfg.init)
        setup = time.perf_counter() - start
        reserve = max(cfg.export_reserve_s, cfg.export_per_setup * loading)
        budget = cfg.minutes * 60.0 - reserve - setup
        if budget <= 0 and not cfg.max_steps:
            raise ConfigError(f"--minutes {cfg.minutes:g} leaves no time to train (set-up took {setup:.0f} s, the "
                              f"export needs ~{reserve:.0f} s; is the CPU busy?)")
        bar = _progress_bar(max(budget, 0.0), cfg.progress and not cfg.max_steps)

        def on_step(rec):
            if bar is not None:
                bar.n = min(bar.total, round(rec["elapsed"], 1))
                bar.set_postfix_str(f"step {rec['step']}, loss {rec['loss']:.4f}")

        try:
            summary = train_new_rows(grown, objective, cfg, max(budget, 0.0), on_step)
        finally:
            if bar is not None:
                bar.close()
        restore_and_check(grown, base)
        card = export_new_style(grown, tmp, model_id, files, name, image, rgb, cfg, recipe, init, summary,
                                objective, provenance, resolution, data)
        publish(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out / card.name
