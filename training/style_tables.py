"""The per-style tables of a student: find them, grow them by one style, freeze all else, verify.

A style of the student is one row of every ConditionalInstanceNorm table (``style_scale`` and
``style_shift``, [S,C] each). The tables are found by module type, not by name, so any student
whose style conditioning lives in such modules (v1, v2, pruned or not) can be grown.
"""
from __future__ import annotations

import copy

import torch

from muon_ad_ros.core.errors import ModelError
from muon_ad_ros.core.student import ConditionalInstanceNorm, StudentNet


def norm_modules(model: torch.nn.Module) -> dict[str, ConditionalInstanceNorm]:
    """Every conditional-norm module by qualified name: where a style lives."""
    return {name: m for name, m in model.named_modules() if isinstance(m, ConditionalInstanceNorm)}


def table_keys(model: torch.nn.Module) -> list[str]:
    """state_dict keys of the per-style tables ([S,C] each)."""
    return [f"{name}.{t}" for name in norm_modules(model) for t in ("style_scale", "style_shift")]


def grown_state(base: StudentNet, new_rows: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The base's state with ``new_rows[key]`` ([C]) appended to every table ([S,C] -> [S+1,C])."""
    state = {k: v.detach().clone() for k, v in base.state_dict().items()}
    for key in table_keys(base):
        state[key] = torch.cat([state[key], new_rows[key].reshape(1, -1).to(state[key].dtype)], dim=0)
    return state


def row_init(base: StudentNet, source: int | str) -> dict[str, torch.Tensor]:
    """Initial new row of every table: a copy of style ``source``'s row, or ``"mean"`` of all rows."""
    state = base.state_dict()
    return {k: (state[k].mean(dim=0) if source == "mean" else state[k][int(source)]).clone()
            for k in table_keys(base)}


def grow(base: StudentNet, name: str, source: int | str = "mean") -> StudentNet:
    """A copy of ``base`` with one more style ``name`` (rows from ``source``); old rows untouched."""
    if not norm_modules(base):
        raise ModelError("this student has no ConditionalInstanceNorm: its styles are not per-style tables")
    config = copy.deepcopy(base.config)
    config.style_names = list(config.style_names) + [name]
    model = StudentNet(config)
    model.load_state_dict(grown_state(base, row_init(base, source)), strict=True)
    return model.eval()


def freeze_all_but_new_rows(model: StudentNet) -> list[torch.nn.Parameter]:
    """requires_grad only on the tables (gradient of old rows is exactly 0 under one-hot weights)."""
    for p in model.parameters():
        p.requires_grad_(False)
    tables = [getattr(m, t) for m in norm_modules(model).values() for t in ("style_scale", "style_shift")]
    for p in tables:
        p.requires_grad_(True)
    return tables


@torch.no_grad()
def restore_and_check(model: StudentNet, base: StudentNet) -> None:
    """Copy the old rows back from the base and prove every other tensor is the base's, bit for bit."""
    base_state, state = base.state_dict(), model.state_dict()
    tables = set(table_keys(base))
    s = base.config.num_styles
    for key, value in base_state.items():
        if key in tables:
            state[key][:s].copy_(value)
            same = torch.equal(state[key][:s], value)
        else:
            same = torch.equal(state[key], value)
        if not same:
            raise ModelError(f"add-style changed a frozen tensor {key} (a bug: refusing to export)")
