"""Muon (MomentUm Orthogonalized by Newton-Schulz) for one process, with auxiliary AdamW groups.

Muon runs SGD-momentum and then replaces each hidden weight matrix's update by (approximately) the
nearest semi-orthogonal matrix, U V^T of its SVD: every direction of the update gets the same step
size, which is steepest descent under the spectral norm (the natural norm of a linear layer's
operator). Parameters that are not such operators (input and output layers, embeddings and
per-style tables, norms, gains, biases, depthwise filters) are trained by AdamW in the *same*
optimizer, so a trainer steps, schedules and checkpoints one object.

The maths lives in plain functions (``zeropower_via_newtonschulz5``, ``muon_update``,
``adam_update``); the optimizer classes only hold state and loop. References: KellerJordan/Muon
``muon.py`` (the quintic iteration and the ``max(1, rows/cols)**0.5`` scale), Moonlight
("Muon is Scalable for LLM Training", the ``0.2 * sqrt(max(rows, cols))`` AdamW-RMS-matching
scale) and ``torch.optim.Muon`` (which rejects conv filters; we flatten them).

Param groups are dicts with ``use_muon`` (required) plus the options of ``MuonOptions`` or
``AdamWOptions``; anything else is a ``ConfigError`` (a misspelt ``weight_decya`` must not silently
train without weight decay). ``param_groups.split_params(model)`` builds them from a model.
"""
from __future__ import annotations

import difflib
import math
from dataclasses import asdict, dataclass, fields

import torch

from muon_ad_ros.core.errors import ConfigError

NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)  # quintic, slope 3.4445 at zero (KellerJordan/Muon)
NS_EPS = 1e-7
LR_SCALE_MODES = ("original", "match_rms_adamw", "none")
# Keys torch or its LR schedulers add to param groups after construction; never user options.
BOOKKEEPING_KEYS = ("param_names", "initial_lr")


# ----------------------------------------------------------------------------- maths


def ns_compute_dtype(device: torch.device) -> torch.dtype:
    """bf16 where its matmuls are fast and the iteration is known stable (GPU), float32 on CPU.

    CPU bf16 matmuls are slower than float32 and only lose precision, so there is no reason to pay.
    """
    return torch.bfloat16 if device.type == "cuda" else torch.float32


def zeropower_via_newtonschulz5(G: torch.Tensor, steps: int = 5) -> torch.Tensor:
    """Approximate U V^T of G = U S V^T with ``steps`` iterations of a quintic Newton-Schulz map.

    G: [..., rows, cols] (leading dims are a batch). Returns the same shape and dtype as G.

    The map X <- a X + (b A + c A^2) X with A = X X^T applies p(s) = a s + b s^3 + c s^5 to every
    singular value s while keeping the singular vectors. Its coefficients maximise the slope at zero
    (a = 3.4445) rather than converge to 1, so after 5 steps the singular values land in a band of
    roughly [0.68, 1.21] instead of exactly 1 -- which trains as well as exact U V^T and needs no
    more steps. Dividing by the Frobenius norm (>= spectral norm) puts every s in [0, 1] first.
    Wide orientation (rows <= cols) makes X X^T the smaller Gram matrix, so tall inputs are
    transposed.
    """
    if G.ndim < 2:
        raise ConfigError(f"Newton-Schulz needs a matrix, got a tensor of shape {tuple(G.shape)}")
    if steps < 1:
        raise ConfigError(f"Newton-Schulz needs at least one step, got {steps}")
    a, b, c = NS_COEFFICIENTS
    X = G.to(ns_compute_dtype(G.device))
    tall = G.size(-2) > G.size(-1)
    if tall:
        X = X.mT  # [..., cols, rows]
    X = X / (X.norm(dim=(-2, -1), keepdim=True) + NS_EPS)  # spectral norm <= Frobenius norm = 1
    for _ in range(steps):
        A = X @ X.mT  # [..., r, r] with r = min(rows, cols)
        B = b * A + c * A @ A
        X = a * X + B @ X
    if tall:
        X = X.mT
    return X.to(G.dtype)


def as_matrix(t: torch.Tensor) -> torch.Tensor:
    """View a weight as the matrix Muon orthogonalises: [out, in] or a conv filter [out, in*kh*kw].

    A conv filter maps the in*kh*kw values of a patch to out channels, so that flattening is the
    layer's actual linear operator on patches (the one whose spectral norm matters).
    """
    if t.ndim < 2:
        raise ConfigError(f"Muon needs a weight with ndim >= 2, got shape {tuple(t.shape)}")
    return t.reshape(t.size(0), -1)


def lr_scale(shape: torch.Size | tuple[int, ...], mode: str = "original") -> float:
    """Shape-dependent multiplier of the Muon step for a weight of ``shape`` (viewed as a matrix).

    original:         max(1, rows/cols)**0.5 (KellerJordan/Muon): an orthogonal update of a tall
                      matrix has RMS sqrt(1/rows); this keeps the per-input-direction step equal.
    match_rms_adamw:  0.2 * sqrt(max(rows, cols)) (Moonlight): gives the update the RMS ~0.2 of a
                      typical AdamW update, so AdamW's learning rate and weight decay carry over.
    none:             1.
    Conv filters use their matrix view [out, in*kh*kw] (the reference used the last two dims of the
    4-D tensor, i.e. kh/kw, which is 1 for square kernels).
    """
    rows = shape[0]
    cols = math.prod(shape[1:])
    if mode == "original":
        return max(1.0, rows / cols) ** 0.5
    if mode == "match_rms_adamw":
        return 0.2 * math.sqrt(max(rows, cols))
    if mode == "none":
        return 1.0
    raise ConfigError(f"unknown lr_scale mode {mode!r}; expected one of {LR_SCALE_MODES}")


def muon_update(
    grad: torch.Tensor,
    momentum: torch.Tensor,
    beta: float = 0.95,
    ns_steps: int = 5,
    nesterov: bool = True,
    scale_mode: str = "original",
) -> torch.Tensor:
    """The Muon update direction for one weight; the caller does ``p -= lr * update``.

    grad, momentum: the weight's shape (momentum is updated in place: m <- beta m + (1-beta) g).
    Returns a tensor of grad's shape: NS5(nesterov ? (1-beta) g + beta m : m) * lr_scale(shape).
    Unlike the reference, ``grad`` is not modified (p.grad stays the true gradient for logging).
    The EMA form of momentum only rescales the input of NS, which normalises scale away.
    """
    momentum.lerp_(grad, 1 - beta)
    update = grad.lerp(momentum, beta) if nesterov else momentum
    update = zeropower_via_newtonschulz5(as_matrix(update), steps=ns_steps)  # [out, in*k*k]
    return update.view_as(grad) * lr_scale(grad.shape, scale_mode)


def adam_update(
    grad: torch.Tensor,
    exp_avg: torch.Tensor,
    exp_avg_sq: torch.Tensor,
    step: int,
    betas: tuple[float, float],
    eps: float,
) -> torch.Tensor:
    """The bias-corrected Adam direction (moments updated in place); same arithmetic as torch AdamW."""
    beta1, beta2 = betas
    exp_avg.lerp_(grad, 1 - beta1)
    exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
    bias_correction1 = 1 - beta1**step
    bias_correction2 = 1 - beta2**step
    denom = (exp_avg_sq.sqrt() / math.sqrt(bias_correction2)).add_(eps)
    return (exp_avg / bias_correction1).div_(denom)


# ----------------------------------------------------------------------------- param groups


@dataclass
class MuonOptions:
    """Options of a Muon group (``use_muon=True``) and their defaults (KellerJordan/Muon's)."""

    lr: float = 0.02  # in units of spectral norm per step (with scale "original")
    momentum: float = 0.95
    nesterov: bool = True
    ns_steps: int = 5
    weight_decay: float = 0.0  # decoupled: p <- p * (1 - lr * weight_decay)
    lr_scale: str = "original"  # one of LR_SCALE_MODES
    name: str = ""  # free label for logs ("hidden_matrices")


@dataclass
class AdamWOptions:
    """Options of an auxiliary AdamW group (``use_muon=False``) and their defaults."""

    lr: float = 3e-4
    betas: tuple[float, float] = (0.9, 0.95)
    eps: float = 1e-10
    weight_decay: float = 0.0
    name: str = ""


def _options_for(group: dict) -> type:
    return MuonOptions if group["use_muon"] else AdamWOptions


def check_param_group(group: dict, index: int | str = "?") -> dict:
    """Validate one param group and fill its defaults; returns a new dict. Raises ConfigError."""
    where = f"param group {index}"
    if not isinstance(group, dict):
        raise ConfigError(f"{where}: a param group must be a dict, got {type(group).__name__}")
    if group.get("name"):
        where += f" ({group['name']!r})"
    if "params" not in group:
        raise ConfigError(f"{where}: missing 'params'")
    if "use_muon" not in group or not isinstance(group["use_muon"], bool):
        raise ConfigError(f"{where}: needs 'use_muon': True (Muon) or False (AdamW)")
    options = _options_for(group)
    allowed = {f.name for f in fields(options)} | {"params", "use_muon", *BOOKKEEPING_KEYS}
    for key in group:
        if key not in allowed:
            hint = difflib.get_close_matches(key, sorted(allowed), n=1)
            kind = "Muon" if group["use_muon"] else "AdamW"
            raise ConfigError(
                f"{where}: unknown {kind} option {key!r}"
                + (f" (did you mean {hint[0]!r}?)" if hint else "")
                + f"; allowed: {sorted(allowed - {'params', *BOOKKEEPING_KEYS})}"
            )
    checked = {**asdict(options()), **group}
    params = checked["params"]
    if isinstance(params, (set, frozenset)):
        raise ConfigError(f"{where}: 'params' must be an ordered sequence, not a set (state would not "
                          "map back to the same parameters on reload)")
    params = [params] if isinstance(params, torch.Tensor) else list(params)
    if params and all(isinstance(p, tuple) and len(p) == 2 for p in params):  # named: (name, tensor)
        checked["param_names"] = [name for name, _ in params]
        params = [p for _, p in params]
    if any(not isinstance(p, torch.Tensor) for p in params):
        raise ConfigError(f"{where}: 'params' must be tensors or (name, tensor) pairs")
    checked["params"] = params
    _check_values(checked, where)
    if checked["use_muon"]:
        for i, p in enumerate(params):
            if p.ndim < 2:
                label = _param_label(checked, i, p)
                raise ConfigError(
                    f"{where}: Muon parameter {label} has ndim {p.ndim}; gains and biases go to an "
                    "AdamW group (use_muon=False)"
                )
    return checked


def _param_label(group: dict, i: int, p: torch.Tensor) -> str:
    names = group.get("param_names")
    return f"{names[i]!r} {tuple(p.shape)}" if names else f"#{i} {tuple(p.shape)}"


def _check_values(g: dict, where: str) -> None:
    def need(ok: bool, msg: str) -> None:
        if not ok:
            raise ConfigError(f"{where}: {msg}")

    need(isinstance(g["lr"], (int, float)) and g["lr"] >= 0, f"lr must be a number >= 0, got {g['lr']!r}")
    need(g["weight_decay"] >= 0, f"weight_decay must be >= 0, got {g['weight_decay']!r}")
    need(isinstance(g["name"], str), f"name must be a string, got {g['name']!r}")
    if g["use_muon"]:
        need(0 <= g["momentum"] < 1, f"momentum must be in [0, 1), got {g['momentum']!r}")
        need(isinstance(g["nesterov"], bool), f"nesterov must be a bool, got {g['nesterov']!r}")
        need(isinstance(g["ns_steps"], int) and g["ns_steps"] >= 1,
             f"ns_steps must be an int >= 1, got {g['ns_steps']!r}")
        need(g["lr_scale"] in LR_SCALE_MODES,
             f"lr_scale must be one of {LR_SCALE_MODES}, got {g['lr_scale']!r}")
    else:
        betas = g["betas"]
        need(isinstance(betas, (tuple, list)) and len(betas) == 2 and all(0 <= b < 1 for b in betas),
             f"betas must be two numbers in [0, 1), got {betas!r}")
        g["betas"] = tuple(betas)
        need(g["eps"] > 0, f"eps must be > 0, got {g['eps']!r}")


# ----------------------------------------------------------------------------- optimizer


class Muon(torch.optim.Optimizer):
    """Muon for the ``use_muon=True`` groups, AdamW for the others; one process.

    Weight decay is decoupled in both (p <- p * (1 - lr * wd), before the step, as torch AdamW).
    A parameter whose .grad is None is skipped this step, as torch optimizers do.

    Example::

        split = split_params(model)            # param_groups.py; print(split.explain())
        opt = Muon(split.param_groups(muon=dict(lr=0.02), adamw=dict(lr=3e-3)))
    """

    def __init__(self, param_groups):
        param_groups = list(param_groups)
        if not param_groups or not all(isinstance(g, dict) for g in param_groups):
            raise ConfigError("Muon needs a non-empty list of param group dicts, each with 'use_muon'")
        super().__init__(param_groups, defaults={})

    def add_param_group(self, param_group: dict) -> None:
        checked = check_param_group(param_group, len(self.param_groups))
        seen = {id(p) for g in self.param_groups for p in g["params"]}
        for i, p in enumerate(checked["params"]):
            if id(p) in seen:
                raise ConfigError(
                    f"param group {len(self.param_groups)}: parameter {_param_label(checked, i, p)} "
                    "is already in another group"
                )
        super().add_param_group(checked)

    def load_state_dict(self, state_dict: dict) -> None:
        """Standard torch loading, then re-validate the loaded options (a tampered or foreign file
        must not smuggle in a negative lr or flip a group between Muon and AdamW)."""
        saved = state_dict["param_groups"]
        if len(saved) != len(self.param_groups):
            raise ConfigError(f"state dict has {len(saved)} param groups, "
                              f"optimizer has {len(self.param_groups)}")
        for i, (s, g) in enumerate(zip(saved, self.param_groups)):
            if s.get("use_muon") != g["use_muon"]:
                raise ConfigError(f"param group {i}: state dict has use_muon={s.get('use_muon')}, "
                                  f"optimizer has {g['use_muon']}")
        super().load_state_dict(state_dict)
        for i, g in enumerate(self.param_groups):
            _check_values(g, f"loaded param group {i}")

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                if group["use_muon"]:
                    self._muon_step(p, p.grad, group)
                else:
                    self._adamw_step(p, p.grad, group)
        return loss

    def _muon_step(self, p: torch.Tensor, grad: torch.Tensor, group: dict) -> None:
        state = self.state[p]
        if "momentum_buffer" not in state:
            state["momentum_buffer"] = torch.zeros_like(p)
        update = muon_update(grad, state["momentum_buffer"], group["momentum"], group["ns_steps"],
                             group["nesterov"], group["lr_scale"])
        p.mul_(1 - group["lr"] * group["weight_decay"])
        p.add_(update, alpha=-group["lr"])

    def _adamw_step(self, p: torch.Tensor, grad: torch.Tensor, group: dict) -> None:
        state = self.state[p]
        if "step" not in state:
            state["step"] = 0
            state["exp_avg"] = torch.zeros_like(p)
            state["exp_avg_sq"] = torch.zeros_like(p)
        state["step"] += 1
        update = adam_update(grad, state["exp_avg"], state["exp_avg_sq"], state["step"],
                             group["betas"], group["eps"])
        p.mul_(1 - group["lr"] * group["weight_decay"])
        p.add_(update, alpha=-group["lr"])
