"""launch/stereo.launch.py and config/stereo.yaml against stereo_stylize_node's parameter table."""
import ast
import importlib

import pytest

from test_launch import CONFIG, ROOT, LaunchFile, console_scripts, yaml_sections

LAUNCH = ROOT / "launch" / "stereo.launch.py"


@pytest.fixture(scope="module")
def params():
    pytest.importorskip("rclpy", reason="the node parameter table imports rclpy message types")
    module = importlib.import_module("muon_ad_ros.nodes.stereo_stylize_node")
    return {spec.name: spec for spec in module.PARAMS}


def test_launch_file_builds_with_the_real_launch_api():
    # not importorskip("launch"): run from the repository root, its launch/ folder imports as a namespace package
    sources = pytest.importorskip("launch.launch_description_sources", reason="ROS 2 launch is not installed")
    get_launch_description_from_python_launch_file = sources.get_launch_description_from_python_launch_file

    description = get_launch_description_from_python_launch_file(str(LAUNCH))
    names = {a.name for a in description.get_launch_arguments()}
    assert {"params_file", "model", "mode", "side_by_side", "left_input", "right_input"} <= names


def test_node_entry_point_overrides_and_remaps_are_declared(params):
    lf = LaunchFile(LAUNCH)
    (node,) = lf.calls_of("Node")
    kw = lf.kwargs(node)
    module, func = console_scripts()[lf.value(kw["executable"])].split(":")
    assert hasattr(importlib.import_module(module), func)
    overrides = [d for d in kw["parameters"].elts if isinstance(d, ast.Dict)]
    for key in (lf.value(k) for d in overrides for k in d.keys):
        assert key in params, f"launch overrides undeclared parameter {key!r}"
    topics = {spec.default for spec in params.values()}
    for pair in kw["remappings"].elts:
        assert lf.value(pair.elts[0]) in topics


def test_yaml_holds_every_parameter_with_a_valid_value(params):
    values = yaml_sections(CONFIG / "stereo.yaml")["stereo_stylize_node"]
    assert set(values) == set(params)
    for key, value in values.items():
        assert params[key].validate(value) is None, key


def test_docs_describe_every_parameter(params):
    docs = (ROOT / "docs" / "ros.md").read_text()
    section = docs[docs.index("## stereo_stylize_node"):]
    for name in params:
        assert f"`{name}`" in section, f"docs/ros.md does not describe stereo_stylize_node's {name}"
