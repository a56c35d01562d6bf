"""Bytes per optimizer step moved by DistributedMuon vs DDP's gradient all-reduce, on the student.

Run under torchrun (gloo, CPU):

    /work/venv/bin/torchrun --nproc_per_node 2 bench/bench_muon_comm.py --out /tmp/comm2.json

Three set-ups on the same model and batch, each measured on its second step (the first builds
DDP's buckets):

* ``ddp+muon``: DDP averages every gradient (all-reduce); every rank runs single-process Muon,
  i.e. repeats all the Newton-Schulz work.
* ``distributed_muon``: no DDP; DistributedMuon reduce-scatters the Muon gradients to their owners,
  all-gathers the updated matrices, all-reduces the AdamW gradients.
* ``ddp+distributed_muon``: DDP averages the gradients, DistributedMuon(average_grads=False)
  all-gathers the updated matrices (the KellerJordan/Muon layout).

Rank 0 prints a table and writes the numbers as JSON.
"""
from __future__ import annotations

import argparse
import json
import os
import time

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP

from muon_ad_ros.core.student import StudentConfig, StudentNet
from muon_ad_training.comm import CommLog, counting_allreduce_hook
from muon_ad_training.distributed_muon import DistributedMuon
from muon_ad_training.muon import Muon
from muon_ad_training.param_groups import split_params

SETUPS = ("ddp+muon", "distributed_muon", "ddp+distributed_muon")


def measure(setup: str, image: torch.Tensor, weights: torch.Tensor) -> dict:
    torch.manual_seed(0)
    model = StudentNet(StudentConfig())
    split = split_params(model)
    groups = split.param_groups(muon=dict(lr=0.02), adamw=dict(lr=3e-3))
    log = CommLog()
    net = model
    if setup.startswith("ddp"):
        net = DDP(model)
        net.register_comm_hook(state=None, hook=counting_allreduce_hook(log))
    if setup == "ddp+muon":
        opt = Muon(groups)
    else:
        opt = DistributedMuon(groups, average_grads=(setup == "distributed_muon"), comm_log=log)
    seconds = 0.0
    for _ in range(2):
        log.begin_step()  # DDP's buckets and DistributedMuon's collectives of this step
        start = time.perf_counter()
        opt.zero_grad()
        (net(image, weights) - image).abs().mean().backward()
        opt.step()
        seconds = time.perf_counter() - start
    owned = (opt.owned_params() if isinstance(opt, DistributedMuon)
             else [p for _, p in split.muon])
    owned_numel = torch.tensor([sum(p.numel() for p in owned)])
    per_rank = [torch.zeros(1, dtype=torch.long) for _ in range(dist.get_world_size())]
    dist.all_gather(per_rank, owned_numel)
    return {
        "per_collective": log.per_step(),
        "total": log.totals(),
        "ns_numel_per_rank": [int(t.item()) for t in per_rank],
        "step_seconds_rank0": seconds,
        "param_bytes": sum(p.numel() * p.element_size() for p in model.parameters()),
        "muon_param_bytes": sum(p.numel() * p.element_size() for _, p in split.muon),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", help="JSON file written by rank 0")
    parser.add_argument("--size", type=int, default=64, help="square image side (multiple of 16)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    world, rank = dist.get_world_size(), dist.get_rank()
    gen = torch.Generator().manual_seed(1 + rank)
    image = torch.rand(2, 3, args.size, args.size, generator=gen)  # this rank's slice of the batch
    weights = torch.nn.functional.one_hot(torch.tensor([0, 1]), StudentConfig().num_styles).float()
    results = {setup: measure(setup, image, weights) for setup in SETUPS}
    if rank == 0:
        print(f"world {world}: bytes per step (payload = logical tensors; sent = per rank, ring algorithm)")
        for setup, r in results.items():
            t = r["total"]
            print(f"  {setup:<22} calls {t['calls']:>3}  payload {t['payload_bytes'] / 1e3:8.1f} kB"
                  f"  sent/rank {t['sent_bytes'] / 1e3:8.1f} kB  NS numel per rank {r['ns_numel_per_rank']}")
        if args.out:
            with open(args.out, "w") as f:
                json.dump({"world_size": world, "backend": "gloo", "image": [2, 3, args.size, args.size],
                           "results": results, "pid": os.getpid()}, f, indent=1)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
