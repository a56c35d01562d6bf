"""The student network: shapes, style conditioning, attention capture, structural head pruning."""
import pytest
import torch

from muon_ad_ros.core.student import StudentConfig, StudentNet, count_parameters


def make(config=None, seed=0):
    torch.manual_seed(seed)
    return StudentNet(config or StudentConfig.tiny(num_styles=3)).eval()


@pytest.mark.parametrize("hw", [(32, 32), (48, 80), (96, 64)])
def test_output_shape_and_range(hw):
    model = make()
    x = torch.rand(2, 3, *hw)
    y = model(x, model.style_weights_for(1, batch=2))
    assert y.shape == x.shape
    assert float(y.min()) >= 0.0 and float(y.max()) <= 1.0


def test_styles_change_the_output_and_mixtures_interpolate_the_norm_parameters():
    model = make()
    with torch.no_grad():  # give each style distinct affine tables, as training would
        for name, p in model.named_parameters():
            if "style_scale" in name or "style_shift" in name:
                p.add_(torch.randn_like(p) * 0.5)
    x = torch.rand(1, 3, 64, 64)
    y0, y1 = model(x, model.style_weights_for(0)), model(x, model.style_weights_for(1))
    assert (y0 - y1).abs().mean() > 1e-3
    mix = torch.tensor([[0.5, 0.5, 0.0]])
    y_mix = model(x, mix)
    assert not torch.allclose(y_mix, y0) and not torch.allclose(y_mix, y1)
    # 1-D style weights broadcast over the batch
    assert torch.allclose(model(x, torch.tensor([0.0, 1.0, 0.0])), y1)


def test_attention_capture_returns_probabilities_and_matches_fused_path():
    model = make()
    x = torch.rand(1, 3, 64, 64)
    w = model.style_weights_for(0)
    fused = model(x, w)
    model.set_attention_capture(True)
    captured = model(x, w)
    assert torch.allclose(fused, captured, atol=1e-5)
    for attn in model.attention_modules():
        p = attn.last_attention
        n = (64 // 16) ** 2
        assert p.shape == (1, attn.num_heads, n, n)
        assert torch.allclose(p.sum(-1), torch.ones_like(p.sum(-1)), atol=1e-5)
        q, k, v = attn.last_qkv
        assert q.shape == (1, attn.num_heads, n, attn.head_dim)
    model.set_attention_capture(False)
    assert all(a.last_attention is None for a in model.attention_modules())


def test_structural_pruning_equals_masking_and_shrinks_the_model():
    config = StudentConfig.tiny(num_styles=2)
    config.attn_heads = [4]
    model = make(config)
    with torch.no_grad():  # make the attention matter so the check is not vacuous
        for p in model.attention_modules()[0].parameters():
            p.add_(torch.randn_like(p) * 0.3)
    x = torch.rand(2, 3, 64, 48)
    w = model.style_weights_for(1, batch=2)
    unmasked = model(x, w)
    attn = model.attention_modules()[0]
    attn.head_mask.copy_(torch.tensor([1.0, 0.0, 1.0, 0.0]))
    masked = model(x, w)
    full_params = count_parameters(model)
    model.prune_heads([[0, 2]])
    pruned = model(x, w)
    assert torch.allclose(masked, pruned, atol=1e-5)
    assert count_parameters(model) < full_params
    assert model.config.attn_heads == [2]
    # the heads that were removed really mattered: without the mask the output differs
    assert (unmasked - masked).abs().max() > 1e-4


def test_pruning_every_head_makes_the_block_an_identity():
    model = make()
    x = torch.rand(1, 3, 32, 32)
    w = model.style_weights_for(0)
    model.attention_modules()[0].head_mask.zero_()
    masked = model(x, w)
    model.prune_heads([[]])
    assert torch.allclose(model(x, w), masked, atol=1e-6)


def test_the_default_student_has_no_position_locked_pattern_at_init():
    """Resize-conv decoder + blurred strided convs: a constant image gives a constant output (a
    pixel-shuffle head or zero padding would print a sub-pixel or border pattern on it)."""
    model = StudentNet(StudentConfig(style_names=["a", "b"])).eval()
    with torch.no_grad():
        y = model(torch.full((1, 3, 64, 96), 0.4), model.style_weights_for(0))
    assert float(y.std(dim=(2, 3)).max()) < 1e-5  # constant within each channel


def test_blurred_downsampling_is_closer_to_shift_equivariant_than_plain_striding():
    """The fixed binomial low-pass before each stride-2 conv: shifting the input by one pixel changes
    the (shifted-back) features far less than the same conv without the blur."""
    from muon_ad_ros.core.student import BlurDownConv

    torch.manual_seed(0)
    down = BlurDownConv(3, 8)
    x = torch.rand(1, 3, 64, 64)
    x = torch.nn.functional.avg_pool2d(x, 3, 1, 1)  # photo-like: mostly low frequencies, some high
    shifted = torch.roll(x, 1, dims=-1)

    def shift_error(f):
        a, b = f(x), f(shifted)  # a 1-px input shift is a half-pixel shift at stride 2: compare
        return float((a[..., 4:-4, 4:-4] - b[..., 4:-4, 4:-4]).abs().mean() /
                     a[..., 4:-4, 4:-4].abs().mean())  # the relative change, interior only

    with torch.no_grad():
        assert shift_error(down) < 0.8 * shift_error(down.conv)


def test_config_round_trip_and_strict_keys():
    config = StudentConfig()
    assert StudentConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match="unknown StudentConfig keys"):
        StudentConfig.from_dict({**config.to_dict(), "widht": 3})
    with pytest.raises(ValueError):
        StudentNet(StudentConfig(style_names=[]))
