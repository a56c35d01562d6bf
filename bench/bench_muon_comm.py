"""Bytes per optimizer step moved by DistributedMuon vs DDP's gradient all-reduce, on the student.

Run under torchrun (gloo, CPU):

    torchrun --nproc_per_node 2 bench/bench_muon_comm.py --out comm2.json

Three set-ups on the same model and batch, each measured on its second step (the first builds
DDP's buckets):

* ``ddp+muon``: DDP averages every gradient (all-reduce); every rank runs single-process Muon,
  i.e. repeats all the Newton-Schulz work.
* ``distributed_muon``: no DDP; DistributedMuon reduce-scatters the Muon gradients to their owners,
  all-gathers the updated matrices, all-reduces the AdamW gradients.
* ``ddp+distributed_muon``: DDP averages the gradients, DistributedMuon(average_grads=False)
  all-gathers the updated matrices (the KellerJordan/Muon layout).

Rank 0 prints a table and writes the numbers as JSON.

With ``--photos DIR --steps N`` the batch is real photo crops (bench_muon's objective: L1 + edge
L1 reconstruction, a global batch of ``--global-batch`` crops split between the ranks) and the
set-ups take turns step by step for ``--warmup`` + N steps, so machine noise hits all of them
alike; each step's time is the slowest rank's (``bench/bench_distributed.py`` drives this).
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP

from muon_ad_ros.core.student import StudentConfig, StudentNet
from muon_ad_training.comm import CommLog, counting_allreduce_hook
from muon_ad_training.distributed_muon import DistributedMuon
from muon_ad_training.muon import Muon
from muon_ad_training.param_groups import split_params

SETUPS = ("ddp+muon", "distributed_muon", "ddp+distributed_muon")


class Setup:
    """One set-up's model, optimizer and comm log; ``step`` runs one timed training step."""

    def __init__(self, name: str):
        torch.manual_seed(0)
        self.name = name
        self.model = StudentNet(StudentConfig())
        self.split = split_params(self.model)
        groups = self.split.param_groups(muon=dict(lr=0.02), adamw=dict(lr=3e-3))
        self.log = CommLog()
        self.net = self.model
        if name.startswith("ddp"):
            self.net = DDP(self.model)
            self.net.register_comm_hook(state=None, hook=counting_allreduce_hook(self.log))
        self.opt = (Muon(groups) if name == "ddp+muon" else
                    DistributedMuon(groups, average_grads=(name == "distributed_muon"), comm_log=self.log))
        self.times: list[tuple[float, float]] = []  # (forward+backward s, optimizer step s)

    def step(self, image, weights, loss_fn) -> None:
        self.log.begin_step()  # DDP's buckets and DistributedMuon's collectives of this step
        t0 = time.perf_counter()
        self.opt.zero_grad()
        loss_fn(self.net(image, weights), image).backward()  # DDP all-reduces during backward
        t1 = time.perf_counter()
        self.opt.step()
        self.times.append((t1 - t0, time.perf_counter() - t1))

    def report(self, warmup: int) -> dict:
        owned = (self.opt.owned_params() if isinstance(self.opt, DistributedMuon)
                 else [p for _, p in self.split.muon])
        world = dist.get_world_size()
        owned_numel = torch.tensor([sum(p.numel() for p in owned)])
        per_rank = [torch.zeros(1, dtype=torch.long) for _ in range(world)]
        dist.all_gather(per_rank, owned_numel)
        mine = torch.tensor(self.times[warmup:], dtype=torch.float64)  # [steps, 2]
        every = [torch.zeros_like(mine) for _ in range(world)]
        dist.all_gather(every, mine)
        slowest = torch.stack(every).max(dim=0).values  # [steps, 2]: the slowest rank per step
        total = torch.stack(every).sum(dim=2).max(dim=0).values  # [steps]
        return {
            "per_collective": self.log.per_step(),
            "total": self.log.totals(),
            "ns_numel_per_rank": [int(t.item()) for t in per_rank],
            "step_seconds_rank0": sum(self.times[-1]),
            "step_seconds": total.tolist(),
            "fwd_bwd_seconds": slowest[:, 0].tolist(),
            "opt_step_seconds": slowest[:, 1].tolist(),
            "param_bytes": sum(p.numel() * p.element_size() for p in self.model.parameters()),
            "muon_param_bytes": sum(p.numel() * p.element_size() for _, p in self.split.muon),
        }


def measure_photos(args, rank: int, world: int) -> dict:
    """Every set-up trained on the same photo crops, set-ups interleaved step by step."""
    from bench_muon import PHOTOS, draw_batches, load_photos, reconstruction_loss

    if args.global_batch % world:
        raise SystemExit(f"--global-batch {args.global_batch} is not divisible by {world} processes")
    per_rank = args.global_batch // world
    photos = load_photos(Path(args.photos) if args.photos != "default" else PHOTOS, args.size)
    gen = torch.Generator().manual_seed(0)  # same global batches on every rank; each takes its slice
    batches = draw_batches(photos, args.warmup + args.steps, args.global_batch, args.size,
                           StudentConfig().num_styles, gen)
    setups = [Setup(name) for name in SETUPS]
    for image, weights in batches:
        mine = slice(rank * per_rank, (rank + 1) * per_rank)
        for s in setups:
            s.step(image[mine], weights[mine], reconstruction_loss)
    return {s.name: s.report(args.warmup) for s in setups}


def measure(setup: str, image: torch.Tensor, weights: torch.Tensor) -> dict:
    """One set-up on a fixed batch: a warm-up step (DDP builds its buckets), then one measured."""
    s = Setup(setup)
    for _ in range(2):
        s.step(image, weights, lambda out, target: (out - target).abs().mean())
    return s.report(warmup=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", help="JSON file written by rank 0")
    parser.add_argument("--size", type=int, default=64, help="square image side (multiple of 16)")
    parser.add_argument("--photos", help="photo folder ('default': ../shared/data/photos): train on crops")
    parser.add_argument("--steps", type=int, default=20, help="timed steps with --photos")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first, with --photos")
    parser.add_argument("--global-batch", type=int, default=8, help="crops per step over all ranks")
    args = parser.parse_args()
    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    world, rank = dist.get_world_size(), dist.get_rank()
    if args.photos:
        results = measure_photos(args, rank, world)
        shape = [args.global_batch // world, 3, args.size, args.size]
    else:
        gen = torch.Generator().manual_seed(1 + rank)
        image = torch.rand(2, 3, args.size, args.size, generator=gen)  # this rank's slice of the batch
        weights = torch.nn.functional.one_hot(torch.tensor([0, 1]), StudentConfig().num_styles).float()
        results = {setup: measure(setup, image, weights) for setup in SETUPS}
        shape = [2, 3, args.size, args.size]
    if rank == 0:
        print(f"world {world}: bytes per step (payload = logical tensors; sent = per rank, ring algorithm)")
        for setup, r in results.items():
            t = r["total"]
            print(f"  {setup:<22} calls {t['calls']:>3}  payload {t['payload_bytes'] / 1e3:8.1f} kB"
                  f"  sent/rank {t['sent_bytes'] / 1e3:8.1f} kB  NS numel per rank {r['ns_numel_per_rank']}")
        if args.out:
            with open(args.out, "w") as f:
                json.dump({"world_size": world, "backend": "gloo", "image": shape, "photos": args.photos,
                           "results": results, "pid": os.getpid()}, f, indent=1)
    dist.barrier()  # tear down together: an early gloo teardown can abort a peer still writing
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
