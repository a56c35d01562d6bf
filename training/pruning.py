"""Entropy-driven dynamic pruning of the student's attention heads.

The rule: **heads whose attention stays closest to uniform are pruned first.** Each head's entropy
is tracked as an exponential moving average over batches, per query token and normalised by log(N)
(N = number of tokens) so 0 = one-hot and 1 = uniform at any resolution.

Why uniform heads go first (see docs/pruning.md for the measurements):
* A head with uniform attention returns mean_j(v_j) for *every* query: a global average pool of
  its value projection. Its update is (almost) spatially constant, and a constant per-channel
  offset is removed by the conditional instance norm that follows every conv in the student
  (instance norm subtracts the per-channel spatial mean). What survives is a border effect of the
  zero-padded convs and a shift inside a later LayerNorm: little. A constant is also something
  the convs' biases / norm shifts can absorb in fine-tuning, so the head is redundant.
* It is also the cheapest signal to get right: the attention maps are already captured for
  attention distillation, so the statistic costs one pass over [B,heads,N,N] and no extra
  backward (Michel et al. 2019 "Are Sixteen Heads Really Better than One?" need a gradient of the
  loss w.r.t. a head gate per batch). Voita et al. 2019 found the opposite end, "confident" heads
  with peaked attention, to be the important ones in translation models, which agrees with
  pruning the broad ones; Clark et al. 2019 found many broad "bag-of-vectors" heads in BERT.
* The alternative for sharply peaked heads: a head that puts all its mass on the query token
  itself (large ``diag``, reported below) is a per-token linear map that the convs could learn,
  so it is redundant too, but entropy alone cannot tell it from a useful peaked head that looks
  at a *different* matching token. For those, use a loss-based importance (Michel et al.'s
  |dL/d gate|, or an ablation on held-out frames) rather than entropy. ``prune_first="peaked"``
  is provided to run that comparison, not as a recommended default.

Ranking is **global** by default (across blocks, as in Michel et al., who found global pruning
better than a fixed per-layer budget): normalised entropies are comparable across blocks (same
grid, same normalisation), and a block whose heads are all near-uniform should give up more of
them. ``scope="per_block"`` removes the same fraction from every block instead. Either way the
last ``min_heads_per_block`` heads of a block are never pruned (default 1).

Masks are revisited on a sparsity ramp (``sparsity_at``: the cubic schedule of Zhu & Gupta 2017)
during phase 3. Masked heads keep their weights (``head_mask`` zeroes their output; their rows
get zero gradient, which Muon's orthogonalisation keeps zero), so a head can come back. To stop
masks flapping between two heads with near-equal entropies, a masked head's score gets a bonus
of ``hysteresis``: a kept head replaces it only when it is more uniform by that margin.
At export ``prune_structurally`` removes the masked heads (smaller q/k/v and projection
matrices, fewer N^2 attention terms) and reports FLOPs and parameters before and after.
"""
from __future__ import annotations

import copy
import math
import warnings
from dataclasses import asdict, dataclass
from typing import Optional

import torch

from muon_ad_ros.core.errors import ConfigError
from muon_ad_ros.core.student import StudentNet
from muon_ad_training.flops import student_cost

REPORT_HW = (480, 640)  # the resolution FLOPs are reported at (the robot's camera)


@dataclass
class PruningConfig:
    target_sparsity: float = 0.5  # fraction of all heads masked at the end of the ramp
    ramp: float = 0.6  # fraction of phase 3 over which sparsity rises to the target
    ema_decay: float = 0.9  # per observation; ~10 batches of memory
    scope: str = "global"  # "global" ranking across blocks, or "per_block"
    min_heads_per_block: int = 1  # never prune a block below this many heads
    hysteresis: float = 0.02  # normalised-entropy margin a kept head must beat a masked one by
    min_observations: int = 5  # no mask before this many observations (the EMA must settle)
    prune_first: str = "uniform"  # "uniform" (the rule) or "peaked" (for comparison only)

    def validate(self) -> None:
        if not 0.0 <= self.target_sparsity <= 1.0:
            raise ConfigError(f"target_sparsity must be within [0, 1], got {self.target_sparsity}")
        if not 0.0 <= self.ramp <= 1.0:
            raise ConfigError(f"ramp must be within [0, 1], got {self.ramp}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ConfigError(f"ema_decay must be within [0, 1), got {self.ema_decay}")
        if self.scope not in ("global", "per_block"):
            raise ConfigError(f"scope must be 'global' or 'per_block', got {self.scope!r}")
        if self.prune_first not in ("uniform", "peaked"):
            raise ConfigError(f"prune_first must be 'uniform' or 'peaked', got {self.prune_first!r}")
        if self.min_heads_per_block < 0 or self.hysteresis < 0 or self.min_observations < 0:
            raise ConfigError("min_heads_per_block, hysteresis and min_observations must be >= 0")


def sparsity_at(progress: float, target: float, ramp: float) -> float:
    """Fraction of heads to mask at ``progress`` in [0,1] of phase 3: cubic rise to ``target`` by ``ramp``.

    s(t) = target * (1 - (1 - t/ramp)^3): prunes fastest early, while the most redundant heads
    are cheap to drop, and slowly near the end so the network can adapt (Zhu & Gupta 2017).
    """
    if ramp <= 0.0:
        return float(target)
    t = min(max(progress / ramp, 0.0), 1.0)
    return float(target) * (1.0 - (1.0 - t) ** 3)


def normalised_entropy(attn: torch.Tensor) -> torch.Tensor:
    """Mean row entropy per head / log(N): [B,heads,N,N] -> [heads]; 0 = one-hot, 1 = uniform."""
    n = attn.shape[-1]
    p = attn.detach().float()
    row_entropy = -(p * p.clamp_min(1e-12).log()).sum(-1)  # [B,heads,N]
    return row_entropy.mean(dim=(0, 2)) / math.log(n)


def self_attention_mass(attn: torch.Tensor) -> torch.Tensor:
    """Mean attention a token pays to itself, per head: [B,heads,N,N] -> [heads]."""
    return attn.detach().float().diagonal(dim1=-2, dim2=-1).mean(dim=(0, 2))


class EntropyPruner:
    """Tracks per-head attention entropy and sets ``head_mask`` of every attention block.

    Use in phase 3: ``model.set_attention_capture(True)``; after each forward ``observe(model)``;
    every few steps ``update_masks(sparsity_at(progress, cfg.target_sparsity, cfg.ramp))``.
    """

    def __init__(self, model: StudentNet, config: Optional[PruningConfig] = None):
        self.config = config or PruningConfig()
        self.config.validate()
        self.model = model
        self.heads = [attn.num_heads for attn in model.attention_modules()]
        self.entropy = [torch.zeros(h) for h in self.heads]  # EMA of normalised entropy per head
        self.diag = [torch.zeros(h) for h in self.heads]  # EMA of self-attention mass per head
        self.masks = [attn.head_mask.detach().cpu().clone() for attn in model.attention_modules()]
        self.observations = 0
        self.flips = 0  # mask changes so far (flapping shows up here)

    def _check_model(self, model: StudentNet) -> list:
        modules = model.attention_modules()
        if [m.num_heads for m in modules] != self.heads:
            raise ConfigError(f"model heads {[m.num_heads for m in modules]} != pruner heads {self.heads} "
                              "(structurally pruned after the pruner was built?)")
        return modules

    @torch.no_grad()
    def observe(self, model: Optional[StudentNet] = None) -> None:
        """Update the EMAs from each block's ``last_attention`` (needs attention capture on)."""
        modules = self._check_model(model or self.model)
        decay = self.config.ema_decay
        first = self.observations == 0
        seen = False
        for i, attn in enumerate(modules):
            a = attn.last_attention  # [B,heads,N,N]
            if self.heads[i] == 0:
                continue
            if a is None:
                raise ConfigError("observe() needs attention capture: call model.set_attention_capture(True) "
                                  "before the forward pass")
            if a.shape[-1] < 2:  # one token: uniform and one-hot coincide, nothing to learn
                continue
            ent, diag = normalised_entropy(a).cpu(), self_attention_mass(a).cpu()
            if first:  # start the EMA at the first value instead of biasing it towards 0
                self.entropy[i], self.diag[i] = ent, diag
            else:
                self.entropy[i] = decay * self.entropy[i] + (1.0 - decay) * ent
                self.diag[i] = decay * self.diag[i] + (1.0 - decay) * diag
            seen = True
        if seen:
            self.observations += 1

    def _scores(self) -> list[torch.Tensor]:
        """Higher = pruned first; masked heads get the hysteresis bonus so they stay masked."""
        scores = []
        for ent, mask in zip(self.entropy, self.masks):
            s = ent.clone() if self.config.prune_first == "uniform" else 1.0 - ent
            s[mask == 0] += self.config.hysteresis
            scores.append(s)
        return scores

    @torch.no_grad()
    def update_masks(self, sparsity: float, model: Optional[StudentNet] = None) -> list[list[int]]:
        """Mask the ``sparsity`` fraction of heads with the highest scores; returns the masks as lists."""
        if not 0.0 <= sparsity <= 1.0:
            raise ConfigError(f"sparsity must be within [0, 1], got {sparsity}")
        modules = self._check_model(model or self.model)
        if self.observations < self.config.min_observations:
            return [m.int().tolist() for m in self.masks]
        floor = self.config.min_heads_per_block
        scores = self._scores()
        new_masks = [torch.ones(h) for h in self.heads]
        if self.config.scope == "global":
            budget = math.floor(sparsity * sum(self.heads) + 0.5)  # round half up
            groups = [[(float(scores[b][h]), b, h)
                       for b in range(len(self.heads)) for h in range(self.heads[b])]]
        else:
            budget = None
            groups = [[(float(scores[b][h]), b, h) for h in range(self.heads[b])]
                      for b in range(len(self.heads))]
        for group in groups:
            if not group:
                continue
            k = budget if budget is not None else math.floor(sparsity * self.heads[group[0][1]] + 0.5)
            kept = {b: self.heads[b] for _, b, _ in group}
            for _, b, h in sorted(group, key=lambda t: (-t[0], t[1], t[2])):  # ties: stable by position
                if k <= 0:
                    break
                if kept[b] > floor:
                    new_masks[b][h] = 0.0
                    kept[b] -= 1
                    k -= 1
        for attn, old, new in zip(modules, self.masks, new_masks):
            self.flips += int((old != new).sum())
            attn.head_mask.copy_(new.to(attn.head_mask))
        self.masks = new_masks
        return [m.int().tolist() for m in new_masks]

    def sparsity(self) -> float:
        total = sum(self.heads)
        return sum(int((m == 0).sum()) for m in self.masks) / total if total else 0.0

    def report(self) -> dict:
        return {
            "observations": self.observations,
            "sparsity": round(self.sparsity(), 4),
            "mask_flips": self.flips,
            "blocks": [{"heads": h, "mask": m.int().tolist(),
                        "entropy": [round(float(v), 4) for v in e],
                        "self_attention": [round(float(v), 4) for v in d]}
                       for h, m, e, d in zip(self.heads, self.masks, self.entropy, self.diag)],
            "config": asdict(self.config),
        }

    def state_dict(self) -> dict:
        return {"heads": list(self.heads), "entropy": [e.clone() for e in self.entropy],
                "diag": [d.clone() for d in self.diag], "masks": [m.clone() for m in self.masks],
                "observations": self.observations, "flips": self.flips}

    @torch.no_grad()
    def load_state_dict(self, state: dict) -> None:
        """Restore the EMAs and masks, and write the masks back into the model."""
        if list(state["heads"]) != self.heads:
            raise ConfigError(f"pruner state is for heads {state['heads']}, model has {self.heads}")
        self.entropy = [torch.as_tensor(e, dtype=torch.float32).clone() for e in state["entropy"]]
        self.diag = [torch.as_tensor(d, dtype=torch.float32).clone() for d in state["diag"]]
        self.masks = [torch.as_tensor(m, dtype=torch.float32).clone() for m in state["masks"]]
        self.observations = int(state["observations"])
        self.flips = int(state.get("flips", 0))
        for attn, mask in zip(self.model.attention_modules(), self.masks):
            attn.head_mask.copy_(mask.to(attn.head_mask))


def masked_heads(model: StudentNet) -> list[list[int]]:
    """Indices of heads whose mask is exactly 0, per attention block."""
    return [[int(i) for i in torch.nonzero(attn.head_mask == 0).flatten()]
            for attn in model.attention_modules()]


def _cpu_copy(model: StudentNet) -> StudentNet:
    """Deep copy without the captured attention (non-leaf tensors cannot be deep-copied)."""
    modules = model.attention_modules()
    saved = [(m.last_attention, m.last_qkv) for m in modules]
    for m in modules:
        m.last_attention, m.last_qkv = None, None
    try:
        return copy.deepcopy(model).cpu()
    finally:
        for m, (a, qkv) in zip(modules, saved):
            m.last_attention, m.last_qkv = a, qkv


def prune_structurally(model: StudentNet, hw: tuple[int, int] = REPORT_HW,
                       inplace: bool = False) -> tuple[StudentNet, dict]:
    """Remove every head whose mask is 0 (soft masks are folded into the projection).

    Returns ``(pruned_model, stats)`` with heads, MACs and parameters before and after at ``hw``.
    The pruned model computes the same function as the masked one (a test checks it); it is a CPU
    copy unless ``inplace``.
    """
    if not inplace:
        model = _cpu_copy(model)
    before = student_cost(model, hw)
    heads_before = [attn.num_heads for attn in model.attention_modules()]
    keep = [[i for i in range(attn.num_heads) if float(attn.head_mask[i]) != 0.0]
            for attn in model.attention_modules()]
    for attn, k in zip(model.attention_modules(), keep):
        if attn.num_heads and not k and bool(attn.proj.bias.abs().max() > 0):
            warnings.warn("every head of an attention block is masked: the structurally pruned block "
                          "drops its projection bias, so it differs from the masked model by a constant")
    model.prune_heads(keep)
    after = student_cost(model, hw)
    stats = {
        "report_hw": list(hw),
        "heads_before": heads_before,
        "heads_after": [attn.num_heads for attn in model.attention_modules()],
        "kept_heads": keep,
        "macs_before": before.macs, "macs_after": after.macs,
        "flops_before": before.flops, "flops_after": after.flops,
        "params_before": before.params, "params_after": after.params,
        "macs_reduction": round(1.0 - after.macs / before.macs, 4) if before.macs else 0.0,
    }
    return model, stats
