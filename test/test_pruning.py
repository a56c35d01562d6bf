"""Entropy pruning, structural head removal and the analytic FLOPs count (tiny students, CPU)."""
import math

import pytest
import torch

from muon_ad_ros.core.errors import ConfigError
from muon_ad_ros.core.export import export_onnx
from muon_ad_ros.core.student import StudentConfig, StudentNet, count_parameters
from muon_ad_training.flops import attention_share, student_cost
from muon_ad_training.pruning import (EntropyPruner, PruningConfig, normalised_entropy, prune_structurally,
                                      sparsity_at)


def small_config() -> StudentConfig:
    """Tiny student with two attention blocks of 3 and 2 heads (global vs per-block ranking matters)."""
    cfg = StudentConfig.tiny()
    cfg.num_res_blocks, cfg.attn_heads = 2, [3, 2]
    return cfg


def model_and_image(seed=0, hw=(64, 96)):
    torch.manual_seed(seed)
    model = StudentNet(small_config()).eval()
    return model, torch.rand(1, 3, *hw)


def attention_with_entropy(levels: list[float], n: int = 12) -> torch.Tensor:
    """[1,heads,N,N] attention whose rows mix uniform (weight l) and one-hot-on-self (1-l)."""
    eye = torch.eye(n)
    uniform = torch.full((n, n), 1.0 / n)
    return torch.stack([u * uniform + (1 - u) * eye for u in levels])[None]


def feed(pruner: EntropyPruner, model: StudentNet, per_block: list[list[float]], times: int = 1) -> None:
    for _ in range(times):
        for attn, levels in zip(model.attention_modules(), per_block):
            attn.last_attention = attention_with_entropy(levels)
        pruner.observe(model)


def test_normalised_entropy_is_0_for_one_hot_and_1_for_uniform_at_any_size():
    for n in (4, 30, 300):
        ent = normalised_entropy(attention_with_entropy([1.0, 0.0], n))
        assert ent[0].item() == pytest.approx(1.0, abs=1e-5)
        assert ent[1].item() == pytest.approx(0.0, abs=1e-5)
    # Two equal peaks: entropy log 2, normalised by log N.
    attn = torch.zeros(1, 1, 8, 8)
    attn[..., :2] = 0.5
    assert normalised_entropy(attn).item() == pytest.approx(math.log(2) / math.log(8), rel=1e-5)


def test_sparsity_ramp_is_cubic_monotone_and_reaches_target():
    values = [sparsity_at(p / 20, 0.5, 0.6) for p in range(21)]
    assert values[0] == 0.0 and values[-1] == pytest.approx(0.5)
    assert sparsity_at(0.6, 0.5, 0.6) == pytest.approx(0.5)
    assert all(b >= a for a, b in zip(values, values[1:]))
    assert sparsity_at(0.3, 0.5, 0.6) == pytest.approx(0.5 * (1 - 0.5 ** 3))
    assert sparsity_at(0.0, 0.4, 0.0) == 0.4


def test_observe_needs_attention_capture():
    model, image = model_and_image()
    pruner = EntropyPruner(model)
    model(image, model.style_weights_for(0))
    with pytest.raises(ConfigError, match="capture"):
        pruner.observe(model)


def test_observe_reads_real_forward_passes_and_ema_tracks_the_batches():
    model, image = model_and_image()
    model.set_attention_capture(True)
    pruner = EntropyPruner(model, PruningConfig(ema_decay=0.5))
    model(image, model.style_weights_for(0))
    pruner.observe(model)
    first = [normalised_entropy(a.last_attention) for a in model.attention_modules()]
    assert all(torch.allclose(e, f) for e, f in zip(pruner.entropy, first))  # EMA starts at the first value
    model(torch.rand_like(image), model.style_weights_for(1))
    pruner.observe(model)
    second = [normalised_entropy(a.last_attention) for a in model.attention_modules()]
    for e, f, s in zip(pruner.entropy, first, second):
        assert torch.allclose(e, 0.5 * f + 0.5 * s, atol=1e-6)
        assert ((e > 0) & (e <= 1)).all()


def test_most_uniform_heads_are_masked_first_and_never_the_last_head_of_a_block():
    model, _ = model_and_image()
    weights = [a.qkv.weight.clone() for a in model.attention_modules()]
    pruner = EntropyPruner(model, PruningConfig(min_observations=1))
    # Block 1's heads are both more uniform than any head of block 0.
    feed(pruner, model, [[0.2, 0.9, 0.5], [0.95, 0.97]])
    assert pruner.update_masks(0.2) == [[1, 1, 1], [1, 0]]  # 1 of 5 heads: the most uniform
    assert pruner.update_masks(0.4) == [[1, 0, 1], [1, 0]]  # block 1 keeps its last head: next best
    assert pruner.update_masks(0.6) == [[1, 0, 0], [1, 0]]
    assert pruner.update_masks(1.0) == [[1, 0, 0], [1, 0]]  # the floor holds even at 100 %
    assert [a.head_mask.tolist() for a in model.attention_modules()] == [[1, 0, 0], [1, 0]]
    # Masked heads keep their weights so they can come back.
    assert all(torch.equal(w, a.qkv.weight) for w, a in zip(weights, model.attention_modules()))
    # Global ranking takes heads where they are most uniform; per-block takes a share of every block.
    levels = [[0.9, 0.95, 0.97], [0.1, 0.2]]
    ranked = {}
    for scope in ("global", "per_block"):
        pruner = EntropyPruner(model, PruningConfig(min_observations=1, scope=scope))
        feed(pruner, model, levels)
        ranked[scope] = pruner.update_masks(0.4)
    assert ranked == {"global": [[1, 0, 0], [1, 1]], "per_block": [[1, 1, 0], [1, 0]]}


def test_no_mask_before_the_ema_has_settled():
    model, _ = model_and_image()
    pruner = EntropyPruner(model, PruningConfig(min_observations=3))
    feed(pruner, model, [[0.2, 0.9, 0.5], [0.1, 0.97]], times=2)
    assert pruner.update_masks(0.5) == [[1, 1, 1], [1, 1]]
    feed(pruner, model, [[0.2, 0.9, 0.5], [0.1, 0.97]])
    assert pruner.update_masks(0.5) != [[1, 1, 1], [1, 1]]


def test_hysteresis_keeps_masks_from_flapping_but_a_head_can_come_back():
    model, _ = model_and_image()
    pruner = EntropyPruner(model, PruningConfig(min_observations=1, ema_decay=0.0, hysteresis=0.05))
    feed(pruner, model, [[0.2, 0.80, 0.5], [0.1, 0.3]])
    assert pruner.update_masks(0.2) == [[1, 0, 1], [1, 1]]
    # Head 0.2 becomes slightly more uniform than the masked head: within the margin, nothing moves.
    feed(pruner, model, [[0.2, 0.80, 0.83], [0.1, 0.3]])
    assert pruner.update_masks(0.2) == [[1, 0, 1], [1, 1]]
    assert pruner.flips == 1
    # Beyond the margin the kept head is masked and the masked one comes back.
    feed(pruner, model, [[0.2, 0.80, 0.95], [0.1, 0.3]])
    assert pruner.update_masks(0.2) == [[1, 1, 0], [1, 1]]
    assert pruner.flips == 3
    without = EntropyPruner(model, PruningConfig(min_observations=1, ema_decay=0.0, hysteresis=0.0))
    feed(without, model, [[0.2, 0.80, 0.5], [0.1, 0.3]])
    without.update_masks(0.2)
    feed(without, model, [[0.2, 0.80, 0.83], [0.1, 0.3]])
    assert without.update_masks(0.2) == [[1, 1, 0], [1, 1]]  # no margin: it flips


def test_state_dict_round_trip_restores_emas_and_masks_into_a_fresh_model():
    model, _ = model_and_image()
    pruner = EntropyPruner(model, PruningConfig(min_observations=1))
    feed(pruner, model, [[0.2, 0.9, 0.5], [0.95, 0.97]], times=3)
    pruner.update_masks(0.4)
    fresh_model, _ = model_and_image()
    restored = EntropyPruner(fresh_model, PruningConfig(min_observations=1))
    restored.load_state_dict(pruner.state_dict())
    assert restored.report()["blocks"] == pruner.report()["blocks"]
    assert [a.head_mask.tolist() for a in fresh_model.attention_modules()] == [[1, 0, 1], [1, 0]]
    other = StudentNet(StudentConfig.tiny())
    with pytest.raises(ConfigError):
        EntropyPruner(other).load_state_dict(pruner.state_dict())


def test_masked_and_structurally_pruned_models_agree_and_cost_less():
    model, image = model_and_image(hw=(64, 96))
    masks = [[1.0, 0.0, 0.7], [0.0, 1.0]]  # a soft mask must survive pruning too
    for attn, m in zip(model.attention_modules(), masks):
        attn.head_mask.copy_(torch.tensor(m))
    pruned, stats = prune_structurally(model, hw=(96, 128))
    style = torch.tensor([[0.3, 0.7]])
    with torch.no_grad():
        masked_out, pruned_out = model(image, style), pruned(image, style)
    assert torch.allclose(masked_out, pruned_out, atol=1e-5)
    assert stats["heads_before"] == [3, 2] and stats["heads_after"] == [2, 1]
    assert pruned.config.attn_heads == [2, 1] and model.config.attn_heads == [3, 2]  # a copy by default
    assert stats["macs_after"] < stats["macs_before"] and stats["params_after"] < stats["params_before"]
    assert stats["params_after"] == count_parameters(pruned)
    # The difference is exactly the removed heads' q/k/v rows and projection columns.
    d, c = model.config.attn_head_dim, model.config.body_channels
    assert stats["params_before"] - stats["params_after"] == 2 * (3 * d * c + 3 * d + d * c)


def test_exported_graph_of_the_pruned_model_is_smaller(tmp_path):
    import onnx
    from onnx import numpy_helper

    model, _ = model_and_image()
    for attn in model.attention_modules():
        attn.head_mask[0] = 0.0
    pruned, _ = prune_structurally(model)

    def onnx_params(path):
        return sum(numpy_helper.to_array(t).size for t in onnx.load(str(path)).graph.initializer)

    full = export_onnx(model, tmp_path / "full.onnx", sample_hw=(64, 64))
    small = export_onnx(pruned, tmp_path / "small.onnx", sample_hw=(64, 64))
    removed_params = count_parameters(model) - count_parameters(pruned)
    assert removed_params > 0
    # The removed heads' weights, and their entries of the head_mask buffers (one per head, 2 heads).
    assert onnx_params(full) - onnx_params(small) == removed_params + 2


@pytest.mark.parametrize("cfg, hw", [(StudentConfig.tiny(), (64, 64)), (small_config(), (48, 80)),
                                     (StudentConfig(), (64, 96))])
def test_analytic_macs_match_torch_flop_counter(cfg, hw):
    from torch.utils.flop_counter import FlopCounterMode

    torch.manual_seed(0)
    model = StudentNet(cfg).eval()
    if cfg.attn_heads == [3, 2]:
        model.prune_heads([[0, 2], [1]])  # also count a structurally pruned student
    model.set_attention_capture(True)  # the explicit QK^T / AV path, which the counter sees as bmm
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.rand(1, 3, *hw), model.style_weights_for(0))
    report = student_cost(model, hw)
    assert 2 * report.macs == counter.get_total_flops()
    assert report.params == count_parameters(model)


def test_attention_cost_grows_quadratically_and_pruning_removes_it():
    model = StudentNet(StudentConfig(attn_heads=[4, 4]))
    small, large = student_cost(model, (240, 320)), student_cost(model, (480, 640))
    attn = lambda r: sum(v for k, v in r.per_module.items() if k.startswith("attn_blocks"))  # noqa: E731
    n_small, n_large = 15 * 20, 30 * 40  # tokens on the H/16 grid
    quad = lambda n: 2 * 4 * n * n * 16 * 2  # noqa: E731  (blocks x QK^T+AV x heads x N^2 x d)
    # The non-quadratic part scales with the pixel count (4x).
    assert attn(large) - quad(n_large) == 4 * (attn(small) - quad(n_small))
    assert attention_share(large) > attention_share(small)
    model.prune_heads([[0, 1], [0]])
    pruned = student_cost(model, (480, 640))
    assert attn(pruned) == pytest.approx(attn(large) * 3 / 8)


def test_the_rule_a_uniform_head_matters_far_less_than_a_peaked_one():
    """Why uniform heads go first: a uniform head adds a spatially constant update, which the
    instance norms downstream remove; masking it changes the image far less than a peaked head."""
    import cv2
    import skimage.data

    torch.manual_seed(0)
    model = StudentNet(StudentConfig.tiny()).eval()
    attn = model.attention_modules()[0]
    d, heads = attn.head_dim, attn.num_heads
    with torch.no_grad():
        attn.qkv.weight[:d] = 0.0  # head 0: zero queries -> all logits 0 -> exactly uniform attention
        attn.qkv.bias[:d] = 0.0
        attn.qkv.weight[d:2 * d] *= 6.0  # head 1: sharper queries and keys -> peaked attention
        attn.qkv.weight[heads * d + d:heads * d + 2 * d] *= 6.0
    rgb = cv2.resize(skimage.data.astronaut(), (128, 128), interpolation=cv2.INTER_AREA)
    image = torch.from_numpy(rgb.transpose(2, 0, 1)).float()[None] / 255.0
    style = model.style_weights_for(0)
    model.set_attention_capture(True)
    pruner = EntropyPruner(model, PruningConfig(min_observations=1))
    with torch.no_grad():
        reference = model(image, style)
        pruner.observe(model)
        assert pruner.entropy[0][0].item() == pytest.approx(1.0, abs=1e-5)
        assert pruner.entropy[0][1].item() < 0.5
        assert pruner.update_masks(0.5) == [[0, 1]]  # the rule picks the uniform head
        without_uniform = model(image, style)
        attn.head_mask.copy_(torch.tensor([1.0, 0.0]))
        without_peaked = model(image, style)
    change_uniform = (without_uniform - reference).abs().mean().item()
    change_peaked = (without_peaked - reference).abs().mean().item()
    assert change_uniform < 0.1 * change_peaked
