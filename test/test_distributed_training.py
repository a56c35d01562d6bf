"""Two-process training (torchrun, gloo on CPU, DDP + DistributedMuon) equals the one-process run.

Each rank trains on its half of the global batch (data.BatchSource slices the same seeded batch),
DDP averages the gradients, DistributedMuon orthogonalises half of the matrices on each rank and
all-gathers them, and pruning observes the global batch on every rank: so the final weights match
the single-process run.

The single-process reference accumulates the gradient of the global batch in two micro-batches
(data.micro_batches = 2), i.e. the same halves the ranks see, and runs on one thread like the
torchrun children: the gradient is then summed in the same order, and the runs agree to the last
bit. Without that pinning they agree only for a few steps: L1 losses have sign-discontinuous
gradients and Newton-Schulz amplifies noise in small singular directions, so float-order noise
grows chaotically (~1e-7 -> 1e-2 within ten steps at the smoke learning rates).
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from safetensors.torch import load_file

from _training_helpers import SMOKE, need_teacher, smoke_config, smoke_overrides, state_of

STEPS = (3, 4, 5)  # all three phases; masks appear in the last one


def run_torchrun(config: Path, nproc: int, extra=()) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           "-m", "muon_ad_training.cli", "--config", str(config), "--no-export", *extra]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)


NO_GLOO = not dist.is_available() or not dist.is_gloo_available()


@pytest.mark.skipif(NO_GLOO, reason="torch built without gloo")
def test_two_process_gloo_run_matches_single_process(tmp_path: Path):
    need_teacher()
    from muon_ad_training.trainer import Trainer

    cache = tmp_path / "targets"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        single = Trainer(smoke_config(tmp_path / "single", cache, STEPS, data={"micro_batches": 2}))
        single.run()
    finally:
        torch.set_num_threads(threads)
    reference = state_of(single.model)

    child = tmp_path / "two.yaml"
    child.write_text(json.dumps({"extends": str(SMOKE), **smoke_overrides(tmp_path / "two", cache, STEPS)}))
    proc = run_torchrun(child, 2)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = json.loads(proc.stdout[proc.stdout.index("{"):])
    assert summary["steps"] == sum(STEPS)

    ckpt = tmp_path / "two" / "checkpoints" / f"step_{sum(STEPS):08d}"
    trainer_state = json.loads((ckpt / "trainer.json").read_text())
    assert trainer_state["world_size"] == 2
    assert (ckpt / "optimizer_rank0.pt").is_file() and (ckpt / "optimizer_rank1.pt").is_file()
    weights = load_file(str(ckpt / "student.safetensors"))
    assert weights.keys() == reference.keys()
    for key, value in reference.items():
        torch.testing.assert_close(weights[key], value, rtol=1e-6, atol=1e-7, msg=key)
    # Same losses step by step (the logged loss is the mean over ranks = the global-batch loss).
    losses = [r["total"] for r in trainer_state["history"]]
    assert losses == pytest.approx([r["total"] for r in single.history], rel=1e-6, abs=1e-7)
    # The masks were set identically (pruning observed the global batch on every rank).
    assert torch.equal(weights["attn_blocks.0.attn.head_mask"], reference["attn_blocks.0.attn.head_mask"])
    assert float(reference["attn_blocks.0.attn.head_mask"].sum()) == 1.0
