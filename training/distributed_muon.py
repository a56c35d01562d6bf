"""Muon on torch.distributed: each rank orthogonalises only the matrices it owns.

Newton-Schulz is the expensive part of Muon (a few matmuls per matrix per step) and it is
deterministic given the averaged gradient, so running it on every rank repeats the same work N
times. Here every Muon matrix has one owner rank (assigned by size, largest first, to the least
loaded rank), and one step is:

    1. reduce-scatter the Muon gradients: rank r receives the sum of the gradients of the matrices
       it owns (flattened into its shard of a [N*L] buffer, L = the largest shard, zero padded);
    2. rank r divides by N, runs momentum + Newton-Schulz + the update on its own matrices only;
    3. all-gather the updated shards, so every rank ends with every updated matrix;
    4. AdamW parameters (small: norms, tables, biases, first/last layers) have their gradients
       all-reduced and are updated redundantly on every rank (elementwise, cheap).

With ``average_grads=False`` steps 1 and 4's all-reduces are skipped: the gradients must already
be averaged (the model is wrapped in DDP), and only the all-gather runs (the reference
KellerJordan/Muon layout).

Bytes: a reduce-scatter plus an all-gather move exactly what one all-reduce of the same tensor
moves, so sharding alone does not reduce communication (see comm.py and docs/benchmarks.md); it
divides Newton-Schulz compute and momentum memory by N.

Semantics that differ from ``Muon``: with ``average_grads=True`` a parameter whose .grad is None is
treated as a zero gradient (every rank must issue the same collectives). Each rank's state_dict
holds the momentum of the matrices it owns plus the (replicated) AdamW state; save one file per
rank and reload with the same world size.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist

from muon_ad_ros.core.errors import ConfigError
from .comm import Collectives, CommLog
from .muon import Muon


def assign_by_size(sizes: list[int], world_size: int) -> list[int]:
    """Owner rank of each item: largest first, each to the currently least loaded rank (LPT).

    Deterministic (ties broken by index, then by rank), so every rank computes the same answer.
    Balancing numel balances the padded shard length L (bytes) and momentum memory; NS flops grow
    a bit faster than numel, but the student's matrices are of similar shapes.
    """
    if world_size < 1:
        raise ConfigError(f"world_size must be >= 1, got {world_size}")
    load = [0] * world_size
    owner = [0] * len(sizes)
    for i in sorted(range(len(sizes)), key=lambda i: (-sizes[i], i)):
        rank = min(range(world_size), key=lambda r: (load[r], r))
        owner[i] = rank
        load[rank] += sizes[i]
    return owner


@dataclass
class ShardLayout:
    """Where each Muon matrix lives in the flat [world_size * shard_numel] exchange buffer."""

    params: list[torch.Tensor]  # every Muon parameter, in param-group order
    group_index: list[int]  # index into optimizer.param_groups
    owner: list[int]  # rank that orthogonalises it
    offset: list[int]  # start inside its owner's shard
    shard_numel: int  # L: the largest shard; the others are zero padded to it

    def flat_slice(self, i: int) -> slice:
        start = self.owner[i] * self.shard_numel + self.offset[i]
        return slice(start, start + self.params[i].numel())

    def local_slice(self, i: int) -> slice:
        return slice(self.offset[i], self.offset[i] + self.params[i].numel())


class DistributedMuon(Muon):
    """``Muon`` with the Newton-Schulz work divided between the ranks of ``process_group``.

    Build it with the same param groups on every rank (same model, same order); call ``step``
    on every rank after backward. Every collective is recorded in ``comm_log`` (``comm.CommLog``):
    without one, the optimizer keeps its own and files each ``step`` under a new step index; pass
    a log shared with DDP's ``counting_allreduce_hook`` to count both, and then call
    ``log.begin_step()`` yourself once per iteration (before backward).
    """

    def __init__(self, param_groups, process_group=None, average_grads: bool = True,
                 comm_log: CommLog | None = None):
        if not (dist.is_available() and dist.is_initialized()):
            raise ConfigError("DistributedMuon needs torch.distributed initialised "
                              "(dist.init_process_group, e.g. under torchrun); use Muon for one process")
        self.comm = Collectives(process_group, comm_log)
        self._owns_log = comm_log is None
        self.average_grads = average_grads
        self._layout: ShardLayout | None = None
        super().__init__(param_groups)

    @property
    def comm_log(self) -> CommLog:
        return self.comm.log

    def add_param_group(self, param_group: dict) -> None:
        super().add_param_group(param_group)
        self._layout = None  # ownership is recomputed with the new matrices at the next step

    # ------------------------------------------------------------------ layout

    def layout(self) -> ShardLayout:
        if self._layout is None:
            self._layout = self._build_layout()
        return self._layout

    def _build_layout(self) -> ShardLayout:
        params, group_index = [], []
        for gi, group in enumerate(self.param_groups):
            if group["use_muon"]:
                params += group["params"]
                group_index += [gi] * len(group["params"])
        kinds = {(p.dtype, p.device) for p in params}
        if len(kinds) > 1:
            raise ConfigError(f"DistributedMuon needs all Muon parameters on one dtype and device, "
                              f"got {kinds}")
        owner = assign_by_size([p.numel() for p in params], self.comm.world_size)
        fill = [0] * self.comm.world_size
        offset = []
        for p, r in zip(params, owner):
            offset.append(fill[r])
            fill[r] += p.numel()
        return ShardLayout(params, group_index, owner, offset, max(fill, default=0))

    def owned_params(self) -> list[torch.Tensor]:
        """The Muon matrices this rank orthogonalises."""
        lay = self.layout()
        return [p for p, r in zip(lay.params, lay.owner) if r == self.comm.rank]

    # ------------------------------------------------------------------ step

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        if self._owns_log:
            self.comm.log.begin_step()
        self._step_adamw()
        self._step_muon(self.layout())
        return loss

    def _step_adamw(self) -> None:
        entries = [(p, g) for g in self.param_groups if not g["use_muon"] for p in g["params"]]
        if not self.average_grads:
            for p, group in entries:
                if p.grad is not None:
                    self._adamw_step(p, p.grad, group)
            return
        # One all-reduce per dtype/device bucket: [sum of numels]
        buckets: dict[tuple, list] = {}
        for p, group in entries:
            buckets.setdefault((p.dtype, p.device), []).append((p, group))
        for items in buckets.values():
            flat = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1)
                              for p, _ in items])
            self.comm.all_reduce_sum(flat, "adamw_grads")
            flat.div_(self.comm.world_size)
            start = 0
            for p, group in items:
                grad = flat[start:start + p.numel()].view_as(p)
                start += p.numel()
                self._adamw_step(p, grad, group)

    def _step_muon(self, lay: ShardLayout) -> None:
        if lay.shard_numel == 0:
            return
        world, rank, L = self.comm.world_size, self.comm.rank, lay.shard_numel
        like = lay.params[0]
        mine = [i for i, r in enumerate(lay.owner) if r == rank]

        if self.average_grads:
            full = torch.zeros(world * L, dtype=like.dtype, device=like.device)  # [N*L]
            for i, p in enumerate(lay.params):
                if p.grad is not None:
                    full[lay.flat_slice(i)] = p.grad.reshape(-1)
            shard_grads = torch.empty(L, dtype=like.dtype, device=like.device)  # [L]
            self.comm.reduce_scatter_sum(shard_grads, full, "muon_grads")
            shard_grads.div_(world)

            def grad_of(i):
                return shard_grads[lay.local_slice(i)].view_as(lay.params[i])
        else:
            def grad_of(i):
                return lay.params[i].grad

        updated = torch.zeros(L, dtype=like.dtype, device=like.device)  # this rank's shard [L]
        for i in mine:
            p, grad = lay.params[i], grad_of(i)
            if grad is not None:
                self._muon_step(p, grad, self.param_groups[lay.group_index[i]])
            updated[lay.local_slice(i)] = p.reshape(-1)
        gathered = torch.empty(world * L, dtype=like.dtype, device=like.device)  # [N*L]
        self.comm.all_gather(gathered, updated, "muon_params")
        for i, p in enumerate(lay.params):
            if lay.owner[i] != rank:
                p.copy_(gathered[lay.flat_slice(i)].view_as(p))

    # ------------------------------------------------------------------ checkpoints

    def state_dict(self) -> dict:
        sd = super().state_dict()
        sd["distributed_muon"] = {"world_size": self.comm.world_size, "rank": self.comm.rank,
                                  "owner": list(self.layout().owner)}
        return sd

    def load_state_dict(self, state_dict: dict) -> None:
        """Load this rank's own file. Resharding to another world size is not supported."""
        state_dict = dict(state_dict)
        meta = state_dict.pop("distributed_muon", None)
        if meta is None:
            raise ConfigError("not a DistributedMuon state dict (no 'distributed_muon' entry)")
        here = {"world_size": self.comm.world_size, "rank": self.comm.rank,
                "owner": list(self.layout().owner)}
        for key, value in here.items():
            if meta.get(key) != value:
                raise ConfigError(f"DistributedMuon state dict was saved with {key}={meta.get(key)}, "
                                  f"this optimizer has {key}={value}")
        super().load_state_dict(state_dict)
