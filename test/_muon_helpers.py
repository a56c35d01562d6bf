"""Shared helpers of test_muon.py and test_distributed_muon.py: small models, data, a reference
Newton-Schulz in float64, and the worker that test_distributed_muon spawns (it lives here, in an
importable module, because torch.multiprocessing.spawn pickles the function by module name)."""
from __future__ import annotations

import socket
import sys
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

TEST_DIR = str(Path(__file__).resolve().parent)
if TEST_DIR not in sys.path:  # spawned children inherit sys.path and re-import this module by name
    sys.path.insert(0, TEST_DIR)

NS_ABC = (3.4445, -4.7750, 2.0315)


def reference_ns5(G: torch.Tensor, steps: int = 5) -> torch.Tensor:
    """The quintic iteration written out in float64, independently of training/muon.py."""
    a, b, c = NS_ABC
    X = G.double().reshape(G.shape[0], -1)
    transposed = X.shape[0] > X.shape[1]
    if transposed:
        X = X.T
    X = X / (torch.linalg.matrix_norm(X) + 1e-7)
    for _ in range(steps):
        A = X @ X.T
        X = a * X + (b * A + c * A @ A) @ X
    return (X.T if transposed else X).reshape(G.shape)


def matrix_with_spectrum(rows: int, cols: int, cond: float, seed: int = 0):
    """G = U diag(s) V^T with s log-spaced from 1 down to 1/cond. Returns (G, U, V) in float64."""
    g = torch.Generator().manual_seed(seed)
    k = min(rows, cols)
    U, _ = torch.linalg.qr(torch.randn(rows, k, generator=g, dtype=torch.float64))
    V, _ = torch.linalg.qr(torch.randn(cols, k, generator=g, dtype=torch.float64))
    s = torch.logspace(0, -torch.log10(torch.tensor(float(cond))).item(), k, dtype=torch.float64)
    return (U * s) @ V.T, U, V


class SmallNet(nn.Module):
    """Input conv, two hidden convs (one grouped), a depthwise conv, a hidden Linear pair, an
    embedding, a norm and an output Linear: every kind split_params must place. 5 Muon matrices."""

    def __init__(self, num_styles: int = 3):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.style = nn.Embedding(num_styles, 8)
        self.conv1 = nn.Conv2d(8, 12, 3, padding=1, bias=False)
        self.dw = nn.Conv2d(12, 12, 3, padding=1, groups=12, bias=False)
        self.conv2 = nn.Conv2d(12, 16, 3, padding=1, groups=2)
        self.norm = nn.LayerNorm(16)
        self.fc1 = nn.Linear(16, 24)
        self.fc2 = nn.Linear(24, 16, bias=False)
        self.fc3 = nn.Linear(16, 20)
        self.out = nn.Linear(20, 4)

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        # x: [B,3,8,8], style: [B] long -> [B,4]
        h = F.relu(self.stem(x)) + self.style(style)[:, :, None, None]
        h = F.relu(self.dw(F.relu(self.conv1(h))))
        h = F.relu(self.conv2(h)).mean(dim=(2, 3))  # [B,16]
        h = self.norm(h)
        h = h + self.fc2(F.gelu(self.fc1(h)))
        return self.out(F.gelu(self.fc3(h)))


def make_batch(n: int = 8, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, 8, 8, generator=g)
    style = torch.randint(0, 3, (n,), generator=g)
    y = torch.randn(n, 4, generator=g)
    return x, style, y


def loss_fn(model: nn.Module, x, style, y) -> torch.Tensor:
    return F.mse_loss(model(x, style), y)


def make_model(seed: int = 0) -> SmallNet:
    torch.manual_seed(seed)
    return SmallNet()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


GROUP_OPTIONS = dict(muon=dict(lr=0.05, weight_decay=0.1), adamw=dict(lr=3e-3, weight_decay=0.01))


def distributed_worker(rank: int, world: int, port: int, steps: int, out_path: str,
                       modes: tuple[str, ...]) -> None:
    """One rank: train SmallNet on its slice of the global batch with DistributedMuon, per mode.

    mode "reduce": DistributedMuon averages the gradients itself.
    mode "ddp":    the model is wrapped in DDP (gradient all-reduce), average_grads=False.
    After ``steps`` steps the state is saved to a buffer and training goes on ``steps`` more
    ("straight"); a fresh model/optimizer loaded from the buffer trains the same ``steps``
    ("resumed"). Rank 0 writes, per mode, both end states, every rank's end state and the logs.
    """
    import io

    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP

    from muon_ad_training.comm import CommLog, counting_allreduce_hook
    from muon_ad_training.distributed_muon import DistributedMuon
    from muon_ad_training.param_groups import split_params

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        x, style, y = make_batch(n=4 * world)
        mine = slice(rank * 4, rank * 4 + 4)
        results = {}
        for mode in modes:

            def build():
                model = make_model()
                groups = split_params(model).param_groups(**GROUP_OPTIONS)
                ddp_log = CommLog()
                wrapped = model
                if mode == "ddp":
                    wrapped = DDP(model)
                    wrapped.register_comm_hook(state=None, hook=counting_allreduce_hook(ddp_log))
                return model, wrapped, DistributedMuon(groups, average_grads=(mode == "reduce")), ddp_log

            def train(wrapped, opt, ddp_log, n):
                for _ in range(n):
                    opt.zero_grad()
                    ddp_log.begin_step()
                    loss_fn(wrapped, x[mine], style[mine], y[mine]).backward()
                    opt.step()

            model, wrapped, opt, ddp_log = build()
            train(wrapped, opt, ddp_log, steps)
            buf = io.BytesIO()
            torch.save({"model": model.state_dict(), "opt": opt.state_dict()}, buf)
            train(wrapped, opt, ddp_log, steps)  # uninterrupted run
            straight = {k: v.clone() for k, v in model.state_dict().items()}

            buf.seek(0)
            saved = torch.load(buf, weights_only=False)
            model2, wrapped2, opt2, ddp_log2 = build()
            model2.load_state_dict(saved["model"])
            opt2.load_state_dict(saved["opt"])
            train(wrapped2, opt2, ddp_log2, steps)  # resumed run

            gathered = [None] * world
            dist.all_gather_object(gathered, straight)
            results[mode] = {"straight": straight, "resumed": model2.state_dict(), "all_ranks": gathered,
                             "muon_log": opt.comm_log.per_step(), "ddp_log": ddp_log.per_step(),
                             "owner": opt.layout().owner, "shard_numel": opt.layout().shard_numel}
        if rank == 0:
            torch.save(results, out_path)
        # Tear down together: a rank that destroys its gloo group while a peer is still working
        # can abort the peer ("terminate called without an active exception", seen in CI).
        dist.barrier()
    finally:
        dist.destroy_process_group()
