"""The Stylizer pipeline: sizes, style selection, strength blend, timings, bad input."""
import numpy as np
import pytest

from _core_helpers import psnr, real_photos, tiny_bundle
from muon_ad_ros.core.errors import ConfigError, ImageFormatError
from muon_ad_ros.core.stylizer import InputPolicy, Stylizer


@pytest.fixture(scope="module")
def stylizer(tmp_path_factory):
    _, card = tiny_bundle(tmp_path_factory.mktemp("bundle"))
    return Stylizer.from_model(card, threads=1)


@pytest.mark.parametrize("hw", [(96, 128), (101, 67), (17, 250)])
def test_output_has_the_frame_size_for_any_frame(stylizer, hw):
    frame = real_photos(hw)[0]
    result = stylizer.stylize(frame)
    assert result.image.shape == frame.shape and result.image.dtype == np.uint8
    h, w = result.network_hw
    assert h % 16 == 0 and w % 16 == 0
    assert set(result.timings) == {"preprocess", "inference", "postprocess", "temporal", "total"}
    assert all(v >= 0 for v in result.timings.values())
    assert result.timings["total"] >= result.timings["inference"]


def test_strength_zero_returns_the_input_and_one_the_network_output(stylizer):
    frame = real_photos((64, 96))[1]
    assert np.array_equal(stylizer.stylize(frame, strength=0.0).image, frame)
    full = stylizer.stylize(frame, strength=1.0).image
    half = stylizer.stylize(frame, strength=0.5).image
    expected = (full.astype(np.float64) + frame) / 2
    assert np.abs(half - expected).max() <= 1.0
    assert psnr(full, frame) < psnr(half, frame)


def test_style_by_name_index_and_mixture(stylizer):
    frame = real_photos((64, 64))[2]
    by_name = stylizer.stylize(frame, style=stylizer.styles[1]).image
    by_index = stylizer.stylize(frame, style=1).image
    by_text_index = stylizer.stylize(frame, style="1").image
    assert np.array_equal(by_name, by_index) and np.array_equal(by_index, by_text_index)
    other = stylizer.stylize(frame, style=0).image
    assert not np.array_equal(by_index, other)
    np.testing.assert_allclose(stylizer.style_weights([1, 1, 2]), [0.25, 0.25, 0.5])


def test_set_style_and_strength_persist(stylizer):
    frame = real_photos((64, 64))[3]
    stylizer.set_style(2)
    stylizer.set_strength(0.25)
    try:
        assert np.array_equal(stylizer.stylize(frame).image, stylizer.stylize(frame, style=2, strength=0.25).image)
        assert stylizer.current_style_weights.argmax() == 2 and stylizer.strength == 0.25
    finally:
        stylizer.set_style(0)
        stylizer.set_strength(1.0)


@pytest.mark.parametrize("style", ["nope", 7, -1, [1, 0], [0, 0, 0], [1, -1, 1], [np.nan, 1, 1]])
def test_bad_styles_are_config_errors(stylizer, style):
    with pytest.raises(ConfigError):
        stylizer.set_style(style)


@pytest.mark.parametrize("strength", [-0.1, 1.5])
def test_bad_strength(stylizer, strength):
    with pytest.raises(ConfigError, match="strength"):
        stylizer.set_strength(strength)


@pytest.mark.parametrize("frame", [np.zeros((10, 10), np.uint8), np.zeros((10, 10, 4), np.uint8),
                                   np.zeros((10, 10, 3), np.float32), np.zeros((0, 10, 3), np.uint8), "x"])
def test_bad_frames_are_image_format_errors(stylizer, frame):
    with pytest.raises(ImageFormatError):
        stylizer.stylize(frame)


def test_input_policy():
    assert InputPolicy().network_size(480, 640) == (480, 640)
    assert InputPolicy(max_side=320).network_size(480, 640) == (240, 320)
    assert InputPolicy(width=256, height=192).network_size(1080, 1920) == (192, 256)
    assert InputPolicy().network_size(5, 7) == (16, 16)
    # the default is safe for a robot: a 1080p frame does not run at full size (2.8 GB) by default
    assert InputPolicy().network_size(1080, 1920) == (352, 640)
    assert InputPolicy(max_side=0).network_size(1080, 1920) == (1088, 1920)  # full size only when asked
    with pytest.raises(ConfigError):
        InputPolicy(width=100)
    with pytest.raises(ConfigError):
        InputPolicy(max_side=-1)
