"""texture_node: the SynthesizeTexture action, a new seamless texture from an exemplar image.

For digital-twin pipelines that need a surface texture (concrete, rust, wood, painted metal) from a
small photo of the real surface: a goal carries the exemplar (sensor_msgs/Image), the output size,
whether it must tile, a seed and a time cap; the node runs muon_ad_training.texture.synthesize
(docs/textures.md; 512x512 takes about 3 min on one CPU core), publishes feedback after every
optimisation step and returns the texture as an rgb8 Image with the exemplar's header.

One synthesis at a time: it takes the CPU for minutes, so a goal that arrives while one runs is
rejected (the client may retry) rather than queued behind it. A cancel request stops the synthesis
between two steps. A bad goal (an unsupported or inconsistent encoding, an exemplar under 16x16 or
over max_side, an output size out of range) ends aborted with a one-line message in the result, and
the node goes on serving. Counts go to /diagnostics once a second.
"""
from __future__ import annotations

import threading
import time

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rclpy.action import ActionServer, CancelResponse, GoalResponse
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.executors import MultiThreadedExecutor
from rclpy.node import Node

from muon_ad_ros.core.errors import ConfigError, MuonAdError
from muon_ad_ros.nodes import conversions as conv
from muon_ad_ros.nodes.diagnostics import make_status, publish_status
from muon_ad_ros.nodes.params import ParamSpec, check_topic, declare_all, one_line
from muon_ad_ros.nodes.shutdown import spin_main

PARAMS = (
    ParamSpec("action_name", "synthesize_texture", "name of the SynthesizeTexture action server", check=check_topic),
    ParamSpec("max_side", 2048, "largest output width / height and exemplar side a goal may give, px",
              int_range=(16, 8192)),
    ParamSpec("max_seconds", 300.0, "time cap of a goal that gives none (0), and the most a goal may ask for",
              float_range=(1.0, 86400.0)),
    ParamSpec("coarse_steps", 100, "optimisation steps at half resolution (TextureConfig.steps[0])",
              int_range=(0, 100000)),
    ParamSpec("fine_steps", 100, "optimisation steps at full resolution (TextureConfig.steps[1])",
              int_range=(1, 100000)),
    ParamSpec("threads", 1, "torch CPU threads of a synthesis (1 is fastest on a machine other jobs keep busy)",
              int_range=(1, 256)),
)


class Cancelled(Exception):
    """Raised from the progress callback when the client asked to cancel: ends the synthesis."""


class TextureNode(Node):
    def __init__(self, **node_kwargs):
        super().__init__("texture_node", **node_kwargs)
        try:
            from muon_ad_interfaces.action import SynthesizeTexture
        except ImportError as exc:
            raise ConfigError(f"the muon_ad_interfaces package is not built ({exc}): run `make interfaces`") from None
        from muon_ad_training.texture import TextureConfig

        self.params = p = declare_all(self, PARAMS)
        self.action_type = SynthesizeTexture
        self.config = TextureConfig(steps=(p["coarse_steps"], p["fine_steps"]))
        self.config.validate()
        self._teachers = {}
        self._lock = threading.Lock()
        self._busy = False
        self._progress = (0, 0)
        self.counts = dict(succeeded=0, aborted=0, canceled=0, rejected=0)
        self.last_seconds = 0.0
        self.server = ActionServer(self, SynthesizeTexture, p["action_name"], execute_callback=self._execute,
                                   goal_callback=self._on_goal, cancel_callback=lambda _: CancelResponse.ACCEPT,
                                   callback_group=ReentrantCallbackGroup())
        self.pub_diag = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.create_timer(1.0, self._publish_diagnostics)
        self.get_logger().info(f"serving the SynthesizeTexture action on {self.resolve_topic_name(p['action_name'])}")

    # ------------------------------------------------------------------ action callbacks

    def _on_goal(self, goal) -> GoalResponse:
        with self._lock:
            if self._busy:
                self.counts["rejected"] += 1
                self.get_logger().warning("goal rejected: a texture is being synthesized (one at a time)")
                return GoalResponse.REJECT
            self._busy = True  # taken here, so that two goals arriving together cannot both start
        return GoalResponse.ACCEPT

    def _execute(self, goal_handle):
        result = self.action_type.Result()
        start = time.monotonic()
        try:
            texture = self._synthesize(goal_handle)
        except Cancelled:
            goal_handle.canceled()
            self.counts["canceled"] += 1
            result.message = "canceled"
            self.get_logger().info("texture synthesis canceled")
            return result
        except Exception as exc:  # noqa: BLE001 - a bad goal must not end the node
            goal_handle.abort()
            self.counts["aborted"] += 1
            result.message = one_line(exc)
            log = self.get_logger().warning if isinstance(exc, MuonAdError) else self.get_logger().error
            log(f"texture goal aborted: {result.message}")
            return result
        finally:
            with self._lock:
                self._busy = False
                self._progress = (0, 0)
        result.success, result.texture = True, texture
        result.seconds = self.last_seconds = time.monotonic() - start
        goal_handle.succeed()
        self.counts["succeeded"] += 1
        self.get_logger().info(f"texture {texture.width}x{texture.height} synthesized in {result.seconds:.1f} s")
        return result

    def _synthesize(self, goal_handle):
        """The goal's exemplar -> the texture Image; raises MuonAdError on a bad goal, Cancelled on a cancel."""
        import torch

        from muon_ad_training.texture import synthesize

        goal, p = goal_handle.request, self.params
        width, height = int(goal.width), int(goal.height)
        if not (16 <= width <= p["max_side"] and 16 <= height <= p["max_side"]):
            raise ConfigError(f"texture size {width}x{height}: each side must be within [16, {p['max_side']}]")
        if goal.max_seconds < 0:
            raise ConfigError(f"max_seconds must be >= 0 (0: the node's {p['max_seconds']:.0f} s), "
                              f"got {goal.max_seconds}")
        seconds = min(goal.max_seconds or p["max_seconds"], p["max_seconds"])
        exemplar = conv.image_to_rgb(goal.exemplar, max_pixels=p["max_side"] ** 2)  # ImageFormatError
        feedback = self.action_type.Feedback()

        def on_step(done: int, total: int) -> None:
            if goal_handle.is_cancel_requested:
                raise Cancelled
            self._progress = (done, total)
            feedback.step, feedback.total_steps = done, total
            goal_handle.publish_feedback(feedback)

        torch.set_num_threads(p["threads"])
        rgb = synthesize(exemplar, (height, width), tileable=bool(goal.tileable), seed=int(goal.seed),
                         minutes=seconds / 60.0, progress=on_step, config=self.config,
                         teacher=self._teacher(bool(goal.tileable)))
        return conv.rgb_to_image(rgb, goal.exemplar.header)

    def _teacher(self, tileable: bool):
        """The mobilenet teacher for this padding, built once (loading it takes about a second)."""
        if tileable not in self._teachers:
            from muon_ad_training.texture import _teacher

            self._teachers[tileable] = _teacher(self.config.layers, tileable)
        return self._teachers[tileable]

    # ------------------------------------------------------------------ diagnostics

    def _publish_diagnostics(self) -> None:
        done, total = self._progress
        message = f"synthesizing: step {done} of {total}" if self._busy else "idle"
        values = {f"goals_{k}": v for k, v in self.counts.items()}
        values["last_seconds"] = f"{self.last_seconds:.1f}"
        publish_status(self, self.pub_diag, make_status(self, "texture", DiagnosticStatus.OK, message, values))


def _spin(node) -> None:
    """Two threads: one runs a synthesis, the other keeps answering goals, cancels and timers."""
    executor = MultiThreadedExecutor(num_threads=2)
    executor.add_node(node)
    executor.spin()


def main(args=None):
    return spin_main("texture_node", TextureNode, __doc__, PARAMS, args, spin=_spin)


if __name__ == "__main__":
    import sys

    sys.exit(main())
