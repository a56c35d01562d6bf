"""Helpers for tests that talk to real node processes over DDS.

Every test run gets its own ROS_DOMAIN_ID (so helpers testing at the same time on this machine do
not hear each other) and the transport the demo and the launch file give their nodes
(demo.dds_environment: the Fast DDS profile config/fastdds_images.xml, so big frames arrive). Node
processes are started with ``python -m`` and always stopped, by their own pid, in ``finally``.
"""
from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def ros_env(domain_id: int) -> dict:
    from muon_ad_ros.demo import dds_environment

    env = dds_environment(domain_id)
    env.update({"PYTHONUNBUFFERED": "1", "RCUTILS_LOGGING_BUFFERED_STREAM": "0"})
    env.pop("ROS_AUTOMATIC_DISCOVERY_RANGE", None)
    return env


def random_domain_id() -> int:
    return random.SystemRandom().randint(100, 199)


class NodeProcess:
    """One node in its own process; its output goes to a log file readable with ``log()``."""

    def __init__(self, module: str, ros_args: list[str], env: dict, cwd: Path = ROOT):
        self._log = tempfile.NamedTemporaryFile(prefix=module.rsplit(".", 1)[-1] + "_", suffix=".log",
                                                delete=False)
        self.cmd = [sys.executable, "-m", module, "--ros-args", *ros_args]
        self.proc = subprocess.Popen(self.cmd, env=env, cwd=cwd, stdout=self._log, stderr=subprocess.STDOUT)

    def log(self) -> str:
        return Path(self._log.name).read_text(errors="replace")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout: float = 10.0) -> int:
        """SIGINT (a clean ROS shutdown), then SIGKILL if it does not exit in time."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()
        return self.proc.returncode

    def cleanup(self) -> None:
        try:
            os.unlink(self._log.name)
        except OSError:
            pass


@contextmanager
def node_processes(*specs, env: dict):
    """Start several (module, ros_args) nodes; stop them all whatever happens."""
    procs = []
    try:
        for module, args in specs:
            procs.append(NodeProcess(module, args, env))
        yield procs
    finally:
        for p in procs:
            p.stop()
        for p in procs:
            p.cleanup()


class RosTestNode:
    """An rclpy node in the test process, in its own context on the test's domain."""

    def __init__(self, domain_id: int, name: str = "muon_ad_test"):
        import rclpy
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.signals import SignalHandlerOptions

        from muon_ad_ros.demo import TRANSPORT_VARIABLES

        env = ros_env(domain_id)  # read when the participant is created
        os.environ.update({k: env[k] for k in TRANSPORT_VARIABLES if env.get(k)})
        self.rclpy = rclpy
        self.context = rclpy.Context()
        rclpy.init(args=[], context=self.context, domain_id=domain_id,
                   signal_handler_options=SignalHandlerOptions.NO)
        self.node = rclpy.create_node(name, context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)

    def spin_until(self, predicate, timeout: float, poll: float = 0.05) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if predicate():
                return True
            self.executor.spin_once(timeout_sec=poll)
        return bool(predicate())

    def spin_for(self, seconds: float) -> None:
        self.spin_until(lambda: False, seconds)

    def wait_future(self, future, timeout: float = 10.0):
        self.executor.spin_until_future_complete(future, timeout_sec=timeout)
        assert future.done(), "no answer within the timeout"
        return future.result()

    def close(self, deadline_s: float = 10.0) -> None:
        """Tear down within ``deadline_s``: a test must not hang on Fast DDS's teardown."""
        from muon_ad_ros.nodes.shutdown import teardown_within

        teardown_within(self.executor, self.node, self.context, deadline_s)
