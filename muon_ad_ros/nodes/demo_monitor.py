"""The demo runner's own ROS node: follows the stylizer's diagnostics and switches its style.

Part of the node layer because it is rclpy; ``muon_ad_ros.demo`` imports it only when the demo runs.
"""
from __future__ import annotations

import time

import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.executors import SingleThreadedExecutor
from rclpy.parameter import Parameter
from rclpy.parameter_client import AsyncParameterClient
from rclpy.signals import SignalHandlerOptions

from muon_ad_ros.nodes.shutdown import teardown_within


class Monitor:
    """The demo's own ROS node: reads the stylizer's diagnostics and sets its style parameter."""

    def __init__(self):
        self.context = rclpy.Context()
        # Ctrl-C stays a plain KeyboardInterrupt (rclpy's handler would shut this context down first).
        rclpy.init(args=[], context=self.context, signal_handler_options=SignalHandlerOptions.NO)
        self.node = rclpy.create_node("muon_ad_demo", context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.diagnostics: dict = {}   # stylize_node's latest status values
        self.recorder: dict = {}      # recorder_node's
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, 10)
        self.params = AsyncParameterClient(self.node, "stylize_node")

    def _on_diagnostics(self, msg) -> None:
        for status in msg.status:
            if status.name.startswith("/stylize_node:"):
                self.diagnostics = {kv.key: kv.value for kv in status.values}
            elif status.name.startswith("/recorder_node:"):
                self.recorder = {kv.key: kv.value for kv in status.values}

    def spin_for(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.executor.spin_once(timeout_sec=min(0.1, max(0.0, end - time.monotonic())))

    def flowing(self) -> bool:
        """Stylized frames are reaching the recorder (so it also follows the style parameter)."""
        return int(self.diagnostics.get("frames_out", "0")) > 0 and int(self.recorder.get("frames", "0")) > 0

    def set_style(self, style: str, timeout: float = 10.0) -> str | None:
        """Set stylize_node's ``style``; None on success, else the reason."""
        future = self.params.set_parameters([Parameter("style", value=style)])
        self.executor.spin_until_future_complete(future, timeout_sec=timeout)
        if not future.done() or future.result() is None:
            return "no answer from stylize_node's parameter service"
        result = future.result().results[0]
        return None if result.successful else result.reason

    def close(self, deadline_s: float = 5.0) -> None:
        """Tear down within ``deadline_s`` (see ``shutdown.teardown_within``); the demo's work is done."""
        teardown_within(self.executor, self.node, self.context, deadline_s)
