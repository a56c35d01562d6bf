"""Muon maths, the single-process optimizer, strict param groups, checkpoints and split_params."""
from __future__ import annotations

import io
import math
import sys
from pathlib import Path

import pytest
import torch
import torch.nn as nn

sys.path.insert(0, str(Path(__file__).resolve().parent))  # pytest runs with --import-mode=importlib
from _muon_helpers import (GROUP_OPTIONS, loss_fn, make_batch, make_model, matrix_with_spectrum,  # noqa: E402
                           reference_ns5)
from muon_ad_ros.core.errors import ConfigError  # noqa: E402
from muon_ad_training.muon import (Muon, adam_update, lr_scale, muon_update, ns_compute_dtype,  # noqa: E402
                                   zeropower_via_newtonschulz5)
from muon_ad_training.param_groups import split_params  # noqa: E402

# Singular values after 5 quintic steps, measured on the reference iteration (float32 and bf16,
# 16..256 wide, cond 1..100): 0.671 .. 1.204. The test band adds a little slack for rounding.
BAND = (0.66, 1.22)


# ----------------------------------------------------------------------------- Newton-Schulz


@pytest.mark.parametrize("shape", [(64, 64), (32, 96), (96, 32), (24, 16, 3, 3)],
                         ids=["square", "wide", "tall", "conv"])
@pytest.mark.parametrize("cond", [1.0, 10.0, 100.0])
def test_newton_schulz_band_and_singular_vectors(shape, cond):
    rows, cols = shape[0], math.prod(shape[1:])
    G64, U, V = matrix_with_spectrum(rows, cols, cond, seed=rows + cols)
    G = G64.float().reshape(shape)  # conv-shaped input: [out, in, kh, kw] viewed as [out, in*kh*kw]
    X = zeropower_via_newtonschulz5(G.reshape(rows, cols), steps=5)
    assert X.dtype == torch.float32 and X.shape == (rows, cols)
    X = X.double()
    s = torch.linalg.svdvals(X)
    assert BAND[0] <= s.min() and s.max() <= BAND[1], (s.min().item(), s.max().item())
    # Same singular vectors: U^T X V is diagonal, and X is within the band's distance of U V^T.
    P = U.T @ X @ V
    off_diag = P - torch.diag(torch.diagonal(P))
    assert off_diag.norm() / P.norm() < 1e-3
    assert torch.linalg.matrix_norm(X - U @ V.T, ord=2) <= max(1 - BAND[0], BAND[1] - 1)
    # Matches the float64 reference written in the test helpers.
    torch.testing.assert_close(X, reference_ns5(G64), atol=2e-4, rtol=0)


def test_newton_schulz_tall_is_transpose_of_wide_and_batched():
    G = torch.randn(40, 12, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(zeropower_via_newtonschulz5(G), zeropower_via_newtonschulz5(G.T).T)
    batch = torch.stack([G, 2 * G.flip(0)])  # [2,40,12]: leading dims are a batch
    out = zeropower_via_newtonschulz5(batch)
    torch.testing.assert_close(out[1], zeropower_via_newtonschulz5(G.flip(0)), atol=1e-6, rtol=0)


def test_newton_schulz_precision_policy():
    assert ns_compute_dtype(torch.device("cpu")) == torch.float32
    assert ns_compute_dtype(torch.device("cuda", 0)) == torch.bfloat16
    assert zeropower_via_newtonschulz5(torch.randn(8, 8, dtype=torch.float64)).dtype == torch.float64
    with pytest.raises(ConfigError):
        zeropower_via_newtonschulz5(torch.randn(8))


def test_lr_scale_modes():
    assert lr_scale((96, 32), "original") == pytest.approx(math.sqrt(3))
    assert lr_scale((32, 96), "original") == 1.0
    assert lr_scale((96, 32), "match_rms_adamw") == pytest.approx(0.2 * math.sqrt(96))
    # conv filters use their matrix view [24, 16*3*3] = [24, 144]
    assert lr_scale((24, 16, 3, 3), "original") == 1.0
    assert lr_scale((24, 16, 3, 3), "match_rms_adamw") == pytest.approx(0.2 * 12)
    assert lr_scale((24, 16), "none") == 1.0
    with pytest.raises(ConfigError, match="lr_scale"):
        lr_scale((4, 4), "moonlight")


def test_match_rms_adamw_gives_update_rms_near_0p2():
    """Moonlight's rule: 0.2*sqrt(max(r,c)) * NS(G) has RMS ~0.2 * sqrt(max/min)... for square ~0.2."""
    g = torch.randn(128, 128, generator=torch.Generator().manual_seed(0))
    update = muon_update(g, torch.zeros_like(g), beta=0.0, nesterov=False, scale_mode="match_rms_adamw")
    rms = update.pow(2).mean().sqrt().item()
    assert 0.15 < rms < 0.25


# ----------------------------------------------------------------------------- optimizer steps


def _reference_muon_step(p, g, m, lr, beta, wd, scale):
    """Muon written directly: EMA momentum, nesterov blend, NS5 (float64 reference), decoupled wd."""
    m_new = beta * m + (1 - beta) * g
    u = (1 - beta) * g + beta * m_new
    return p * (1 - lr * wd) - lr * scale * reference_ns5(u), m_new


@pytest.mark.parametrize("scale_mode", ["original", "match_rms_adamw"])
def test_muon_steps_equal_direct_reference(scale_mode):
    torch.manual_seed(0)
    w_tall = nn.Parameter(torch.randn(24, 10))
    w_conv = nn.Parameter(torch.randn(6, 4, 3, 3))
    lr, beta, wd = 0.03, 0.9, 0.1
    opt = Muon([{"params": [w_tall, w_conv], "use_muon": True, "lr": lr, "momentum": beta,
                 "weight_decay": wd, "lr_scale": scale_mode}])
    expected = {id(w): (w.detach().double().clone(), torch.zeros_like(w, dtype=torch.float64))
                for w in (w_tall, w_conv)}
    for step in range(3):  # three steps: momentum is carried between them
        grads = [torch.randn_like(w_tall), torch.randn_like(w_conv)]
        for w, g in zip((w_tall, w_conv), grads):
            w.grad = g.clone()
            p, m = expected[id(w)]
            scale = lr_scale(w.shape, scale_mode)
            expected[id(w)] = _reference_muon_step(p, g.double(), m, lr, beta, wd, scale)
        opt.step()
        for w in (w_tall, w_conv):
            torch.testing.assert_close(w.detach().double(), expected[id(w)][0], atol=1e-5, rtol=0)
            torch.testing.assert_close(w.grad, grads[0] if w is w_tall else grads[1])  # grad untouched


def test_muon_2d_matches_torch_optim_muon():
    """Cross-check with torch.optim.Muon (which runs NS in bf16 even on CPU: loose tolerance)."""
    torch.manual_seed(1)
    a = nn.Parameter(torch.randn(32, 16))
    b = nn.Parameter(a.detach().clone())
    ours = Muon([{"params": [a], "use_muon": True, "lr": 0.02, "weight_decay": 0.1,
                  "lr_scale": "match_rms_adamw"}])
    theirs = torch.optim.Muon([b], lr=0.02, weight_decay=0.1, adjust_lr_fn="match_rms_adamw")
    start = a.detach().clone()
    for _ in range(3):
        g = torch.randn(32, 16)
        a.grad, b.grad = g.clone(), g.clone()
        ours.step()
        theirs.step()
    ours_delta, theirs_delta = a.detach() - start, b.detach() - start
    assert (ours_delta - theirs_delta).norm() / theirs_delta.norm() < 0.03


def test_adamw_groups_match_torch_adamw():
    torch.manual_seed(2)
    a = nn.Parameter(torch.randn(7, 5))
    b = nn.Parameter(a.detach().clone())
    ours = Muon([{"params": [a], "use_muon": False, "lr": 1e-2, "betas": (0.9, 0.99), "eps": 1e-8,
                  "weight_decay": 0.05}])
    theirs = torch.optim.AdamW([b], lr=1e-2, betas=(0.9, 0.99), eps=1e-8, weight_decay=0.05)
    for _ in range(4):
        g = torch.randn(7, 5)
        a.grad, b.grad = g.clone(), g.clone()
        ours.step()
        theirs.step()
    torch.testing.assert_close(a, b, atol=1e-6, rtol=0)


def test_adam_update_first_step_is_sign_like():
    g = torch.tensor([2.0, -0.5, 1e-3])
    u = adam_update(g, torch.zeros(3), torch.zeros(3), step=1, betas=(0.9, 0.95), eps=1e-12)
    torch.testing.assert_close(u, torch.tensor([1.0, -1.0, 1.0]), atol=1e-6, rtol=0)


def test_muon_skips_parameters_without_grad_and_trains():
    model = make_model()
    opt = Muon(split_params(model).param_groups(**GROUP_OPTIONS))
    x, style, y = make_batch(16)
    first = loss_fn(model, x, style, y).item()
    for _ in range(30):
        opt.zero_grad()
        loss_fn(model, x, style, y).backward()
        model.fc3.weight.grad = None  # not trained this step: must stay exactly where it is
        before = model.fc3.weight.detach().clone()
        opt.step()
        assert torch.equal(model.fc3.weight, before)
    assert loss_fn(model, x, style, y).item() < 0.5 * first


# ----------------------------------------------------------------------------- strict groups


def _groups(**overrides):
    model = make_model()
    groups = split_params(model).param_groups(**GROUP_OPTIONS)
    return model, groups


@pytest.mark.parametrize("mutate, message", [
    (lambda g: g[0].update(weight_decya=0.1),
     "unknown Muon option 'weight_decya'.*did you mean 'weight_decay'"),
    (lambda g: g[0].update(betas=(0.9, 0.95)), "unknown Muon option 'betas'"),
    (lambda g: g[1].update(momentum=0.9), "unknown AdamW option 'momentum'"),
    (lambda g: g[0].pop("use_muon"), "use_muon"),
    (lambda g: g[0].update(lr=-1.0), "lr must be"),
    (lambda g: g[0].update(momentum=1.0), "momentum must be in"),
    (lambda g: g[0].update(ns_steps=0), "ns_steps"),
    (lambda g: g[0].update(lr_scale="moonlight"), "lr_scale must be one of"),
    (lambda g: g[1].update(betas=(0.9,)), "betas must be"),
    (lambda g: g[1].update(eps=0.0), "eps must be"),
    (lambda g: g[0]["params"].append(g[1]["params"][-1]), "has ndim 1"),
    (lambda g: g[1]["params"].append(g[0]["params"][0]), "already in another group"),
    (lambda g: g[0].update(params={p for _, p in g[0]["params"]}), "not a set"),
])
def test_bad_param_groups_are_rejected_with_clear_message(mutate, message):
    _, groups = _groups()
    mutate(groups)
    with pytest.raises(ConfigError, match=message):
        Muon(groups)


def test_muon_rejects_empty_or_non_dict_groups():
    with pytest.raises(ConfigError):
        Muon([])
    with pytest.raises(ConfigError):
        Muon([torch.zeros(3, 3, requires_grad=True)])


# ----------------------------------------------------------------------------- checkpoints


def _train(model, opt, batch, steps):
    for _ in range(steps):
        opt.zero_grad()
        loss_fn(model, *batch).backward()
        opt.step()


def test_save_reload_continue_is_identical_to_uninterrupted():
    batch = make_batch(8)
    model, groups = _groups()
    opt = Muon(groups)
    _train(model, opt, batch, 3)
    buf = io.BytesIO()
    torch.save({"model": model.state_dict(), "opt": opt.state_dict()}, buf)
    _train(model, opt, batch, 3)

    buf.seek(0)
    saved = torch.load(buf, weights_only=False)
    model2, groups2 = _groups()
    model2.load_state_dict(saved["model"])
    opt2 = Muon(groups2)
    opt2.load_state_dict(saved["opt"])
    _train(model2, opt2, batch, 3)
    for (name, a), b in zip(model.state_dict().items(), model2.state_dict().values()):
        assert torch.equal(a, b), name
    # The state really round-tripped (momentum and Adam moments, step counters).
    assert opt2.state_dict()["state"].keys() == opt.state_dict()["state"].keys()


def test_load_state_dict_rejects_flipped_or_invalid_groups():
    model, groups = _groups()
    opt = Muon(groups)
    _train(model, opt, make_batch(4), 1)
    sd = opt.state_dict()
    flipped = {**sd, "param_groups": [dict(g) for g in sd["param_groups"]]}
    flipped["param_groups"][0]["use_muon"] = False
    with pytest.raises(ConfigError, match="use_muon"):
        Muon(_groups()[1]).load_state_dict(flipped)
    bad = {**sd, "param_groups": [dict(g) for g in sd["param_groups"]]}
    bad["param_groups"][1]["lr"] = -3.0
    with pytest.raises(ConfigError, match="lr must be"):
        Muon(_groups()[1]).load_state_dict(bad)


# ----------------------------------------------------------------------------- split_params


def test_split_params_on_small_net_explains_every_choice():
    model = make_model()
    split = split_params(model)
    where = {a.name: a.optimizer for a in split.assignments}
    assert where == {
        "stem.weight": "adamw", "stem.bias": "adamw",  # input layer
        "style.weight": "adamw",  # embedding
        "conv1.weight": "muon",  # hidden dense conv
        "dw.weight": "adamw",  # depthwise
        "conv2.weight": "muon", "conv2.bias": "adamw",  # grouped conv (groups=2 < in_channels)
        "norm.weight": "adamw", "norm.bias": "adamw",
        "fc1.weight": "muon", "fc1.bias": "adamw", "fc2.weight": "muon",
        "fc3.weight": "muon", "fc3.bias": "adamw",
        "out.weight": "adamw", "out.bias": "adamw",  # output layer
    }
    text = split.explain()
    for a in split.assignments:
        assert a.name in text and a.reason in text
    assert "input layer" in text and "output layer" in text and "depthwise" in text
    assert "embedding" in text


def test_split_params_overrides_forward_order_frozen_and_tied():
    class Reordered(nn.Module):  # registers its output layer first; forward order says otherwise
        def __init__(self):
            super().__init__()
            self.head = nn.Linear(8, 2)
            self.inp = nn.Linear(4, 8)
            self.hidden = nn.Linear(8, 8)
            self.frozen = nn.Linear(8, 8)
            self.frozen.requires_grad_(False)
            self.tied = self.hidden  # the same module twice: its weight must appear once

        def forward(self, x):
            return self.head(self.frozen(self.hidden(self.inp(x))))

    model = Reordered()
    by_registration = {a.name: a.optimizer for a in split_params(model).assignments}
    assert by_registration["head.weight"] == "adamw" and by_registration["inp.weight"] == "muon"
    traced = split_params(model, example_inputs=torch.zeros(1, 4))
    where = {a.name: a.optimizer for a in traced.assignments}
    assert where["inp.weight"] == "adamw" and where["head.weight"] == "adamw"
    assert where["hidden.weight"] == "muon" and where["frozen.weight"] == "frozen"
    assert sum(a.param is model.hidden.weight for a in traced.assignments) == 1
    assert all(p is not model.frozen.weight for g in traced.param_groups() for _, p in g["params"])

    forced = split_params(model, overrides={"hidden.weight": "adamw", "inp.*": "adamw"})
    assert {a.name: a.optimizer for a in forced.assignments}["hidden.weight"] == "adamw"
    assert "override 'hidden.weight'" in forced.explain()
    with pytest.raises(ConfigError, match="match no trainable parameter"):
        split_params(model, overrides={"hiden.weight": "adamw"})
    with pytest.raises(ConfigError, match="Muon needs ndim >= 2"):
        split_params(model, overrides={"hidden.bias": "muon"})
    with pytest.raises(ConfigError, match="must be 'muon' or 'adamw'"):
        split_params(model, overrides={"hidden.weight": "sgd"})


def test_split_params_on_student():
    student_mod = pytest.importorskip("muon_ad_ros.core.student", reason="student network not available")
    model = student_mod.StudentNet(student_mod.StudentConfig.tiny())
    split = split_params(model)
    muon_names = {name for name, _ in split.muon}
    assert muon_names, "the student has hidden matrices"
    for name, p in split.muon:  # hidden matrices: dense/pointwise convs and attention projections
        assert p.ndim >= 2 and not name.startswith(("stem.", "out.")), name
    assert any("pointwise" in n for n in muon_names) and any("down1.conv.conv" in n for n in muon_names)
    adamw_names = {name for name, _ in split.adamw}
    # the first layer (sees pixels) and the output layer (writes them) stay with AdamW
    assert "stem.weight" in adamw_names and "out.weight" in adamw_names, adamw_names
    assert all("depthwise" not in n for n in muon_names) and all("style_" not in n for n in muon_names)
    # The optimizer accepts the split as is and one step changes the hidden matrices.
    opt = Muon(split.param_groups(muon=dict(lr=0.02), adamw=dict(lr=1e-3)))
    image, weights = torch.rand(1, 3, 32, 32), model.style_weights_for(0)
    before = {n: p.detach().clone() for n, p in split.muon}
    (model(image, weights) - image).abs().mean().backward()
    opt.step()
    assert all(not torch.equal(before[n], p) for n, p in split.muon)


def test_lr_scheduler_drives_both_kinds_of_groups():
    model, groups = _groups()
    opt = Muon(groups)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 0.5 ** step)
    _train(model, opt, make_batch(4), 1)
    sched.step()
    assert [g["lr"] for g in opt.param_groups] == [0.025, 1.5e-3]
    opt2 = Muon(_groups()[1])
    opt2.load_state_dict(opt.state_dict())  # 'initial_lr' added by the scheduler is accepted
    assert [g["lr"] for g in opt2.param_groups] == [0.025, 1.5e-3]
