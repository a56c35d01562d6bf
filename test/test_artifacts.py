"""Artifact measures (evaluation/artifacts.py) on real photos with and without planted defects."""
import numpy as np
import pytest

from muon_ad_ros.evaluation.artifacts import border_band, checkerboard_rms, lattice_ratio, shift_error

skimage_data = pytest.importorskip("skimage.data")


@pytest.fixture(scope="module")
def photo():
    return np.ascontiguousarray(np.asarray(skimage_data.astronaut())[:480, :512, :3])


def test_checkerboard_rms_sees_a_sub_pixel_pattern(photo):
    clean = checkerboard_rms(photo)
    pattern = np.indices(photo.shape[:2]).sum(axis=0) % 2 * 20.0 - 10.0  # +-10 levels, 2x2 checkerboard
    planted = np.clip(photo + pattern[..., None], 0, 255).astype(np.uint8)
    assert clean < 4.0
    assert checkerboard_rms(planted) > clean + 5.0


def test_lattice_ratio_sees_an_8px_grid_and_not_a_photo(photo):
    yy, xx = np.indices(photo.shape[:2])
    grid = ((yy % 8 == 0) | (xx % 8 == 0)) * 10.0  # an 8-px lattice of +10 levels
    planted = np.clip(photo + grid[..., None], 0, 255).astype(np.uint8)
    assert lattice_ratio(photo) < 2.0
    assert lattice_ratio(planted) > 2 * lattice_ratio(photo)


def test_border_band_counts_only_what_the_output_adds(photo):
    assert border_band(photo, photo) == 0.0
    banded = photo.copy()
    banded[:8, :, 0] = 255  # a red top band, as v1's the_scream painted
    assert border_band(photo, banded) > 10.0  # levels, averaged over R, G, B
    with pytest.raises(ValueError):
        border_band(photo, photo[:-2])


def test_shift_error_is_zero_for_a_shift_equivariant_map_and_not_for_a_grid_locked_one(photo):
    assert shift_error(lambda rgb: 255 - rgb, photo, 3) == 0.0

    def locked(rgb):  # adds stripes tied to the pixel grid (4 px on, 4 px off), not to the content
        xx = np.indices(rgb.shape[:2])[1]
        return np.clip(rgb + ((xx // 4 % 2) * 20.0)[..., None], 0, 255).astype(np.uint8)

    assert shift_error(locked, photo, 4) > 5.0
    with pytest.raises(ValueError):
        shift_error(locked, photo, 0)
