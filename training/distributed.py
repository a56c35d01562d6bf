"""torchrun / DDP plumbing and the optimizer for a phase.

Under ``torchrun --nproc_per_node N`` the environment carries RANK, WORLD_SIZE, LOCAL_RANK and the
rendezvous address; ``setup()`` joins the process group (NCCL on CUDA, gloo on CPU) and returns a
``DistEnv``. Without torchrun it returns a single-process ``DistEnv`` and nothing is initialised.

Multi-process layout: the student is wrapped in DDP (gradients averaged in backward), and the
optimizer is ``DistributedMuon(average_grads=False)``: each rank orthogonalises only the matrices it
owns and all-gathers the updated weights (the reference KellerJordan/Muon layout). A phase with
``optimizer: adamw`` uses the same class with AdamW groups only.
"""
from __future__ import annotations

import fnmatch
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from muon_ad_ros.core.errors import ConfigError

from .param_groups import split_params
from .train_config import OptimConfig, PhaseConfig


@dataclass
class DistEnv:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()


def pick_device(name: str, local_rank: int = 0) -> torch.device:
    if name == "cpu" or (name == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise ConfigError("device: cuda requested but CUDA is not available")
    return torch.device("cuda", local_rank % torch.cuda.device_count())


def setup(device: str = "auto") -> DistEnv:
    """Join the torchrun process group if WORLD_SIZE > 1 (idempotent), else a one-process env."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = pick_device(device, local_rank)
    if world > 1 and not dist.is_initialized():
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
    if dist.is_initialized():
        rank, world = dist.get_rank(), dist.get_world_size()
    return DistEnv(rank, world, local_rank, dev)


def teardown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def set_trainable(model: nn.Module, patterns: list[str]) -> list[str]:
    """requires_grad = name matches any fnmatch pattern; returns the trainable names. Each pattern
    must match something (a typo must not silently freeze the whole network)."""
    names = [n for n, _ in model.named_parameters()]
    for pattern in patterns:
        if not any(fnmatch.fnmatchcase(n, pattern) for n in names):
            raise ConfigError(f"trainable pattern {pattern!r} matches no parameter of the student")
    chosen = []
    for name, p in model.named_parameters():
        p.requires_grad_(any(fnmatch.fnmatchcase(name, pat) for pat in patterns))
        if p.requires_grad:
            chosen.append(name)
    return chosen


def build_optimizer(model: nn.Module, phase: PhaseConfig, optim: OptimConfig, env: DistEnv,
                    example_inputs=None):
    """Muon (one process) or DistributedMuon (several) over the trainable parameters of ``model``.

    ``phase.optimizer == "muon"``: hidden matrices on Muon, the rest on AdamW (param_groups.split_params);
    ``"adamw"``: every trainable parameter on AdamW. Call after ``set_trainable``.
    """
    from .distributed_muon import DistributedMuon
    from .muon import Muon

    adamw = dict(lr=optim.adamw_lr, weight_decay=optim.weight_decay)
    muon = dict(lr=optim.muon_lr, momentum=optim.momentum, weight_decay=optim.weight_decay)
    if phase.optimizer == "muon":
        groups = split_params(model, example_inputs=example_inputs).param_groups(muon=muon, adamw=adamw)
    else:
        named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        groups = [{"params": named, "use_muon": False, "name": "adamw", **adamw}]
    if not groups:
        raise ConfigError(f"phase {phase.name!r}: nothing to train")
    for g in groups:  # the reference lr that the phase's schedule multiplies (a key Muon accepts)
        g["initial_lr"] = g["lr"]
    opt = DistributedMuon(groups, average_grads=False) if env.distributed else Muon(groups)
    return opt


def wrap_ddp(model: nn.Module, env: DistEnv) -> nn.Module:
    """DDP around the student on several ranks (re-wrap after changing requires_grad), else as is."""
    if not env.distributed:
        return model
    from torch.nn.parallel import DistributedDataParallel as DDP

    ids = [env.device.index] if env.device.type == "cuda" else None
    return DDP(model, device_ids=ids, broadcast_buffers=True)
