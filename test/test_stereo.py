"""Stereo-consistent stylization (core/stereo.py) and the stereo difference metric, on the real
Middlebury motorcycle pair scikit-image ships with its ground-truth disparity."""
import cv2
import numpy as np
import pytest

from _core_helpers import tiny_bundle
from muon_ad_ros.core.errors import ConfigError, ImageFormatError
from muon_ad_ros.core.stereo import (StereoConfig, StereoStylizer, fill_disparity_holes, right_view_disparity,
                                     sgbm_disparity, warp_left_to_right)
from muon_ad_ros.core.stylizer import Stylizer
from muon_ad_ros.evaluation.metrics import left_visible_in_right, stereo_difference


@pytest.fixture(scope="module")
def pair():
    """The motorcycle pair at half size (250x370) with its disparity in half-size pixels."""
    from skimage import data

    left, right, disp = data.stereo_motorcycle()
    h, w = left.shape[0] // 2, left.shape[1] // 2
    half = [cv2.resize(x, (w, h), interpolation=cv2.INTER_AREA) for x in (left, right)]
    d = cv2.resize(np.where(np.isfinite(disp), disp, np.nan), (w, h), interpolation=cv2.INTER_NEAREST) / 2.0
    return half[0], half[1], d.astype(np.float32)


@pytest.fixture(scope="module")
def stylizer(tmp_path_factory):
    _, card = tiny_bundle(tmp_path_factory.mktemp("bundle"))
    return Stylizer.from_model(card, threads=1)


def test_metric_floor_is_small_for_the_inputs_and_large_for_a_shifted_view(pair):
    left, right, d = pair
    floor, used = stereo_difference(left, right, d)
    assert 0.5 < used < 1.0
    shifted, _ = stereo_difference(left, np.roll(right, 6, axis=1), d)
    assert floor < 8 and shifted > 2 * floor


def test_visibility_mask_hides_pixels_behind_a_nearer_surface():
    d = np.full((4, 20), 2.0, np.float32)
    d[:, 10:14] = 6.0                 # a near bar: right-view pixels 4..7 see it, not the background
    vis = left_visible_in_right(d)
    assert vis[:, 10:14].all()
    assert not vis[:, 6:10].all()     # background at x 6..9 lands on x 4..7: covered by the bar
    assert not vis[:, :2].any()       # lands left of the right image


def test_right_view_disparity_of_a_constant_shift():
    d = np.full((5, 30), 3.0, np.float32)
    dr = right_view_disparity(d)
    assert np.allclose(dr[:, :27], 3.0)
    assert np.isnan(dr[:, 27:]).all()  # no left pixel lands there


def test_fill_takes_the_farther_neighbour():
    d = np.array([[5.0, np.nan, np.nan, 2.0, np.nan]], np.float32)
    assert np.allclose(fill_disparity_holes(d), [[5.0, 2.0, 2.0, 2.0, 2.0]])


def test_warp_with_true_disparity_rebuilds_the_right_view(pair):
    left, right, d = pair
    dr = right_view_disparity(fill_disparity_holes(d))
    rebuilt = warp_left_to_right(left, dr)
    ok = np.isfinite(dr)
    assert ok.mean() > 0.8
    err = np.abs(rebuilt.astype(np.float32) - right.astype(np.float32)).mean(axis=-1)[ok].mean()
    assert err < 12


def test_sgbm_finds_the_disparity(pair):
    left, right, d = pair
    est = sgbm_disparity(left, right, StereoConfig(max_side=370))
    both = np.isfinite(est) & np.isfinite(d)
    assert both.mean() > 0.5
    assert np.median(np.abs(est[both] - d[both])) < 1.5


def test_consistent_mode_paints_both_eyes_alike(pair, stylizer):
    left, right, gt = pair
    indep = StereoStylizer(stylizer, "independent").stylize_pair(left, right)
    cons = StereoStylizer(stylizer, "consistent").stylize_pair(left, right)
    assert np.array_equal(cons.left, indep.left)
    d_indep, _ = stereo_difference(indep.left, indep.right, gt)
    d_cons, _ = stereo_difference(cons.left, cons.right, gt)
    assert d_cons <= 0.6 * d_indep, (d_cons, d_indep)
    assert 0.5 < cons.from_left < 1.0
    filled = StereoStylizer(stylizer, "consistent", StereoConfig(fill_holes=True)).stylize_pair(left, right)
    assert filled.from_left > cons.from_left          # filled holes carry more of the left view over
    assert set(cons.timings) >= {"left", "right", "disparity", "disparity_wait", "warp", "total"}
    serial = StereoStylizer(stylizer, "consistent", StereoConfig(overlap=False)).stylize_pair(left, right)
    assert np.array_equal(serial.right, cons.right)   # the worker thread changes when, not what
    given = StereoStylizer(stylizer, "consistent").stylize_pair(left, right, disparity=gt)
    assert stereo_difference(given.left, given.right, gt)[0] <= d_cons + 1.0


def test_bad_pairs_and_modes(pair, stylizer):
    left, right, _ = pair
    with pytest.raises(ImageFormatError):
        StereoStylizer(stylizer).stylize_pair(left, right[:, :-1])
    with pytest.raises(ImageFormatError):
        StereoStylizer(stylizer).stylize_pair(left, right[..., 0])
    with pytest.raises(ImageFormatError):
        StereoStylizer(stylizer).stylize_pair(left, right, disparity=np.zeros(5))
    with pytest.raises(ConfigError):
        StereoStylizer(stylizer, "anaglyph")
    with pytest.raises(ConfigError):
        StereoConfig(block_size=4)
