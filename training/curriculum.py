"""The three-phase curriculum as data: ``TrainingSchedule.lookup(step) -> (phase, t)``.

Phases (``PhaseConfig`` from the YAML) run back to back; phase i owns the global steps
[start_i, start_i + steps_i). ``t = (step - start_i) / steps_i`` is the progress inside the phase, in
[0, 1): everything that changes within a phase (learning rate, lambda, pruning sparsity) is a plain
function of (phase, t), so a resumed run recomputes exactly the same values (modded-nanogpt style).

The default curriculum (config/train/default.yaml):
  1. content  -- reconstruction + colour of the content at low resolution, AdamW on everything;
  2. distill  -- L_tot = L_distill + lambda * L_content with lambda annealed, Muon on hidden matrices;
  3. compress -- entropy-driven head pruning on a sparsity ramp, fp16-aware fine-tuning.
"""
from __future__ import annotations

import bisect
import math
from dataclasses import dataclass

from muon_ad_ros.core.errors import ConfigError

from .train_config import LambdaSchedule, PhaseConfig

LR_FLOOR = 0.1  # the cooldown ends at this fraction of the phase's learning rate


@dataclass
class Phase:
    """A phase placed on the global step axis."""

    index: int
    start: int
    config: PhaseConfig

    @property
    def end(self) -> int:  # exclusive
        return self.start + self.config.steps

    @property
    def name(self) -> str:
        return self.config.name


class TrainingSchedule:
    def __init__(self, phases: list[PhaseConfig]):
        if not phases:
            raise ConfigError("a training schedule needs at least one phase")
        self.phases: list[Phase] = []
        start = 0
        for i, cfg in enumerate(phases):
            if cfg.steps < 1:
                raise ConfigError(f"phase {cfg.name!r} has {cfg.steps} steps; need >= 1")
            self.phases.append(Phase(i, start, cfg))
            start += cfg.steps
        self.total_steps = start
        self._starts = [p.start for p in self.phases]

    def lookup(self, step: int) -> tuple[Phase, float]:
        """(phase, t) of a global step; t in [0, 1) is the progress inside the phase."""
        if not 0 <= step < self.total_steps:
            raise ConfigError(f"step {step} is outside the schedule [0, {self.total_steps})")
        phase = self.phases[bisect.bisect_right(self._starts, step) - 1]
        return phase, (step - phase.start) / phase.config.steps

    def boundaries(self) -> list[int]:
        """First step of every phase."""
        return list(self._starts)


# ----------------------------------------------------------------------------- per-phase functions


def lr_multiplier(phase: PhaseConfig, t: float) -> float:
    """Linear warmup from 0, constant, linear cooldown to LR_FLOOR (fractions of the phase)."""
    if phase.warmup > 0 and t < phase.warmup:
        return phase.lr_scale * (t + 1e-3) / phase.warmup
    if phase.cooldown > 0 and t > 1 - phase.cooldown:
        frac = (t - (1 - phase.cooldown)) / phase.cooldown  # 0 -> 1 over the cooldown
        return phase.lr_scale * (1 - (1 - LR_FLOOR) * frac)
    return phase.lr_scale


def lambda_at(schedule: LambdaSchedule, t: float) -> float:
    """The content weight lambda of L_tot = L_distill + lambda * L_content at progress t."""
    if schedule.schedule == "constant":
        return schedule.start
    if schedule.schedule == "linear":
        return schedule.start + (schedule.end - schedule.start) * t
    if schedule.schedule == "cosine":
        return schedule.end + (schedule.start - schedule.end) * 0.5 * (1 + math.cos(math.pi * t))
    raise ConfigError(f"unknown lambda schedule {schedule.schedule!r}")
