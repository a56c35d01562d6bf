"""The consistent mode's disparity estimate against a known disparity: synthetic layered scenes
(evaluation/stereo_synth.py) textured with scikit-image photos, seeded; no ../shared needed."""
import numpy as np
import pytest

from muon_ad_ros.core.stereo import (StereoConfig, StereoStylizer, right_disparity, right_view_disparity,
                                     scale_disparity, sgbm_disparity, warp_left_to_right)
from muon_ad_ros.evaluation.metrics import left_visible_in_right, stereo_difference
from muon_ad_ros.evaluation.stereo_synth import SynthConfig, synthetic_pair

# The settings before issue 12's stereo tuning: SGBM at 320 px, the first numDisparities columns unmatched.
PREVIOUS = StereoConfig(max_side=320, max_disparity=0.25, block_size=5, pad_left=False, fill_holes=False, median_px=0)


def photos():
    from skimage import data

    return [data.astronaut(), data.coffee(), data.chelsea(), data.rocket()]


@pytest.fixture(scope="module")
def pairs():
    """Two 640x480 scenes (the node's usual size, so the previous 320 px path really reduces)."""
    return [synthetic_pair(photos(), seed, SynthConfig(height=480, width=640)) for seed in (3, 4)]


def good_fraction(est, gt):
    """Share of the pixels both cameras see whose estimate is within 1 px of the truth (holes: wrong)."""
    vis = left_visible_in_right(gt)
    est = scale_disparity(est, *gt.shape)
    return float((np.abs(np.nan_to_num(est, nan=-1e3) - gt) <= 1.0)[vis].mean())


def test_synthetic_pair_agrees_with_its_disparity():
    left, right, d = synthetic_pair(photos(), 0)
    assert left.shape == right.shape == (240, 320, 3) and d.shape == (240, 320)
    dr = right_view_disparity(d)
    seen = np.isfinite(dr)
    rebuilt = warp_left_to_right(left, dr).astype(np.float32)
    err = np.abs(rebuilt - right.astype(np.float32)).mean(axis=-1)
    assert 0.7 < seen.mean() < 1.0                      # occlusions and the right border strip
    assert np.median(err[seen]) < 6                     # sensor noise, gain, resampling
    floor, _ = stereo_difference(left, right, d)
    shifted, _ = stereo_difference(left, np.roll(right, 5, axis=1), d)
    assert shifted > 2 * floor
    again = synthetic_pair(photos(), 0)
    assert all(np.array_equal(a, b) for a, b in zip((left, right, d), again))   # seeded


def test_padding_matches_the_left_strip(pairs):
    left, right, gt = pairs[0]
    cfg = StereoConfig(max_side=640)
    padded, plain = sgbm_disparity(left, right, cfg), sgbm_disparity(left, right, StereoConfig(max_side=640,
                                                                                               pad_left=False))
    num = int(np.ceil(cfg.max_disparity * 640 / 16.0)) * 16
    strip = left_visible_in_right(gt)[:, :num]
    assert np.isfinite(plain[:, :num])[strip].mean() < 0.05    # SGBM cannot search there without padding
    assert np.isfinite(padded[:, :num])[strip].mean() > 0.6
    assert good_fraction(padded, gt) > good_fraction(plain, gt) + 0.1


def test_default_disparity_is_closer_to_the_truth_than_the_previous_path(pairs):
    """What the warp uses: the right-view disparity (filtered, at the images' size). Share of the
    right pixels whose disparity is within 1 px of the truth (holes count as misses), and share of
    those carried over more than 2 px wrong (worse than a hole: paint in the wrong place)."""
    good, bad = {"new": [], "old": []}, {"new": [], "old": []}
    for left, right, gt in pairs:
        truth = right_view_disparity(gt)
        seen = np.isfinite(truth)
        for name, cfg in (("new", StereoConfig()), ("old", PREVIOUS)):
            est, _ = right_disparity(left, right, cfg)
            err = np.abs(np.nan_to_num(est, nan=-1e3) - truth)[seen]
            good[name].append(float((err <= 1.0).mean()))
            bad[name].append(float(((err > 2.0) & np.isfinite(est[seen])).mean()))
    assert np.mean(good["new"]) > np.mean(good["old"]) + 0.08, good
    assert min(good["new"]) > 0.65 and np.mean(bad["new"]) < 0.05, (good, bad)


def test_consistent_mode_beats_the_previous_path_on_a_known_disparity(pairs, tiny_stylizer):
    left, right, gt = pairs[1]
    indep = StereoStylizer(tiny_stylizer, "independent").stylize_pair(left, right)
    new = StereoStylizer(tiny_stylizer, "consistent").stylize_pair(left, right)
    old = StereoStylizer(tiny_stylizer, "consistent", PREVIOUS).stylize_pair(left, right)
    d_indep, d_new, d_old = (stereo_difference(r.left, r.right, gt)[0] for r in (indep, new, old))
    assert d_new < d_old < d_indep, (d_new, d_old, d_indep)
    assert d_new <= 0.6 * d_indep
    assert new.from_left > old.from_left


@pytest.fixture(scope="module")
def tiny_stylizer(tmp_path_factory):
    from _core_helpers import tiny_bundle
    from muon_ad_ros.core.stylizer import Stylizer

    _, card = tiny_bundle(tmp_path_factory.mktemp("bundle"))
    return Stylizer.from_model(card, threads=1)
