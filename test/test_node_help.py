"""``<node> --help`` prints usage and the parameter table and exits 0 without starting the node
(issue 14 item 9: stylize_node --help used to start the node)."""
import importlib
import subprocess
import sys

import pytest

pytest.importorskip("rclpy", reason="rclpy (ROS 2) is not installed")

NODES = ["stylize_node", "stereo_stylize_node", "stylize_lifecycle_node", "image_source_node", "recorder_node",
         "texture_node"]


def test_stylize_node_help_from_the_command_line():
    proc = subprocess.run([sys.executable, "-m", "muon_ad_ros.nodes.stylize_node", "--help"], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("usage: ros2 run muon_ad_ros stylize_node")
    assert "max_input_pixels" in proc.stdout
    assert "[INFO]" not in proc.stdout + proc.stderr and "Traceback" not in proc.stderr   # no node started


@pytest.mark.parametrize("node", NODES)
@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_every_node_main_prints_its_parameters_and_returns_0(node, flag, capsys):
    module = importlib.import_module(f"muon_ad_ros.nodes.{node}")
    assert module.main([flag]) == 0          # returns before rclpy.init: no node, no DDS
    out = capsys.readouterr().out
    assert out.startswith(f"usage: ros2 run muon_ad_ros {node}")
    for spec in module.PARAMS:
        assert f"  {spec.name} " in out, spec.name


def test_help_after_ros_args_is_not_ours():
    from muon_ad_ros.nodes.params import print_help_if_asked
    from muon_ad_ros.nodes.stylize_node import PARAMS

    assert not print_help_if_asked("stylize_node", "", PARAMS, ["--ros-args", "-p", "style:=--help"])
    assert not print_help_if_asked("stylize_node", "", PARAMS, [])


def test_texture_node_without_its_interfaces_is_one_line_and_status_2():
    """A checkout where interfaces/build.sh could not run (no cmake or compiler): texture_node says so."""
    code = ("import sys; sys.modules['muon_ad_interfaces'] = None; "  # an import of it now fails
            "from muon_ad_ros.nodes.texture_node import main; sys.exit(main([]))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "muon_ad_interfaces package is not built" in proc.stderr and "make interfaces" in proc.stderr
    assert "Traceback" not in proc.stderr
