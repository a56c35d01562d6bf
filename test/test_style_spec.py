"""The one style-spec parser (core/style_spec.py) and every caller that takes a style from a user:
the Python API, `muon-ad stylize`, eval-bag and the parameter callback of the node."""
import subprocess
import sys

import numpy as np
import pytest

from _core_helpers import real_photos, tiny_bundle
from muon_ad_ros.core.errors import ConfigError
from muon_ad_ros.core.style_spec import describe_style, parse_style

STYLES = ["ink", "pastel", "neon"]


@pytest.mark.parametrize("spec, expected", [
    ("pastel", [0, 1, 0]), (2, [0, 0, 1]), ("2", [0, 0, 1]), (" 1 ", [0, 1, 0]), (np.int64(0), [1, 0, 0]),
    ("", [1, 0, 0]), (None, [1, 0, 0]),
    ("ink:0.7,neon:0.3", [0.7, 0, 0.3]), ("0:1, 2:3", [0.25, 0, 0.75]), ("pastel:2", [0, 1, 0]),
    ("ink:1e-1,pastel:.1", [0.5, 0.5, 0]), ("ink:0,neon:1", [0, 0, 1]),
    ([1, 1, 2], [0.25, 0.25, 0.5]),
])
def test_names_indices_and_mixtures(spec, expected):
    weights = parse_style(spec, STYLES)
    assert weights.dtype == np.float32 and weights.shape == (3,)
    np.testing.assert_allclose(weights, expected, rtol=1e-6)
    assert abs(float(weights.sum()) - 1.0) < 1e-6


@pytest.mark.parametrize("spec, message", [
    ("\u00b2", "unknown style"),            # str.isdigit() is True, int() raises: the node died on it
    ("\u0663", "unknown style"),            # Arabic-Indic three: a digit to Python, not an index
    ("nope", "unknown style"), ("-1", "unknown style"), (-1, "out of range"), (3, "out of range"),
    ("7", "out of range"), (True, "name, an index or a mixture"),
    ("ink:0.5,ink:0.5", "appears twice"), ("ink:0.5,0:0.5", "appears twice"),
    ("ink:-0.1,neon:1", ">= 0"), ("ink:nan,neon:1", "decimal number"), ("ink:inf", "decimal number"),
    ("ink:1e999", "finite"), ("ink:0,neon:0", "all be zero"), ("ink:\u00b2", "decimal number"),
    ("ink:0.5,", "name:weight"), ("ink", None), (":1", "name:weight"), ("nope:1", "unknown style"),
    ([1, 0], "3 finite non-negative"), ([0, 0, 0], "all be zero"), ([1, -1, 1], "non-negative"),
    ([np.nan, 1, 1], "non-negative"), ({"a": 1}, "name, an index or a mixture"),
    ("x" * 5000, "unknown style"),
])
def test_bad_specs_are_one_line_config_errors(spec, message):
    if message is None:  # a valid control in the same table
        parse_style(spec, STYLES)
        return
    with pytest.raises(ConfigError, match=message) as info:
        parse_style(spec, STYLES)
    assert "\n" not in str(info.value) and len(str(info.value)) < 200


def test_a_name_wins_over_an_index():
    np.testing.assert_array_equal(parse_style("1", ["a", "b", "1"]), [0, 0, 1])


def test_describe_round_trips():
    for spec in ("pastel", "ink:0.7,neon:0.3"):
        weights = parse_style(spec, STYLES)
        np.testing.assert_allclose(parse_style(describe_style(weights, STYLES), STYLES), weights, rtol=1e-3)


@pytest.fixture(scope="module")
def card(tmp_path_factory):
    return tiny_bundle(tmp_path_factory.mktemp("bundle"))[1]


def test_a_mixture_runs_through_the_stylizer(card):
    from muon_ad_ros.core.stylizer import Stylizer

    stylizer = Stylizer.from_model(card, threads=1)
    frame = real_photos((48, 64))[0]
    mixed = stylizer.stylize(frame, style="style0:0.5,style2:0.5").image
    assert not np.array_equal(mixed, stylizer.stylize(frame, style=0).image)
    assert not np.array_equal(mixed, stylizer.stylize(frame, style=2).image)
    np.testing.assert_array_equal(mixed, stylizer.stylize(frame, style=[1, 0, 1]).image)


@pytest.mark.parametrize("argv", [["muon_ad_ros.cli", "stylize", "{photo}", "{out}"],
                                  ["muon_ad_ros.evaluation.eval_bag_cli", "{bag}", "--topic",
                                   "/camera/image_raw", "--out", "{out}"]])
def test_cli_rejects_a_superscript_style_in_one_line(tmp_path, card, argv):
    import cv2

    import _bag_helpers as H

    photo = tmp_path / "p.png"
    cv2.imwrite(str(photo), real_photos((32, 32))[0])
    bag = H.write_bag(tmp_path / "in_bag", real_photos((32, 32))[:2], "mcap") if "eval" in argv[0] else None
    args = [a.format(photo=photo, out=tmp_path / "o.png", bag=bag) for a in argv]
    proc = subprocess.run([sys.executable, "-m", *args, "--model", str(card), "--style", "\u00b2"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr
    assert "unknown style" in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_an_exception_in_a_parameter_callback_is_a_rejection():
    pytest.importorskip("rclpy", reason="rclpy (ROS 2) is not installed")
    from rclpy.parameter import Parameter

    from muon_ad_ros.nodes.params import ParamSpec, make_on_set_callback

    specs = (ParamSpec("style", "", "style", dynamic=True, any_type=True),)

    def prepare(name, value):
        int(value)  # the old node's crash: int("²") raises ValueError
        return lambda: None

    result = make_on_set_callback(specs, prepare)([Parameter("style", value="\u00b2")])
    assert not result.successful and "ValueError" in result.reason and "\n" not in result.reason
