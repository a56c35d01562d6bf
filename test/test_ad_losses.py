"""Attention-distillation losses (training/losses.py) and teacher targets (training/teacher_targets.py)."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from muon_ad_ros.core.errors import ConfigError
from muon_ad_training.losses import (ADLossConfig, ad_loss, attention, content_loss, subsample_tokens,
                                     total_loss)
from muon_ad_training.teacher_targets import TargetCache, TargetConfig, optimize_target
from muon_ad_training.teachers.base import LayerQKV, Teacher


def _layers(seed, b=2, shapes=((2, 4, 4, 8), (1, 2, 3, 16)), requires_grad=False):
    """Random q/k/v for layers of (heads, h, w, d)."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for i, (heads, h, w, d) in enumerate(shapes):
        q, k, v = (torch.randn(b, heads, h * w, d, generator=g).requires_grad_(requires_grad)
                   for _ in range(3))
        out.append(LayerQKV(f"layer{i}", q, k, v, h, w))
    return out


def _reference_ad(target, style, scale=1.0):
    """The formula written out with explicit softmax, independent of F.scaled_dot_product_attention."""
    total = 0.0
    for t, s in zip(target, style):
        d = t.q.shape[-1]
        self_out = torch.softmax(t.q @ t.k.transpose(-1, -2) / math.sqrt(d), -1) @ t.v
        cross = torch.softmax(scale * t.q @ s.k.transpose(-1, -2) / math.sqrt(d), -1) @ s.v
        total += (self_out - cross).abs().mean()
    return total


def test_ad_loss_matches_explicit_formula():
    target, style = _layers(0), _layers(1)
    for scale in (1.0, 1.7):
        got = ad_loss(target, style, attn_scale=scale)
        assert torch.allclose(got, _reference_ad(target, style, scale), rtol=1e-5, atol=1e-6)


def test_ad_loss_zero_when_target_features_equal_style():
    style = _layers(3)
    same = [LayerQKV(s.name, s.q.clone(), s.k.clone(), s.v.clone(), s.height, s.width) for s in style]
    assert ad_loss(same, style).item() == pytest.approx(0.0, abs=1e-6)
    assert ad_loss(_layers(4), style).item() > 0.05


def test_ad_loss_gradients_reach_only_the_target():
    target, style = _layers(5, requires_grad=True), _layers(6, requires_grad=True)
    ad_loss(target, style).backward()
    for t, s in zip(target, style):
        assert all(x.grad is not None and x.grad.abs().sum() > 0 for x in (t.q, t.k, t.v))
        assert all(x.grad is None for x in (s.q, s.k, s.v))


def test_ad_loss_detaches_the_cross_attention_term():
    """As the reference code: the gradient of q_t comes only from the self-attention term."""
    target, style = _layers(7, requires_grad=True), _layers(8)
    ad_loss(target, style).backward()
    grads = [t.q.grad.clone() for t in target]
    for t, s, g in zip(target, style, grads):
        q = t.q.detach().requires_grad_(True)
        cross = attention(q, s.k, s.v).detach()
        F.l1_loss(attention(q, t.k.detach(), t.v.detach()), cross).backward()
        assert torch.allclose(q.grad, g, atol=1e-7)


def test_one_style_is_shared_by_a_batch_of_targets():
    target, style = _layers(9, b=3), _layers(10, b=1)
    batched = ad_loss(target, style)
    style3 = [LayerQKV(s.name, *(x.expand(3, -1, -1, -1) for x in (s.q, s.k, s.v)), s.height, s.width)
              for s in style]
    assert torch.allclose(batched, ad_loss(target, style3))


def test_content_loss_on_queries_and_total():
    target, content, style = _layers(11), _layers(12), _layers(13)
    want = sum((t.q - c.q).abs().mean() for t, c in zip(target, content))
    assert torch.allclose(content_loss(target, content), want)
    assert content_loss(content, content).item() == 0.0
    cfg = ADLossConfig(lambda_content=0.7, max_style_tokens=None)
    tot, parts = total_loss(target, style, content, cfg)
    assert torch.allclose(tot, ad_loss(target, style) + 0.7 * want)
    assert set(parts) == {"distill", "content"}


def test_style_token_subsampling():
    g = torch.Generator().manual_seed(0)
    k = torch.arange(2 * 100 * 4, dtype=torch.float32).view(1, 2, 100, 4)
    v = k + 0.5
    ks, vs = subsample_tokens(k, v, 30, g)
    assert ks.shape == (1, 2, 30, 4) and torch.equal(vs, ks + 0.5)  # same tokens picked for k and v
    assert len(set(ks[0, 0, :, 0].tolist())) == 30  # without replacement
    assert subsample_tokens(k, v, None)[0] is k and subsample_tokens(k, v, 100)[0] is k
    # subsampled loss is a different but finite estimate; with enough tokens it is exact
    target, style = _layers(14), _layers(15)
    assert torch.allclose(ad_loss(target, style, max_style_tokens=16), ad_loss(target, style))
    sub = ad_loss(target, style, max_style_tokens=3, generator=torch.Generator().manual_seed(1))
    assert torch.isfinite(sub) and not torch.allclose(sub, ad_loss(target, style))


def test_mismatched_layers_raise():
    a = _layers(16)
    with pytest.raises(ConfigError):
        ad_loss(a, a[:1])
    with pytest.raises(ConfigError):
        ad_loss(a, list(reversed(a)))


# ----------------------------------------------------------------------------- targets


class ToyTeacher(Teacher):
    """A pixel-space teacher: two fixed random convs, features as q = k = v tokens."""

    kind = "toy"

    def __init__(self, seed=0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.w1 = torch.nn.Parameter(torch.randn(8, 3, 3, 3, generator=g) * 0.5)
        self.w2 = torch.nn.Parameter(torch.randn(16, 8, 3, 3, generator=g) * 0.3)
        self.calls = 0
        self.freeze_()

    def project_latent_(self, latent):
        latent.data.clamp_(0.0, 1.0)

    def latent_features(self, latent):
        self.calls += 1
        f1 = torch.relu(F.conv2d(latent, self.w1, padding=1, stride=2))
        f2 = torch.relu(F.conv2d(f1, self.w2, padding=1, stride=2))
        out = []
        for name, f in (("f1", f1), ("f2", f2)):
            t = f.flatten(2).transpose(1, 2).unsqueeze(1)
            out.append(LayerQKV(name, t, t, t, f.shape[2], f.shape[3]))
        return out


def _images():
    from skimage import data

    def prep(img):
        x = torch.from_numpy(img[:256:8, :256:8].astype(np.float32) / 255.0)
        return x.permute(2, 0, 1)[None].contiguous()

    return prep(data.astronaut()), prep(data.coffee())


@pytest.mark.parametrize("optimizer,lr", [("adam", 0.02), ("muon", 0.02)])
def test_optimize_target_reduces_distillation_loss(optimizer, lr):
    teacher = ToyTeacher()
    content, style = _images()
    log = []
    out = optimize_target(teacher, content, style, steps=40, lr=lr, optimizer=optimizer, lambda_content=0.1,
                          callback=lambda step, parts: log.append(parts["distill"]))
    assert out.shape == content.shape and out.min() >= 0 and out.max() <= 1
    assert log[-1] < 0.6 * log[0]
    assert not torch.equal(out, content)


def test_optimize_target_rejects_bad_config():
    teacher = ToyTeacher()
    content, style = _images()
    with pytest.raises(ConfigError):
        optimize_target(teacher, content, style, steps=1, optimizer="sgd")
    with pytest.raises(ConfigError):
        optimize_target(teacher, content, style, steps=0)


def test_target_cache_hit_miss_and_keys(tmp_path):
    teacher = ToyTeacher()
    content, style = _images()
    cache = TargetCache(tmp_path)
    cfg = TargetConfig(steps=3, lr=0.02)
    first = cache.get_or_compute(teacher, content, style, "coffee", cfg)
    calls = teacher.calls
    again = cache.get_or_compute(teacher, content, style, "coffee", cfg)
    assert teacher.calls == calls, "a cache hit must not run the teacher"
    assert torch.equal(first, again)
    files = list(tmp_path.rglob("*"))
    assert [p.suffix for p in files if p.is_file()] == [".npy"], "no temporary files left behind"

    key = cache.key(content, "coffee", teacher, cfg)
    assert key != cache.key(content, "other", teacher, cfg)
    assert key != cache.key(content, "coffee", teacher, TargetConfig(steps=4, lr=0.02))
    assert key != cache.key(content.flip(-1), "coffee", teacher, cfg)
    assert key != cache.key(content, "coffee", ToyTeacher(seed=1), cfg)
    with pytest.raises(ConfigError):
        cache.key(content, "../escape", teacher, cfg)
