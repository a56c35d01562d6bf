"""Full training-state checkpoints: everything ``--resume`` needs to continue bit for bit.

One checkpoint is a folder ``<output_dir>/checkpoints/step_<step>/``:

    student.safetensors + student.json   weights (head masks included) + StudentConfig (core.checkpoint)
    optimizer_rank<r>.pt                 each rank's optimizer state (DistributedMuon's differ per rank)
    state_rank<r>.pt                     RNG states and the pruner's state of rank r
    trainer.json                         step, phase of the optimizer state, world size, full config

It is written into a hidden temporary folder and renamed into place (``os.replace``), then the
``latest`` pointer file is replaced atomically: a crash at any moment leaves the previous checkpoint
valid and ``latest`` pointing at a complete folder. The data loader has no position to save: batches
are a function of (seed, step) (data.py).
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any, Optional

import torch
from safetensors.torch import load_file

from muon_ad_ros.core.checkpoint import atomic_write_bytes, atomic_write_json, save_student
from muon_ad_ros.core.errors import ModelError

from .distributed import DistEnv

LATEST = "latest"


def checkpoint_root(output_dir: str | os.PathLike) -> Path:
    return Path(output_dir) / "checkpoints"


def rng_state() -> dict:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(output_dir: str | os.PathLike, step: int, model, optimizer, env: DistEnv,
                    trainer_state: dict, pruner_state: Optional[dict] = None, keep: int = 2) -> Path:
    """Collective on all ranks: write the checkpoint of ``step`` (steps completed) atomically."""
    root = checkpoint_root(output_dir)
    name = f"step_{step:08d}"
    final, tmp = root / name, root / f".{name}.tmp"
    if env.is_main:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    env.barrier()
    _torch_save(tmp / f"optimizer_rank{env.rank}.pt", optimizer.state_dict())
    _torch_save(tmp / f"state_rank{env.rank}.pt", {"rng": rng_state(), "pruner": pruner_state})
    env.barrier()
    if env.is_main:
        save_student(model, tmp / "student", extra={"step": step})
        atomic_write_json(tmp / "trainer.json", {"step": step, "world_size": env.world_size, **trainer_state})
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        atomic_write_bytes(root / LATEST, (name + "\n").encode())
        _prune_old(root, keep)
    env.barrier()
    return final


def _torch_save(path: Path, obj: Any) -> None:
    torch.save(obj, path)


def _prune_old(root: Path, keep: int) -> None:
    steps = sorted(p for p in root.glob("step_*") if p.is_dir())
    for old in steps[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)


def resolve_checkpoint(path_or_output_dir: str | os.PathLike) -> Path:
    """A checkpoint folder, or the ``latest`` one of an output dir / checkpoints dir."""
    path = Path(path_or_output_dir)
    if (path / "trainer.json").is_file():
        return path
    for root in (path, checkpoint_root(path)):
        pointer = root / LATEST
        if pointer.is_file():
            folder = root / pointer.read_text().strip()
            if (folder / "trainer.json").is_file():
                return folder
    raise ModelError(f"no training checkpoint found at {path}")


def load_checkpoint(folder: Path, env: DistEnv) -> dict:
    """{trainer: dict, model: state dict, optimizer: this rank's state, rng, pruner}."""
    trainer = json.loads((folder / "trainer.json").read_text())
    if trainer["world_size"] != env.world_size:
        raise ModelError(f"{folder} was written by {trainer['world_size']} process(es); resume with the same "
                         f"number (got {env.world_size}): optimizer state is sharded per rank")
    state = torch.load(folder / f"state_rank{env.rank}.pt", map_location="cpu", weights_only=True)
    return {
        "trainer": trainer,
        "model": load_file(str(folder / "student.safetensors"), device="cpu"),
        "optimizer": torch.load(folder / f"optimizer_rank{env.rank}.pt", map_location=env.device,
                                weights_only=True),
        "rng": state["rng"],
        "pruner": state["pruner"],
    }
