"""package.xml names only rosdep keys and ROS packages that exist, so `rosdep install` resolves.

The reference is a small list vendored from ros/rosdistro (test/data/rosdep_keys.yaml names the
commit): `rosdep install` fails on the first unknown key, which is what happened with the former
`ament_python`, `python3-onnx-pip`, `python3-torch-pip` and `python3-safetensors-pip`.
"""
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
KEYS = yaml.safe_load((ROOT / "test" / "data" / "rosdep_keys.yaml").read_text())
DEPEND_TAGS = ("depend", "build_depend", "buildtool_depend", "exec_depend", "test_depend",
               "build_export_depend", "buildtool_export_depend", "doc_depend")


def package_depends(path: Path = ROOT / "package.xml"):
    root = ET.parse(path).getroot()
    return [(el.tag, el.text.strip()) for tag in DEPEND_TAGS for el in root.iter(tag)]


def workspace_packages() -> dict:
    """The ROS packages this repository also holds (interfaces/*/package.xml): `rosdep install
    --from-paths` resolves them from the workspace, not from the database."""
    return {ET.parse(p).getroot().findtext("name"): p for p in sorted(ROOT.glob("interfaces/*/package.xml"))}


def install_requires():
    text = (ROOT / "setup.py").read_text()
    block = re.search(r"install_requires=\[(.*?)\]", text, re.S).group(1)
    return [re.split(r"[<>=!~\[]", name)[0] for name in re.findall(r'"([^"]+)"', block)]


def test_every_depend_is_a_rosdep_key_or_a_ros_package():
    known = set(KEYS["system_keys"]) | set(KEYS["ros_packages"])
    workspace = workspace_packages()
    assert "muon_ad_interfaces" in workspace
    for path in [ROOT / "package.xml", *workspace.values()]:
        depends = package_depends(path)
        assert depends
        unknown = [(tag, name) for tag, name in depends if name not in known | set(workspace)]
        assert not unknown, f"{path.relative_to(ROOT)}: not in rosdistro's rosdep database / distribution " \
                            f"(rosdistro {KEYS['rosdistro_commit'][:12]}) nor in this repository: {unknown}"


def test_the_vendored_list_rejects_what_rosdep_rejected():
    known = set(KEYS["system_keys"]) | set(KEYS["ros_packages"])
    assert not known & set(KEYS["not_keys"])
    assert "ament_python" in KEYS["not_keys"]


def test_every_runtime_requirement_is_a_key_or_in_the_readme_pip_line():
    """A robot install gets each install_requires package from rosdep, else from the README's pip line."""
    exec_depends = {name for tag, name in package_depends() if tag in ("depend", "exec_depend")}
    readme = (ROOT / "README.md").read_text()
    robot = readme[readme.index("**On a robot"):readme.index("**On a plain machine")]
    pip_line = next(line for line in robot.splitlines() if line.startswith("pip install"))
    pip_names = {re.split(r"[<>=]", word)[0] for word in pip_line.split("#")[0].split()[2:]}
    for name in install_requires():
        if name == "setuptools":
            continue
        assert name in KEYS["pypi"], f"{name}: add its rosdep key (or null) to test/data/rosdep_keys.yaml"
        key = KEYS["pypi"][name]
        if key is None:
            assert name in pip_names, f"{name} has no rosdep key: the README's robot pip line must install it"
        else:
            assert key in exec_depends, f"{name}: package.xml lacks <exec_depend>{key}</exec_depend>"
