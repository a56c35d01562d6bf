"""DistributedMuon: ownership by size, multi-process equivalence with Muon, resume, byte counts."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

sys.path.insert(0, str(Path(__file__).resolve().parent))  # pytest runs with --import-mode=importlib
import _muon_helpers as H  # noqa: E402
from muon_ad_ros.core.errors import ConfigError  # noqa: E402
from muon_ad_training.distributed_muon import DistributedMuon, assign_by_size  # noqa: E402
from muon_ad_training.muon import Muon  # noqa: E402
from muon_ad_training.param_groups import split_params  # noqa: E402

STEPS = 2  # per phase: STEPS steps, save, STEPS more (and STEPS from the reloaded copy)


def test_assign_by_size_balances_and_covers_uneven_counts():
    sizes = [100, 90, 50, 40, 30, 10, 5]
    owner = assign_by_size(sizes, 2)
    load = [sum(s for s, r in zip(sizes, owner) if r == k) for k in range(2)]
    # LPT, largest first to the lighter rank: 100,40,30 | 90,50,10,5 (ties go to rank 0)
    assert load == [170, 155]
    assert max(load) - min(load) <= max(sizes)  # the greedy bound: never off by more than one item
    assert assign_by_size(sizes, 2) == owner  # deterministic
    # More ranks than matrices: every matrix owned once, the extra ranks own nothing.
    assert sorted(assign_by_size([7, 3], 4)) == [0, 1]
    assert assign_by_size([], 3) == []
    assert assign_by_size([4, 4, 4], 1) == [0, 0, 0]
    with pytest.raises(ConfigError):
        assign_by_size([1], 0)


def test_distributed_muon_needs_initialised_process_group():
    if dist.is_initialized():
        pytest.skip("a process group is already initialised in this process")
    with pytest.raises(ConfigError, match="init_process_group"):
        DistributedMuon(split_params(H.make_model()).param_groups())


def _single_process_reference(world: int) -> dict:
    """Muon in one process on the global batch (all ranks' slices), 2*STEPS steps."""
    model = H.make_model()
    opt = Muon(split_params(model).param_groups(**H.GROUP_OPTIONS))
    x, style, y = H.make_batch(n=4 * world)
    for _ in range(2 * STEPS):
        opt.zero_grad()
        H.loss_fn(model, x, style, y).backward()
        opt.step()
    return model.state_dict()


def _spawn(world: int, modes: tuple[str, ...], tmp_path) -> dict:
    out = tmp_path / f"result_{world}.pt"
    mp.spawn(H.distributed_worker, args=(world, H.free_port(), STEPS, str(out), modes), nprocs=world)
    return torch.load(out, weights_only=False)


def _assert_same_state(a: dict, b: dict, exact: bool) -> None:
    for name in a:
        if exact:
            assert torch.equal(a[name], b[name]), name
        else:
            torch.testing.assert_close(a[name], b[name], atol=2e-5, rtol=1e-5, msg=name)


def _check_run(run: dict, reference: dict, world: int) -> None:
    _assert_same_state(run["straight"], reference, exact=False)  # equals Muon on the global batch
    _assert_same_state(run["resumed"], run["straight"], exact=True)  # resume is bit-exact
    for rank_state in run["all_ranks"]:  # every rank holds the same weights
        _assert_same_state(rank_state, run["straight"], exact=True)
    assert set(run["owner"]) == set(range(min(world, len(run["owner"]))))  # the work is divided


def test_two_processes_equal_one_process_and_resume_exactly(tmp_path):
    """gloo, world 2, 5 Muon matrices (uneven): self-averaged gradients and DDP-averaged ones."""
    results = _spawn(2, ("reduce", "ddp"), tmp_path)
    reference = _single_process_reference(2)
    for mode in ("reduce", "ddp"):
        _check_run(results[mode], reference, 2)

    # Bytes: the reduce-scatter + all-gather move what DDP's all-reduce of the same tensors moves
    # (up to shard padding): sharding divides Newton-Schulz work, not communication.
    muon_log, ddp_log = results["reduce"]["muon_log"], results["ddp"]["ddp_log"]
    n_params = sum(p.numel() for p in H.make_model().parameters())
    ddp_sent = sum(r["sent_bytes"] for r in ddp_log.values())
    assert sum(r["payload_bytes"] for r in ddp_log.values()) == 4 * n_params
    assert ddp_sent == pytest.approx(4 * n_params * 2 * (2 - 1) / 2)
    padded = 2 * results["reduce"]["shard_numel"] * 4
    assert muon_log["reduce_scatter:muon_grads"]["payload_bytes"] == padded
    assert muon_log["all_gather:muon_params"]["payload_bytes"] == padded
    muon_sent = sum(r["sent_bytes"] for r in muon_log.values())
    n_muon = sum(p.numel() for _, p in split_params(H.make_model()).muon)
    padding_sent = (padded - 4 * n_muon) * 2 * (2 - 1) / 2  # zero padding rides along
    assert muon_sent == pytest.approx(ddp_sent + padding_sent)
    # With DDP averaging the gradients, DistributedMuon only adds the all-gather.
    assert set(results["ddp"]["muon_log"]) == {"all_gather:muon_params"}


def test_three_processes_uneven_ownership(tmp_path):
    """world 3 with 5 matrices: shards of different lengths, zero padded; still equals Muon."""
    results = _spawn(3, ("reduce",), tmp_path)
    run = results["reduce"]
    counts = [run["owner"].count(r) for r in range(3)]
    assert sum(counts) == 5 and min(counts) >= 1
    _check_run(run, _single_process_reference(3), 3)


@pytest.fixture
def world_of_one():
    """A one-process gloo group inside the test process (no spawn), destroyed afterwards."""
    if dist.is_initialized():
        pytest.skip("a process group is already initialised in this process")
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{H.free_port()}", rank=0, world_size=1)
    yield
    dist.destroy_process_group()


def test_world_of_one_equals_muon_and_checks_its_state_dict(world_of_one):
    batch = H.make_batch(8)
    runs = {}
    for cls in (Muon, DistributedMuon):
        model = H.make_model()
        opt = cls(split_params(model).param_groups(**H.GROUP_OPTIONS))
        for _ in range(3):
            opt.zero_grad()
            H.loss_fn(model, *batch).backward()
            opt.step()
        runs[cls] = (model, opt)
    for a, b in zip(runs[Muon][0].parameters(), runs[DistributedMuon][0].parameters()):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0)
    opt = runs[DistributedMuon][1]
    assert len(opt.owned_params()) == 5 and opt.comm_log.step == 3
    sd = opt.state_dict()
    assert sd["distributed_muon"]["world_size"] == 1
    fresh = DistributedMuon(split_params(H.make_model()).param_groups(**H.GROUP_OPTIONS))
    with pytest.raises(ConfigError, match="world_size=2"):
        fresh.load_state_dict({**sd, "distributed_muon": {**sd["distributed_muon"], "world_size": 2}})
    with pytest.raises(ConfigError, match="not a DistributedMuon state dict"):
        fresh.load_state_dict(runs[Muon][1].state_dict())
    fresh.load_state_dict(sd)  # its own file loads
