"""The distillation training loop: one ``Trainer`` runs the whole curriculum, on 1 or N processes.

Per step s:  (phase, t) = schedule.lookup(s)
             [phase change] -> trainable set, fresh optimizer (Muon / AdamW aux), DDP re-wrap, pruner
             lr = initial_lr * lr_multiplier(phase, t);  lambda = lambda_at(phase, t)
             [compress] -> pruner observes the global batch, masks follow pruning.sparsity_at(t)
             batch = BatchSource.batch(s, rank slice)  ->  y = student(x, style)  ->  StudentLoss
             backward (DDP averages), clip, optimizer step
Everything that varies is a function of (config, step), so ``resume`` equals an uninterrupted run.

Entropy for pruning is measured on the *global* batch (each rank runs the same no-grad forward of the
whole batch), so masks are identical on every rank and equal to the single-process run's.
"""
from __future__ import annotations

import contextlib
import copy
import math
import time
from pathlib import Path
from typing import Optional

import torch
import torch.distributed as dist

from muon_ad_ros.core.student import StudentNet

from . import checkpointing
from .curriculum import Phase, TrainingSchedule, lambda_at, lr_multiplier
from .data import EVAL_STEP, BatchSource, compute_targets, load_content, load_eval_content, load_styles
from .distributed import DistEnv, build_optimizer, set_trainable, wrap_ddp
from .pruning import EntropyPruner, sparsity_at
from .student_loss import StudentLoss, shift_consistency
from .train_config import TrainConfig


def needs_teacher(cfg: TrainConfig) -> bool:
    teacher_targets = cfg.targets.enabled and cfg.targets.kind == "teacher"
    return teacher_targets or any(p.weights.ad or p.weights.attn or p.weights.style_stats or p.weights.fine_content
                                  or p.lambda_content.start or p.lambda_content.end for p in cfg.phases)


@contextlib.contextmanager
def fp16_rounded_weights(model: torch.nn.Module, enabled: bool):
    """Forward and backward through weights rounded to fp16; the fp32 masters are restored before
    the optimizer step (a straight-through estimator: the model learns to be good *after* the fp16
    export rounds it)."""
    if not enabled:
        yield
        return
    with torch.no_grad():
        saved = [(p, p.detach().clone()) for p in model.parameters() if p.is_floating_point()]
        for p, _ in saved:
            p.copy_(p.half().to(p.dtype))
    try:
        yield
    finally:
        with torch.no_grad():
            for p, master in saved:
                p.copy_(master)


class Trainer:
    def __init__(self, cfg: TrainConfig, env: Optional[DistEnv] = None, base_dir: Path = Path(".")):
        self.cfg, self.env = cfg, env or DistEnv()
        self.device = self.env.device
        self.out = Path(cfg.output_dir)
        self.schedule = TrainingSchedule(cfg.phases)
        torch.manual_seed(cfg.seed)  # same initial weights on every rank
        self.model = StudentNet(cfg.student_config()).to(self.device)
        contents, self.content_names = load_content(cfg.data, base_dir)
        eval_contents = load_eval_content(cfg.data)  # after the training images: indices n_train..
        contents = contents + eval_contents
        self.styles = load_styles(cfg.data, base_dir)
        self.teacher = self._build_teacher() if needs_teacher(cfg) else None
        targets = None
        cache = Path(cfg.targets.cache_dir) if cfg.targets.cache_dir else self.out / "targets"
        if cfg.targets.enabled and cfg.targets.kind == "magenta":
            from .magenta_targets import magenta_targets

            targets = magenta_targets(contents, self.styles, cache, self.env.rank, self.env.barrier)
        elif cfg.targets.enabled:
            from .teacher_targets import TargetConfig

            t = cfg.targets
            tcfg = TargetConfig(steps=t.steps, lr=t.lr, optimizer=t.optimizer,
                                lambda_content=t.lambda_content, seed=cfg.seed)
            targets = compute_targets(self.teacher, contents, self.styles, self.model.config.style_names,
                                      tcfg, cache, self.env.rank, self.env.world_size, self.env.barrier)
        self.source = BatchSource(contents, len(self.styles), cfg.data, cfg.seed, targets, len(eval_contents))
        self.loss_fn = StudentLoss(self.teacher, [s.to(self.device) for s in self.styles], cfg.loss)
        self.step = 0
        self.history: list[dict] = []  # per step: phase, rank-averaged loss parts
        self.phase_evals: dict[str, dict] = {}  # phase name -> {"start": loss, "end": loss}
        self.phase: Optional[Phase] = None
        self.optimizer = self.ddp = self.pruner = self.writer = None
        self.amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(cfg.amp)

    def _build_teacher(self):
        from .teachers import build_teacher

        return build_teacher(self.cfg.teacher.kind, **self.cfg.teacher.options).to(self.device).freeze_()

    # ------------------------------------------------------------------ phases

    def _enter_phase(self, phase: Phase) -> None:
        self.phase = phase
        pc = phase.config
        set_trainable(self.model, pc.trainable)
        example = (torch.zeros(1, 3, 32, 32, device=self.device),
                   torch.ones(1, len(self.styles), device=self.device) / len(self.styles))
        self.optimizer = build_optimizer(self.model, pc, self.cfg.optim, self.env, example)
        self.ddp = None  # drop the previous phase's DDP (and its gradient hooks) before re-wrapping
        self.ddp = wrap_ddp(self.model, self.env)
        self.pruner = EntropyPruner(self.model, copy.deepcopy(pc.prune)) if pc.prune is not None else None

    def _autocast(self):
        if self.device.type == "cuda" and self.amp_dtype is not None:
            return torch.autocast("cuda", dtype=self.amp_dtype)
        return contextlib.nullcontext()

    # ------------------------------------------------------------------ one step

    def _phase_loss(self, module, batch, phase: Phase, t: float, capture: bool, generator=None):
        pc = phase.config
        x = batch.content.to(self.device)
        weights = batch.style_weights.to(self.device)
        target = batch.target.to(self.device) if batch.target is not None else None
        base = self.model
        base.set_attention_capture(capture)
        with self._autocast():
            y = module(x, weights)
            attn = [m.last_attention for m in base.attention_modules() if m.last_attention is not None] \
                if capture else None
            grid = (x.shape[-2] // 16, x.shape[-1] // 16)
            loss, parts = self.loss_fn(y.float(), batch.clean.to(self.device), batch.style, pc.weights,
                                       lambda_at(pc.lambda_content, t), target, attn, grid, generator)
            if pc.weights.stability:
                base.set_attention_capture(False)
                value = shift_consistency(module, x, weights, y, self.cfg.loss.stability_max_shift,
                                          self.cfg.loss.stability_noise, generator)
                parts["stability"] = value.detach()
                loss = loss + pc.weights.stability * value
                parts["total"] = loss.detach()
        return loss, parts, y

    def _observe_for_pruning(self, phase: Phase, t: float) -> float:
        """Entropy of the global batch (same on every rank), then masks at the ramp's sparsity."""
        full = self.source.batch(self.step, phase.config.resolution, 0, 1)
        self.model.set_attention_capture(True)
        with torch.no_grad(), self._autocast():
            self.model(full.content.to(self.device), full.style_weights.to(self.device))
        self.pruner.observe(self.model)
        self.model.set_attention_capture(False)
        prune = phase.config.prune
        self.pruner.update_masks(sparsity_at(t, prune.target_sparsity, prune.ramp))
        return self.pruner.sparsity()

    def train_step(self) -> dict:
        phase, t = self.schedule.lookup(self.step)
        if self.phase is None or phase.index != self.phase.index:
            if self.phase is not None:
                self.phase_evals.setdefault(self.phase.name, {})["end"] = self.evaluate(self.phase)
            self._enter_phase(phase)
            self.phase_evals.setdefault(phase.name, {}).setdefault("start", self.evaluate(phase))
        pc = phase.config
        mult = lr_multiplier(pc, t)
        for g in self.optimizer.param_groups:
            g["lr"] = g["initial_lr"] * mult
        extra = {"lr_mult": mult, "lambda": lambda_at(pc.lambda_content, t)}
        if self.pruner is not None:
            extra["sparsity"] = self._observe_for_pruning(phase, t)
        batch = self.source.batch(self.step, pc.resolution, self.env.rank, self.env.world_size)
        gen = torch.Generator().manual_seed(self.cfg.seed * 1_000_003 + self.step)
        self.model.train()
        micro = batch.chunks(self.cfg.data.micro_batches) if self.cfg.data.micro_batches > 1 else [batch]
        sums: dict = {}
        with fp16_rounded_weights(self.model, pc.fp16_weights):
            for k, mb in enumerate(micro):
                # DDP all-reduces gradients in the last micro-batch's backward only
                sync = k == len(micro) - 1 or not self.env.distributed
                with contextlib.nullcontext() if sync else self.ddp.no_sync():
                    loss, parts, y = self._phase_loss(self.ddp, mb, phase, t, capture=pc.weights.attn > 0,
                                                      generator=gen)
                    (loss / len(micro)).backward()
                for key, v in parts.items():
                    sums[key] = sums.get(key, 0.0) + v / len(micro)
        parts = sums
        self.model.set_attention_capture(False)
        if self.cfg.optim.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_([p for p in self.model.parameters() if p.requires_grad],
                                           self.cfg.optim.grad_clip)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        parts = self._mean_over_ranks(parts)
        record = {"step": self.step, "phase": phase.name, **parts, **extra}
        self.history.append(record)
        self.step += 1
        self._last_images = (micro[-1].content[:4], y.detach()[:4].float().cpu())
        return record

    def _mean_over_ranks(self, parts: dict) -> dict:
        keys = sorted(parts)
        values = torch.stack([parts[k].float() for k in keys]).to(self.device)
        if self.env.distributed:
            dist.all_reduce(values)
            values /= self.env.world_size
        return dict(zip(keys, values.cpu().tolist()))

    @torch.no_grad()
    def evaluate(self, phase: Phase, t: float = 0.5) -> float:
        """The phase's objective on a fixed held-out batch (same on every rank, no collectives)."""
        self.model.eval()
        batch = self.source.batch(EVAL_STEP + phase.index, phase.config.resolution, 0, 1)
        gen = torch.Generator().manual_seed(self.cfg.seed)
        loss, _, _ = self._phase_loss(self.model, batch, phase, t, capture=phase.config.weights.attn > 0,
                                      generator=gen)
        self.model.set_attention_capture(False)
        self.model.train()
        return float(loss)

    # ------------------------------------------------------------------ run

    def run(self, resume: bool | str = False, max_steps: Optional[int] = None) -> dict:
        """Train to the end of the schedule (or ``max_steps`` total steps); returns a summary."""
        if resume:
            self.restore(self.out if resume is True else resume)
        total = self.schedule.total_steps if max_steps is None else min(max_steps, self.schedule.total_steps)
        log = self.cfg.logging
        main = self.env.is_main
        if main:
            self.out.mkdir(parents=True, exist_ok=True)
            self.writer = _summary_writer(self.out / "tensorboard") if log.tensorboard else None
        bar = _progress(total, self.step) if (main and log.progress) else None
        start = time.perf_counter()
        while self.step < total:
            record = self.train_step()
            if not math.isfinite(record["total"]):
                raise FloatingPointError(f"non-finite loss at step {record['step']}: {record}")
            if bar is not None:
                bar.update(1)
                bar.set_postfix(phase=record["phase"], loss=f"{record['total']:.4f}")
            if main and self.writer is not None:
                self._log(record)
            if self.step % log.checkpoint_every == 0 or self.step == total:
                self.save()
        if self.step == self.schedule.total_steps and self.phase is not None:
            self.phase_evals.setdefault(self.phase.name, {})["end"] = self.evaluate(self.phase)
        if bar is not None:
            bar.close()
        if self.writer is not None:
            self.writer.close()
        return {"steps": self.step, "seconds": time.perf_counter() - start, "phase_evals": self.phase_evals,
                "phase_losses": phase_loss_summary(self.history)}

    def _log(self, record: dict) -> None:
        step, log = record["step"], self.cfg.logging
        if step % log.log_every == 0:
            for key, value in record.items():
                if isinstance(value, float):
                    self.writer.add_scalar(f"train/{key}", value, step)
        if step % log.image_every == 0:
            content, out = self._last_images
            grid = torch.cat([torch.cat(list(content), dim=-1), torch.cat(list(out), dim=-1)], dim=-2)
            self.writer.add_image(f"images/{record['phase']}", grid.clamp(0, 1), step)

    # ------------------------------------------------------------------ checkpoints

    def trainer_state(self) -> dict:
        return {"optimizer_phase": self.phase.index if self.phase else None, "config": self.cfg.to_dict(),
                "history": self.history, "phase_evals": self.phase_evals}

    def save(self) -> Path:
        pruner_state = self.pruner.state_dict() if self.pruner is not None else None
        return checkpointing.save_checkpoint(self.out, self.step, self.model, self.optimizer, self.env,
                                             self.trainer_state(), pruner_state,
                                             self.cfg.logging.keep_checkpoints)

    def restore(self, path) -> None:
        folder = checkpointing.resolve_checkpoint(path)
        ckpt = checkpointing.load_checkpoint(folder, self.env)
        state = ckpt["trainer"]
        self.model.load_state_dict({k: v.to(self.device) for k, v in ckpt["model"].items()}, strict=True)
        self.step, self.history, self.phase_evals = state["step"], state["history"], state["phase_evals"]
        saved_phase = state["optimizer_phase"]
        if self.step < self.schedule.total_steps and saved_phase == self.schedule.lookup(self.step)[0].index:
            self._enter_phase(self.schedule.phases[saved_phase])
            self.optimizer.load_state_dict(ckpt["optimizer"])
            if self.pruner is not None and ckpt["pruner"] is not None:
                self.pruner.load_state_dict(ckpt["pruner"])
        elif saved_phase is not None:  # the next step starts a new phase: train_step closes this one
            self.phase = self.schedule.phases[saved_phase]
        checkpointing.set_rng_state(ckpt["rng"])


def phase_loss_summary(history: list[dict], window: int = 5) -> dict:
    """Per phase: mean total loss of its first and last ``window`` steps."""
    out: dict[str, dict] = {}
    for name in dict.fromkeys(r["phase"] for r in history):
        losses = [r["total"] for r in history if r["phase"] == name]
        k = max(1, min(window, len(losses) // 3))
        out[name] = {"first": sum(losses[:k]) / k, "last": sum(losses[-k:]) / k, "steps": len(losses)}
    return out


def _summary_writer(path: Path):
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(str(path))


def _progress(total: int, initial: int):
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True)
