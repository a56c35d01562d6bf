"""Which parameters Muon trains and which AdamW trains, decided from the model and explainable.

Muon's argument (steepest descent under the spectral norm) holds for weights that are a linear map
from one hidden feature space to another. The rules, first match wins:

1. ``overrides``: an explicit {name or glob: "muon" | "adamw"} from the caller.
2. ndim < 2 (biases, gains, LayerNorm/BatchNorm affine): AdamW -- a vector is not an operator.
3. Owned by an ``nn.Embedding`` or a normalisation module (class name containing "Norm", e.g.
   the student's conditional instance norm with per-style scale/shift tables [S,C]): AdamW -- rows
   are looked up (one-hot/mixture style weights select rows), not a map whose spectrum matters.
4. The first and the last Conv/Linear layer (by forward order when ``example_inputs`` is given,
   else registration order): AdamW -- the input layer sees pixels, not features, and the output
   layer's update is shaped by the loss, not by a hidden space (KellerJordan/Muon, Moonlight).
5. A depthwise conv (groups == in_channels > 1, weight [C*m, 1, kh, kw]): AdamW. Its operator is
   block-diagonal with one independent [m, kh*kw] block per channel; flattening it to [C, kh*kw]
   and orthogonalising would force unrelated channels' filters to be mutually orthogonal (at most
   kh*kw of C rows can be), which is not the spectral-norm steepest direction of that operator.
   The per-block version would normalise each tiny filter on its own, close to what Adam's
   per-coordinate normalisation already does.
6. Any other Conv/Linear weight (dense or grouped convs viewed as [out, in/groups*kh*kw], 1x1
   pointwise convs, attention q/k/v/out projections): Muon.
7. Any other parameter with ndim >= 2 not owned by a Conv/Linear (raw tables, positional
   embeddings): AdamW -- unknown role, the conservative choice.

Frozen parameters (requires_grad False) are left out and listed as such.
"""
from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field

import torch
import torch.nn as nn

from muon_ad_ros.core.errors import ConfigError

MUON, ADAMW, FROZEN = "muon", "adamw", "frozen"
_LAYER_TYPES = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d,
                nn.ConvTranspose3d)


@dataclass
class Assignment:
    name: str
    param: torch.Tensor
    optimizer: str  # MUON, ADAMW or FROZEN
    reason: str


@dataclass
class ParamSplit:
    """The outcome of ``split_params``: one Assignment per (unique) parameter, in model order."""

    assignments: list[Assignment] = field(default_factory=list)

    def named(self, optimizer: str) -> list[tuple[str, torch.Tensor]]:
        return [(a.name, a.param) for a in self.assignments if a.optimizer == optimizer]

    @property
    def muon(self) -> list[tuple[str, torch.Tensor]]:
        return self.named(MUON)

    @property
    def adamw(self) -> list[tuple[str, torch.Tensor]]:
        return self.named(ADAMW)

    def param_groups(self, muon: dict | None = None, adamw: dict | None = None) -> list[dict]:
        """Param groups for ``Muon`` / ``DistributedMuon`` (named, so errors and logs say which
        parameter); ``muon`` / ``adamw`` are extra group options (lr, weight_decay...). Empty
        groups are left out."""
        groups = []
        for params, use_muon, extra, name in ((self.muon, True, muon, "muon"),
                                              (self.adamw, False, adamw, "adamw")):
            if params:
                groups.append({"params": params, "use_muon": use_muon, "name": name, **(extra or {})})
        return groups

    def explain(self) -> str:
        """A table: parameter, shape, optimizer, why. Ends with the parameter count per optimizer."""
        width = max((len(a.name) for a in self.assignments), default=4)
        lines = [f"{'parameter':<{width}}  {'shape':<18} {'opt':<6} reason"]
        for a in self.assignments:
            lines.append(f"{a.name:<{width}}  {str(tuple(a.param.shape)):<18} {a.optimizer:<6} {a.reason}")
        for opt in (MUON, ADAMW, FROZEN):
            chosen = [a for a in self.assignments if a.optimizer == opt]
            if chosen:
                n = sum(a.param.numel() for a in chosen)
                lines.append(f"{opt}: {len(chosen)} tensors, {n} parameters")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.explain()


def _layer_order(model: nn.Module, example_inputs) -> list[nn.Module]:
    """Conv/Linear modules in forward-call order (one traced forward) or registration order."""
    layers = [m for m in model.modules() if isinstance(m, _LAYER_TYPES)]
    if example_inputs is None:
        return layers
    order: list[nn.Module] = []
    hooks = [m.register_forward_hook(lambda mod, *_: order.append(mod) if mod not in order else None)
             for m in layers]
    try:
        with torch.no_grad():
            args = example_inputs if isinstance(example_inputs, tuple) else (example_inputs,)
            model(*args)
    finally:
        for h in hooks:
            h.remove()
    return order + [m for m in layers if m not in order]  # never-called layers keep their place last


def _is_depthwise(module: nn.Module) -> bool:
    return (isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d)) and module.groups > 1
            and module.groups == module.in_channels)


def _reason_for(module: nn.Module, local: str, p: torch.Tensor, first: nn.Module | None,
                last: nn.Module | None) -> tuple[str, str]:
    kind = type(module).__name__
    if p.ndim < 2:
        return ADAMW, f"ndim {p.ndim} (bias/gain/norm vector)"
    if isinstance(module, nn.Embedding) or "Embedding" in kind:
        return ADAMW, f"embedding table ({kind})"
    if "Norm" in kind:
        return ADAMW, f"table of a normalisation module ({kind})"
    if isinstance(module, _LAYER_TYPES) and local == "weight":
        if module is first:
            return ADAMW, f"input layer (first {kind})"
        if module is last:
            return ADAMW, f"output layer (last {kind})"
        if _is_depthwise(module):
            return ADAMW, "depthwise conv: per-channel filters, not a channel-mixing matrix"
        if p.ndim > 2:
            grouped = f", groups={module.groups}" if getattr(module, "groups", 1) > 1 else ""
            return MUON, f"hidden conv, as matrix [{p.shape[0]}, {p[0].numel()}]{grouped}"
        return MUON, f"hidden {kind} matrix"
    return ADAMW, f"ndim {p.ndim} tensor not owned by a Conv/Linear ({kind}.{local}): treated as a table"


def split_params(model: nn.Module, overrides: dict[str, str] | None = None,
                 example_inputs=None) -> ParamSplit:
    """Assign every trainable parameter of ``model`` to Muon or AdamW (see the module docstring).

    overrides: {parameter name or fnmatch glob: "muon" | "adamw"}; each must match something.
    example_inputs: a tensor or tuple for one no-grad forward that fixes the first/last layer by
    call order (otherwise by registration order, which matches the forward order in most models).
    """
    overrides = dict(overrides or {})
    for pattern, opt in overrides.items():
        if opt not in (MUON, ADAMW):
            raise ConfigError(f"override {pattern!r}: optimizer must be 'muon' or 'adamw', got {opt!r}")
    layers = _layer_order(model, example_inputs)
    first, last = (layers[0], layers[-1]) if layers else (None, None)
    owner = {}
    for mod_name, module in model.named_modules():
        for local, p in module.named_parameters(recurse=False):
            full = f"{mod_name}.{local}" if mod_name else local
            owner.setdefault(id(p), (module, local, full))

    split, used = ParamSplit(), set()
    for name, p in model.named_parameters():  # deduplicated: a tied weight appears once
        module, local, _ = owner[id(p)]
        matches = [pat for pat in overrides if fnmatch.fnmatchcase(name, pat)]
        if not p.requires_grad:
            opt, reason = FROZEN, "requires_grad is False"
        elif matches:
            pattern = max(matches, key=len)  # the most specific pattern wins
            used.add(pattern)
            opt, reason = overrides[pattern], f"override {pattern!r}"
            if opt == MUON and p.ndim < 2:
                raise ConfigError(f"override {pattern!r} puts {name} (ndim {p.ndim}) on Muon; "
                                  "Muon needs ndim >= 2")
        else:
            opt, reason = _reason_for(module, local, p, first, last)
        split.assignments.append(Assignment(name, p, opt, reason))
    unused = sorted(set(overrides) - used)
    if unused:
        raise ConfigError(f"overrides match no trainable parameter: {unused}")
    return split
