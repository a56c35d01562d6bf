"""Communication accounting: how many bytes each collective moves, per optimizer step.

Every collective that ``DistributedMuon`` issues goes through ``Collectives``, which records it in
a ``CommLog``; DDP's gradient all-reduce is recorded by registering ``counting_allreduce_hook`` as
its comm hook. Both logs then speak the same units, so the two can be compared on one model.

Two numbers per collective:

* ``payload_bytes``: the size of the logical tensor the collective is about -- the tensor that is
  all-reduced, the full (all ranks') input of a reduce-scatter, the full output of an all-gather.
* ``sent_bytes``: what each rank sends on the wire with the bandwidth-optimal ring algorithm
  (what NCCL and gloo's ring use for large messages), payload * factor with world size n:
  all-reduce 2(n-1)/n (a reduce-scatter then an all-gather), reduce-scatter (n-1)/n,
  all-gather (n-1)/n, broadcast (n-1)/n (pipelined ring). This is the number that bounds time on a
  bandwidth-limited link; it is a model of the algorithm, not a packet capture.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import torch
import torch.distributed as dist

SEND_FACTOR = {
    "all_reduce": lambda n: 2 * (n - 1) / n,
    "reduce_scatter": lambda n: (n - 1) / n,
    "all_gather": lambda n: (n - 1) / n,
    "broadcast": lambda n: (n - 1) / n,
}

# torch 2.13 renamed the flat-tensor collectives (the old names warn); torch < 2.13 has only the old.
_reduce_scatter_single = getattr(dist, "reduce_scatter_single", None) or dist.reduce_scatter_tensor
_all_gather_single = getattr(dist, "all_gather_single", None) or dist.all_gather_into_tensor


@dataclass
class CommRecord:
    step: int
    op: str  # a key of SEND_FACTOR
    label: str  # what was moved ("muon_grads", "ddp_bucket"...)
    payload_bytes: int
    world_size: int

    @property
    def sent_bytes(self) -> float:
        return self.payload_bytes * SEND_FACTOR[self.op](self.world_size)


@dataclass
class CommLog:
    """Collectives recorded in call order; ``begin_step`` advances the step index they are filed under."""

    records: list[CommRecord] = field(default_factory=list)
    step: int = 0

    def begin_step(self) -> None:
        self.step += 1

    def record(self, op: str, tensor: torch.Tensor, label: str, world_size: int) -> None:
        if op not in SEND_FACTOR:
            raise ValueError(f"unknown collective {op!r}")
        nbytes = tensor.numel() * tensor.element_size()
        self.records.append(CommRecord(self.step, op, label, nbytes, world_size))

    def per_step(self, step: int | None = None) -> dict[str, dict[str, float]]:
        """{label: {"calls", "payload_bytes", "sent_bytes"}} for ``step`` (default: the latest)."""
        step = self.step if step is None else step
        out: dict[str, dict[str, float]] = defaultdict(
            lambda: {"calls": 0, "payload_bytes": 0, "sent_bytes": 0.0})
        for r in self.records:
            if r.step == step:
                row = out[f"{r.op}:{r.label}"]
                row["calls"] += 1
                row["payload_bytes"] += r.payload_bytes
                row["sent_bytes"] += r.sent_bytes
        return dict(out)

    def totals(self, step: int | None = None) -> dict[str, float]:
        rows = self.per_step(step).values()
        return {"calls": sum(r["calls"] for r in rows),
                "payload_bytes": sum(r["payload_bytes"] for r in rows),
                "sent_bytes": sum(r["sent_bytes"] for r in rows)}


class Collectives:
    """The few collectives DistributedMuon needs, each recorded in ``log``. Sums only: gloo has no
    AVG reduction, so callers divide by the world size themselves."""

    def __init__(self, group=None, log: CommLog | None = None):
        self.group = group
        self.log = log if log is not None else CommLog()
        self.world_size = dist.get_world_size(group)
        self.rank = dist.get_rank(group)

    def all_reduce_sum(self, tensor: torch.Tensor, label: str) -> None:
        self.log.record("all_reduce", tensor, label, self.world_size)
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM, group=self.group)

    def reduce_scatter_sum(self, output: torch.Tensor, full_input: torch.Tensor, label: str) -> None:
        """output [L] on rank r <- sum over ranks of full_input[r*L:(r+1)*L]."""
        self.log.record("reduce_scatter", full_input, label, self.world_size)
        _reduce_scatter_single(output, full_input, op=dist.ReduceOp.SUM, group=self.group)

    def all_gather(self, full_output: torch.Tensor, local: torch.Tensor, label: str) -> None:
        """full_output[r*L:(r+1)*L] <- rank r's ``local`` [L]."""
        self.log.record("all_gather", full_output, label, self.world_size)
        _all_gather_single(full_output, local, group=self.group)


def counting_allreduce_hook(log: CommLog, label: str = "ddp_bucket"):
    """A DDP comm hook that records each gradient bucket, then runs DDP's default all-reduce.

    ``ddp_model.register_comm_hook(state=None, hook=counting_allreduce_hook(log))``; call
    ``log.begin_step()`` before each backward so buckets are filed under the right step.
    """
    from torch.distributed.algorithms.ddp_comm_hooks.default_hooks import allreduce_hook

    def hook(process_group, bucket):
        log.record("all_reduce", bucket.buffer(), label, dist.get_world_size(process_group))
        return allreduce_hook(process_group, bucket)

    return hook
