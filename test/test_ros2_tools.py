"""The package under the real ROS 2 tools, as a user runs it: ``colcon build`` in a workspace, then
``ros2 launch`` / ``ros2 run`` / ``ros2 topic`` / ``ros2 param`` from a default shell.

"Default shell": every command runs through ``bash -c 'source install/setup.bash && ...'`` with
the test's environment minus any FASTDDS_* variable, so the launch file must bring its own
transport and the CLI must reach the nodes without one. Only ROS_DOMAIN_ID is set, to keep this
run apart from others on the machine. The launch runs in its own process group, as a terminal's
foreground job, and Ctrl-C is a SIGINT to that whole group.

Needs launch, launch_ros, the ros2 CLI and colcon in this Python environment: ``make test``
installs them from ../shared/ros2-tools (not on PyPI) when that folder is there.
"""
from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from _ros_helpers import random_domain_id

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
EXECUTABLES = {"stylize_node", "stylize_lifecycle_node", "image_source_node", "recorder_node", "texture_node",
               "muon-ad", "muon-ad-train"}
CLEAN_STOP = re.compile(r"Traceback|KeyboardInterrupt|RCLError|context is invalid|failed", re.I)

pytestmark = [
    pytest.mark.skipif(not ((BIN / "ros2").exists() and (BIN / "colcon").exists()),
                       reason="the ros2 CLI / launch / colcon are not installed in this environment "
                              "(`make test` installs them from ../shared/ros2-tools when it is there)"),
    pytest.mark.timeout(300),
]


def user_env(domain: int) -> dict:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("FASTDDS_") and k not in ("ROS_AUTOMATIC_DISCOVERY_RANGE", "AMENT_PREFIX_PATH")}
    env.update(ROS_DOMAIN_ID=str(domain), PYTHONUNBUFFERED="1", RCUTILS_LOGGING_BUFFERED_STREAM="0",
               PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}")
    return env


class Workspace:
    """A colcon workspace with this repository under src/, built once for the module."""

    def __init__(self, path: Path):
        self.path = path
        (path / "src").mkdir(parents=True)
        (path / "src" / "muon_ad_ros").symlink_to(ROOT)
        self.domain = random_domain_id()
        self.env = user_env(self.domain)
        self.build = subprocess.run(["colcon", "build", "--packages-select", "muon_ad_ros"], cwd=path,
                                    env=self.env, capture_output=True, text=True, timeout=240)
        self.install = path / "install" / "muon_ad_ros"

    def shell(self, command: str) -> list[str]:
        """The command as a user runs it after sourcing the workspace (the venv holds the ROS wheels)."""
        return ["bash", "-c", f"source {shlex.quote(str(self.path / 'install' / 'setup.bash'))} && "
                              f"export AMENT_PREFIX_PATH=\"$AMENT_PREFIX_PATH:{sys.prefix}\" && exec {command}"]

    def run(self, command: str, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run(self.shell(command), env=self.env, capture_output=True, text=True, timeout=timeout)


class Launch:
    """``ros2 launch`` in its own session (a terminal's foreground process group); output in a file."""

    def __init__(self, ws: Workspace, arguments: str, log: Path, launch_file: str = "stylize.launch.py"):
        self.log_path = log
        self._log = open(log, "w")
        self.proc = subprocess.Popen(ws.shell(f"ros2 launch muon_ad_ros {launch_file} {arguments}"),
                                     env=ws.env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for(self, pattern: str, timeout: float) -> re.Match | None:
        end = time.monotonic() + timeout
        while time.monotonic() < end and self.proc.poll() is None:
            found = re.search(pattern, self.log())
            if found:
                return found
            time.sleep(0.2)
        return re.search(pattern, self.log())

    def node_pids(self) -> list[int]:
        return [int(p) for p in re.findall(r"process started with pid \[(\d+)\]", self.log())]

    def stop(self) -> None:
        """Whatever a test left running: SIGINT to the group, then SIGKILL."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGINT)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        for pid in self.node_pids():
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
        self._log.close()


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}").exists() and "(Z" not in Path(f"/proc/{pid}/stat").read_text().split(")")[-1][:3]


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    workspace = Workspace(tmp_path_factory.mktemp("colcon_ws"))
    assert workspace.build.returncode == 0, workspace.build.stdout[-3000:] + workspace.build.stderr[-3000:]
    yield workspace
    subprocess.run(workspace.shell("ros2 daemon stop"), env=workspace.env, capture_output=True, timeout=30)


@pytest.fixture(scope="module")
def launched(ws, tmp_path_factory):
    """The pipeline launched with remapped topics, a params file of the user's and the source at 30 Hz."""
    tmp = tmp_path_factory.mktemp("launch")
    params = tmp / "my_params.yaml"
    params.write_text("stylize_node:\n  ros__parameters:\n    strength: 0.6\n    style: the_scream\n"
                      "    max_side: 320\n")
    launch = Launch(ws, f"start_source:=true source_rate:=30.0 input_topic:=/cam/image_raw "
                        f"output_topic:=/cam/stylized/image_raw params_file:={params}", tmp / "launch.log")
    try:
        started = launch.wait_for(r"\[stylize_node\]: ready .*", 120)
        assert started, launch.log()
        yield launch
    finally:
        launch.stop()


def test_colcon_installs_an_ament_package(ws):
    assert (ws.path / "install" / "share" / "ament_index" / "resource_index" / "packages" / "muon_ad_ros").exists() or \
        (ws.install / "share" / "ament_index" / "resource_index" / "packages" / "muon_ad_ros").exists()
    assert {p.name for p in (ws.install / "lib" / "muon_ad_ros").iterdir()} >= EXECUTABLES
    share = ws.install / "share" / "muon_ad_ros"
    for f in ("package.xml", "launch/stylize.launch.py", "config/stylize.yaml", "config/fastdds_images.xml",
              "launch/texture.launch.py", "config/texture.yaml"):
        assert (share / f).is_file(), f
    listed = ws.run("ros2 pkg executables muon_ad_ros")
    assert listed.returncode == 0, listed.stderr
    assert {line.split()[1] for line in listed.stdout.splitlines()} >= EXECUTABLES


def test_ros2_run_muon_ad_info(ws):
    result = ws.run("ros2 run muon_ad_ros muon-ad info")
    assert result.returncode == 0, result.stderr
    default_model = (ROOT / "models" / "default.txt").read_text().strip()
    assert re.search(rf"^model\s+{default_model}$", result.stdout, re.M), result.stdout
    assert "styles" in result.stdout and str(ws.install) in result.stdout  # the installed copy answered


def test_launch_applies_arguments_and_remaps(launched):
    log = launched.log()
    # remapped topics (camera info follows the remapped bases), the params file's strength and style
    assert "/cam/image_raw (raw, best_effort) -> /cam/stylized/image_raw" in log, log
    assert "camera info /cam/camera_info -> /cam/stylized/camera_info" in log, log
    assert "style the_scream, strength 0.6" in log, log
    assert launched.wait_for(r"\[image_source_node\]: publishing .* on /cam/image_raw at 30 Hz", 30), launched.log()


def hz(ws: Workspace, topics: list[str], seconds: float = 8.0) -> dict:
    """``ros2 topic hz`` from a default shell: {topic: the last rate it printed within ``seconds``}."""
    proc = subprocess.Popen(ws.shell("ros2 topic hz --window 30 " + " ".join(topics)), env=ws.env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=seconds)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGINT)
        out, _ = proc.communicate(timeout=10)
    rates = {topic: float(rate) for topic, rate in re.findall(r"^(/\S+)\s+([\d.]+)\s", out, re.M)}
    assert set(rates) == set(topics), f"ros2 topic hz did not see every topic:\n{out}"
    return rates


def test_frames_reach_the_cli_from_a_default_shell(launched, ws):
    """A subscriber in a default shell gets the launched nodes' 640x480 frames and the stylized
    ones. The source publishes 30 Hz; with Fast DDS's default transports under a tenth of such
    frames arrive (bench/bench_transport.py: 5-24 of 300), so more than a fifth tells the image
    profile is working even on a machine too loaded to render all 30 (it measured 27 Hz here, 13 Hz
    at a load average of 14 on 2 cores). The exact loss figures are the benchmark's job."""
    rates = hz(ws, ["/cam/image_raw", "/cam/stylized/image_raw"])
    assert rates["/cam/image_raw"] > 30.0 / 5 and rates["/cam/stylized/image_raw"] > 0.0, rates


def param(ws: Workspace, *args: str, discovery_s: float = 15.0) -> subprocess.CompletedProcess:
    """``ros2 param ...``; a fresh CLI process may not have discovered the node yet (DDS discovery is
    asynchronous), so "Node not found" is retried for up to ``discovery_s``."""
    end = time.monotonic() + discovery_s
    while True:
        done = ws.run("ros2 param " + " ".join(shlex.quote(a) for a in args))
        if "Node not found" not in done.stderr or time.monotonic() > end:
            return done
        time.sleep(1.0)


def test_param_get_and_set_from_a_default_shell(launched, ws):
    got = param(ws, "get", "/stylize_node", "strength")
    assert got.returncode == 0 and "Double value is: 0.6" in got.stdout, got.stdout + got.stderr
    got = param(ws, "get", "/image_source_node", "rate")
    assert "Double value is: 30.0" in got.stdout, got.stdout + got.stderr
    done = param(ws, "set", "/stylize_node", "style", "leopard")
    assert "Set parameter successful" in done.stdout, done.stdout + done.stderr
    assert "String value is: leopard" in param(ws, "get", "/stylize_node", "style").stdout
    refused = param(ws, "set", "/stylize_node", "strength", "2.0")
    assert "Setting parameter failed" in refused.stdout + refused.stderr, refused
    assert "Double value is: 0.6" in param(ws, "get", "/stylize_node", "strength").stdout
    assert launched.wait_for(r"style -> 'leopard'", 10), launched.log()


def test_ctrl_c_ends_everything_cleanly(launched):
    pids = launched.node_pids()
    assert len(pids) == 2 and all(alive(p) for p in pids), launched.log()
    t0 = time.monotonic()
    os.killpg(launched.proc.pid, signal.SIGINT)          # a terminal's Ctrl-C: the whole group
    code = launched.proc.wait(10)
    took = time.monotonic() - t0
    log = launched.log()
    assert code == 0, log
    assert took < 3.0, f"launch took {took:.1f} s to end\n{log}"
    assert not [p for p in pids if alive(p)], log
    assert log.count("process has finished cleanly") == 2, log
    assert not CLEAN_STOP.search(log), log


def test_a_failed_required_node_ends_the_launch(ws, tmp_path):
    launch = Launch(ws, "start_source:=true backend:=nope", tmp_path / "launch.log")
    try:
        code = launch.proc.wait(90)
        log = launch.log()
        assert code != 0, log
        assert "stylize_node-1 exited with status 2" in log and "backend must be one of" in log, log
        assert not [p for p in launch.node_pids() if alive(p)], log   # the image source was stopped too
    finally:
        launch.stop()


def test_texture_launch_serves_the_action_with_its_params(ws, tmp_path):
    pytest.importorskip("muon_ad_interfaces.action", reason="muon_ad_interfaces is not built "
                        "(interfaces/build.sh needs cmake, make and a C compiler)")
    launch = Launch(ws, "threads:=2", tmp_path / "launch.log", launch_file="texture.launch.py")
    try:
        assert launch.wait_for(r"serving the SynthesizeTexture action on /synthesize_texture", 120), launch.log()
        got = param(ws, "get", "/texture_node", "threads")
        assert "Integer value is: 2" in got.stdout, got.stdout + got.stderr      # the launch argument
        got = param(ws, "get", "/texture_node", "max_seconds")
        assert "Double value is: 300.0" in got.stdout, got.stdout + got.stderr  # config/texture.yaml
        services = ws.run("ros2 service list --include-hidden-services")
        assert "/synthesize_texture/_action/send_goal" in services.stdout, services.stdout + services.stderr
        os.killpg(launch.proc.pid, signal.SIGINT)
        assert launch.proc.wait(10) == 0, launch.log()
        assert not CLEAN_STOP.search(launch.log()), launch.log()
    finally:
        launch.stop()
