"""launch/stylize.launch.py and the YAML configs.

The launch file is written against the real launch / launch_ros API; test_ros2_tools.py runs it
with the real ``ros2 launch`` (when ../shared/ros2-tools is installed). The static checks here need
no launch install: it names existing entry points, config files and declared parameters. The
YAML files are checked against the nodes' parameter tables, and stylize.yaml is loaded by a real
node with ``--params-file`` as a user without launch would.
"""
import ast
import importlib
import importlib.util
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
LAUNCH = ROOT / "launch" / "stylize.launch.py"
CONFIG = ROOT / "config"
NODE_MODULES = {"stylize_node": "muon_ad_ros.nodes.stylize_node",
                "image_source_node": "muon_ad_ros.nodes.image_source_node",
                "recorder_node": "muon_ad_ros.nodes.recorder_node"}


def console_scripts():
    """{name: 'module:function'} from setup.py's entry_points."""
    text = (ROOT / "setup.py").read_text()
    return dict(re.findall(r'"([\w-]+)\s*=\s*([\w.]+:\w+)"', text))


def node_params(executable):
    pytest.importorskip("rclpy", reason="the node parameter tables import rclpy message types")
    module = importlib.import_module(NODE_MODULES[executable])
    return {spec.name: spec for spec in module.PARAMS}


class LaunchFile:
    """What the launch file declares and uses, read with ast (no launch import needed)."""

    def __init__(self, path):
        self.tree = ast.parse(path.read_text(), filename=str(path))
        self.constants = {t.id: n.value.value for n in self.tree.body if isinstance(n, ast.Assign)
                          for t in n.targets if isinstance(t, ast.Name) and isinstance(n.value, ast.Constant)}
        self.calls = [n for n in ast.walk(self.tree)
                      if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)]

    def value(self, node):
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.Name) and node.id in self.constants:
            return self.constants[node.id]
        return node

    def calls_of(self, name):
        return [c for c in self.calls if c.func.id == name]

    def kwargs(self, call):
        return {k.arg: k.value for k in call.keywords}

    def imports(self):
        return {(n.module, a.name) for n in ast.walk(self.tree)
                if isinstance(n, ast.ImportFrom) for a in n.names}


@pytest.fixture(scope="module")
def launch_file():
    return LaunchFile(LAUNCH)


def test_launch_file_uses_the_real_launch_api(launch_file):
    imports = launch_file.imports()
    for needed in [("launch", "LaunchDescription"), ("launch.actions", "DeclareLaunchArgument"),
                   ("launch.actions", "SetEnvironmentVariable"), ("launch_ros.actions", "Node"),
                   ("launch.substitutions", "LaunchConfiguration")]:
        assert needed in imports, needed
    assert any(isinstance(n, ast.FunctionDef) and n.name == "generate_launch_description"
               for n in launch_file.tree.body)


def test_every_used_launch_argument_is_declared(launch_file):
    declared = {launch_file.value(c.args[0]) for c in launch_file.calls_of("DeclareLaunchArgument")}
    used = {launch_file.value(c.args[0]) for c in launch_file.calls_of("LaunchConfiguration")}
    assert used <= declared, f"used but not declared: {used - declared}"
    for required in ("params_file", "model", "backend", "input_topic", "output_topic", "start_source"):
        assert required in declared


def test_nodes_name_existing_entry_points_and_declared_parameters(launch_file):
    scripts = console_scripts()
    nodes = launch_file.calls_of("Node")
    executables = {launch_file.value(launch_file.kwargs(n)["executable"]) for n in nodes}
    assert executables == {"stylize_node", "image_source_node"}
    for node in nodes:
        kw = launch_file.kwargs(node)
        assert launch_file.value(kw["package"]) == "muon_ad_ros"
        executable = launch_file.value(kw["executable"])
        module, func = scripts[executable].split(":")
        assert hasattr(importlib.import_module(module), func), scripts[executable]
        params = node_params(executable)
        overrides = [d for d in kw["parameters"].elts if isinstance(d, ast.Dict)]
        for key in (launch_file.value(k) for d in overrides for k in d.keys):
            assert key in params, f"{executable}: launch overrides undeclared parameter {key!r}"
        for pair in kw["remappings"].elts:
            src = launch_file.value(pair.elts[0])
            topics = {spec.default for spec in params.values()}
            assert src in topics, f"remaps {src!r}, not a topic of the node"


def test_params_file_default_exists_and_is_installed(launch_file):
    joins = launch_file.calls_of("PathJoinSubstitution")
    parts = [[launch_file.value(e) for e in j.args[0].elts] for j in joins]
    config_paths = [p[1:] for p in parts if p[0] != "" and all(isinstance(x, str) for x in p[1:])]
    assert ["config", "stylize.yaml"] in config_paths
    assert (CONFIG / "stylize.yaml").is_file()
    setup = (ROOT / "setup.py").read_text()
    assert 'tree("config")' in setup and 'tree("launch")' in setup       # installed to share/muon_ad_ros


def test_launch_gives_its_nodes_the_image_profile_before_the_nodes(launch_file):
    """Default: the Fast DDS profile (shared memory + UDP sized for images, docs/ros.md); the
    builtin transports (LARGE_DATA) only when asked for, and then without the profile."""
    env_calls = launch_file.calls_of("SetEnvironmentVariable")
    assert sorted(launch_file.value(c.args[0]) for c in env_calls) == [
        "FASTDDS_BUILTIN_TRANSPORTS", "FASTDDS_DEFAULT_PROFILES_FILE"]
    args = {launch_file.value(c.args[0]): c for c in launch_file.calls_of("DeclareLaunchArgument")}
    assert "fastdds_images.xml" in ast.unparse(launch_file.kwargs(args["dds_profile"])["default_value"])
    builtin_default = ast.unparse(launch_file.kwargs(args["fastdds_builtin_transports"])["default_value"])
    assert "LARGE_DATA" not in builtin_default
    ret = next(n for n in ast.walk(launch_file.tree) if isinstance(n, ast.Return)
               and "LaunchDescription" in ast.unparse(n))
    order = [n.id for n in ast.walk(ret) if isinstance(n, ast.Name)]
    assert order.index("transports") < order.index("stylize") < order.index("source")


def test_image_profile_keeps_the_default_transport_kinds_with_room_for_images():
    """SHM + UDPv4 like Fast DDS's default (so a tool in a default shell reaches the nodes), with a
    shared-memory segment that holds several 640x480 rgb8 frames (the default 512 KiB holds none)."""
    import xml.etree.ElementTree as ET

    ns = {"d": "http://www.eprosima.com"}
    root = ET.parse(CONFIG / "fastdds_images.xml").getroot()
    kinds = {t.findtext("d:transport_id", namespaces=ns): t for t in root.iterfind(".//d:transport_descriptor", ns)}
    participant = root.find(".//d:participant", ns)
    assert participant.get("is_default_profile") == "true"
    used = [e.text for e in participant.iterfind("d:rtps/d:userTransports/d:transport_id", ns)]
    assert sorted(kinds[t].findtext("d:type", namespaces=ns) for t in used) == ["SHM", "UDPv4"]
    assert participant.findtext("d:rtps/d:useBuiltinTransports", namespaces=ns) == "false"
    shm = next(kinds[t] for t in used if kinds[t].findtext("d:type", namespaces=ns) == "SHM")
    assert int(shm.findtext("d:segment_size", namespaces=ns)) >= 8 * 640 * 480 * 3


def test_source_node_is_optional(launch_file):
    source = next(n for n in launch_file.calls_of("Node")
                  if launch_file.value(launch_file.kwargs(n)["executable"]) == "image_source_node")
    condition = launch_file.kwargs(source)["condition"]
    assert "IfCondition" in ast.unparse(condition) and "start_source" in ast.unparse(condition)


# ------------------------------------------------------------------------------------------------
# YAML configs


def yaml_sections(path):
    """{node name: ros__parameters} of a params file (keys may carry a /** namespace wildcard)."""
    data = yaml.safe_load(path.read_text())
    return {key.rsplit("/", 1)[-1]: value["ros__parameters"] for key, value in data.items()}


@pytest.mark.parametrize("config", ["stylize.yaml", "demo.yaml"])
def test_config_keys_are_declared_parameters_with_valid_values(config):
    sections = yaml_sections(CONFIG / config)
    assert sections
    for node, values in sections.items():
        params = node_params(node)
        for key, value in values.items():
            assert key in params, f"{config}: {node} has no parameter {key!r}"
            problem = params[key].validate(value)
            assert problem is None, f"{config}: {node}.{key}: {problem}"


def test_stylize_yaml_lists_every_parameter():
    values = yaml_sections(CONFIG / "stylize.yaml")["stylize_node"]
    assert set(values) == set(node_params("stylize_node")), "config/stylize.yaml should hold every default"


def test_docs_describe_every_parameter():
    docs = (ROOT / "docs" / "ros.md").read_text()
    for executable in NODE_MODULES:
        for name in node_params(executable):
            assert f"`{name}`" in docs, f"docs/ros.md does not describe {executable}'s {name}"


@pytest.mark.timeout(120)
def test_the_same_yaml_runs_the_node_without_launch():
    """``--params-file config/stylize.yaml`` on a plain node process, in a namespace (the /**
    wildcard must match it): every parameter takes the file's value."""
    pytest.importorskip("rclpy", reason="rclpy (ROS 2) is not installed")
    from _ros_helpers import NodeProcess, RosTestNode, random_domain_id, ros_env
    from rclpy.parameter import parameter_value_to_python
    from rclpy.parameter_client import AsyncParameterClient

    values = yaml_sections(CONFIG / "stylize.yaml")["stylize_node"]
    domain = random_domain_id()
    proc = NodeProcess("muon_ad_ros.nodes.stylize_node",
                       ["-r", "__ns:=/robot", "--params-file", str(CONFIG / "stylize.yaml")], ros_env(domain))
    ros = RosTestNode(domain, "yaml_check")
    try:
        client = AsyncParameterClient(ros.node, "/robot/stylize_node")
        assert ros.spin_until(client.services_are_ready, 60.0), proc.log()
        names = sorted(values)
        reply = ros.wait_future(client.get_parameters(names))
        got = {n: parameter_value_to_python(v) for n, v in zip(names, reply.values)}
        assert got == values
        assert proc.alive()
    finally:
        ros.close()
        proc.stop()
        proc.cleanup()
