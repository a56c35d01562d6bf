"""The architecture rule: nothing outside muon_ad_ros/nodes imports rclpy.

The core runs on machines without ROS (training boxes, CI, ``muon-ad`` on a laptop), so every
module under muon_ad_ros/ except nodes/ is imported in a fresh interpreter and must leave rclpy
out of sys.modules; a static scan also catches imports hidden in functions that the import does
not execute.
"""
import ast
import json
import subprocess
import sys
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parents[1] / "muon_ad_ros"
NODES_DIR = PACKAGE_DIR / "nodes"


def core_modules():
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        if NODES_DIR in path.parents or "__pycache__" in path.parts:
            continue
        rel = path.relative_to(PACKAGE_DIR.parent).with_suffix("")
        parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
        yield ".".join(parts), path


def rclpy_imports(path: Path, top_level_only: bool):
    """Line numbers of `import rclpy...` / `from rclpy... import` in a file."""
    tree = ast.parse(path.read_text(), filename=str(path))
    nodes = tree.body if top_level_only else ast.walk(tree)
    found = []
    for node in nodes:
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module]
        if any(n == "rclpy" or n.startswith("rclpy.") for n in names):
            found.append(node.lineno)
    return found


def test_there_are_core_modules_to_check():
    names = [name for name, _ in core_modules()]
    assert "muon_ad_ros.core.stylizer" in names and "muon_ad_ros.core.rolling_stats" in names
    assert not any(name.startswith("muon_ad_ros.nodes") for name in names)


def test_no_core_file_imports_rclpy():
    offenders = {}
    for name, path in core_modules():
        lines = rclpy_imports(path, top_level_only=False)
        if lines:
            offenders[name] = lines
    assert not offenders, f"rclpy imported outside muon_ad_ros/nodes: {offenders}"


def test_importing_every_core_module_leaves_rclpy_unloaded():
    names = [name for name, _ in core_modules()]
    script = (
        "import importlib, json, sys\n"
        f"names = {names!r}\n"
        "failed = {}\n"
        "for n in names:\n"
        "    try:\n"
        "        importlib.import_module(n)\n"
        "    except ImportError as e:\n"
        "        failed[n] = str(e)\n"
        "print(json.dumps({'rclpy': sorted(m for m in sys.modules if m == 'rclpy' or m.startswith('rclpy.')),"
        " 'failed': failed}))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    # A module whose optional dependency is absent (e.g. tensorrt) may fail to import, but only
    # for that reason: it must not be rclpy that is missing or loaded.
    assert all("rclpy" not in msg for msg in result["failed"].values()), result["failed"]
    assert result["rclpy"] == [], f"importing the core loaded {result['rclpy']}"


def test_the_scan_would_catch_an_rclpy_import(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("import os\n\ndef f():\n    from rclpy.node import Node\n    return Node\n")
    assert rclpy_imports(bad, top_level_only=False) == [4]
    assert rclpy_imports(bad, top_level_only=True) == []
