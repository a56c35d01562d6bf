"""recorder_node: write an image topic to a video, a contact sheet and a JSON summary.

Frames are appended to the video as they arrive; the contact sheet and the summary are written when
the node stops (Ctrl-C / SIGINT / SIGTERM, or after ``max_frames``). Tiles of the contact sheet are
labelled with a parameter of another node, read once from its parameter service and then followed
on /parameter_events: by default the ``style`` of ``stylize_node``, so a run that switches styles
shows one tile per style. Progress goes to /diagnostics at 1 Hz.
"""
from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path

import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rcl_interfaces.msg import ParameterEvent
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.parameter import parameter_value_to_python
from rclpy.parameter_client import AsyncParameterClient
from sensor_msgs.msg import CompressedImage, Image

from muon_ad_ros.core.contact_sheet import SheetCollector, VideoRecorder, make_contact_sheet, save_png
from muon_ad_ros.core.errors import ImageFormatError, MuonAdError
from muon_ad_ros.core.rolling_stats import PercentileWindow, RateMeter
from muon_ad_ros.nodes import conversions as conv
from muon_ad_ros.nodes.diagnostics import make_status, publish_status
from muon_ad_ros.nodes.params import (QOS_RELIABILITY, TRANSPORTS, ParamSpec, check_topic, declare_all,
                                      print_help_if_asked, qos_profile)
from muon_ad_ros.nodes.shutdown import shutdown, stop_on_signals, spin_until_done


def _file_name(value: str):
    return None if value and "/" not in value else f"expected a plain file name, got {value!r}"


PARAMS = (
    ParamSpec("input_topic", "image_stylized", "image topic to record", check=check_topic),
    ParamSpec("input_transport", "raw",
              "'raw' Image on input_topic or 'compressed' on <input_topic>/compressed",
              choices=TRANSPORTS),
    ParamSpec("output_dir", "out/recording", "folder for the video, contact sheet and summary",
              check=lambda v: None if v.strip() else "output_dir must not be empty"),
    ParamSpec("video_file", "stylized.mp4", "video file name (.mp4 or .avi) in output_dir ('' : no video)",
              check=lambda v: None if v == "" else _file_name(v)),
    ParamSpec("video_fps", 15.0, "frame rate written into the video", float_range=(0.1, 1000.0)),
    ParamSpec("contact_sheet_file", "contact_sheet.png", "contact sheet file name in output_dir",
              check=_file_name),
    ParamSpec("summary_file", "summary.json", "summary file name in output_dir", check=_file_name),
    ParamSpec("sheet_tiles", 12, "at most this many tiles on the contact sheet", int_range=(1, 400)),
    ParamSpec("sheet_columns", 4, "tiles per row of the contact sheet", int_range=(1, 40)),
    ParamSpec("thumb_width", 320, "tile width in pixels", int_range=(16, 4096)),
    ParamSpec("sheet_title", "", "title line of the contact sheet"),
    ParamSpec("label_node", "stylize_node",
              "label tiles with a parameter of this node (name or /ns/name; '' : none)"),
    ParamSpec("label_parameter", "style", "the parameter of label_node that labels the tiles"),
    ParamSpec("max_frames", 0, "stop after this many frames (0: never)", int_range=(0, 2**31 - 1)),
    ParamSpec("qos_reliability", "reliable", "reliability of the subscription", choices=QOS_RELIABILITY),
    ParamSpec("qos_depth", 5, "history depth of the subscription", int_range=(1, 100)),
)


class RecorderNode(Node):
    def __init__(self, **node_kwargs):
        super().__init__("recorder_node", **node_kwargs)
        self.params = p = declare_all(self, PARAMS)
        self.out_dir = Path(p["output_dir"]).expanduser()
        self.video = (VideoRecorder(self.out_dir / p["video_file"], p["video_fps"])
                      if p["video_file"] else None)
        self.sheet = SheetCollector(p["sheet_tiles"], p["thumb_width"])
        self.latency = PercentileWindow(100000)    # stamp -> receive, ms: the end-to-end latency
        self.rate = RateMeter()
        self.frames = 0
        self.malformed = 0
        self.first_t = self.last_t = None
        self.label = ""
        self.labels_seen: list[str] = []
        self._label_from_event = False
        self._label_request = None
        self.done = False
        self.topic = self.resolve_topic_name(p["input_topic"])
        qos = qos_profile(p["qos_reliability"], p["qos_depth"])
        if p["input_transport"] == "compressed":
            self.sub = self.create_subscription(CompressedImage, self.topic + "/compressed",
                                                lambda m: self._on_frame(m, True), qos)
        else:
            self.sub = self.create_subscription(Image, self.topic, lambda m: self._on_frame(m, False), qos)
        self.label_node = p["label_node"].strip("/")
        if self.label_node:
            self.create_subscription(ParameterEvent, "/parameter_events", self._on_parameter_event, 100)
            self.label_client = AsyncParameterClient(self, p["label_node"])
        self.pub_diag = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.create_timer(1.0, self._tick)
        self.get_logger().info(f"recording {self.sub.topic_name} to {self.out_dir}")

    def _set_label(self, label: str) -> None:
        self.label = label
        if label not in self.labels_seen:
            self.labels_seen.append(label)

    def _tick(self) -> None:
        """1 Hz: ask for the label until known (an event may come first), publish diagnostics."""
        if self.label_node and not self._label_from_event and not self.label and self._label_request is None \
                and self.label_client.services_are_ready():
            self._label_request = self.label_client.get_parameters([self.params["label_parameter"]])
            self._label_request.add_done_callback(self._on_label_reply)
        lat = self.latency.summary()
        values = {"frames": self.frames, "rate_hz": f"{self.rate.rate():.2f}", "malformed": self.malformed,
                  "label": self.label, "stamp_to_receive_p50_ms": f"{lat['p50']:.2f}",
                  "stamp_to_receive_p95_ms": f"{lat['p95']:.2f}"}
        publish_status(self, self.pub_diag, make_status(self, "recording", DiagnosticStatus.OK,
                                                        f"{self.frames} frames recorded", values))

    def _on_label_reply(self, future) -> None:
        self._label_request = None
        response = future.result()
        if self._label_from_event or response is None or not response.values:
            return
        value = parameter_value_to_python(response.values[0])
        if value not in (None, ""):
            self._set_label(str(value))

    def _on_parameter_event(self, event: ParameterEvent) -> None:
        node = event.node.strip("/")
        if node != self.label_node and node.rsplit("/", 1)[-1] != self.label_node:
            return
        for param in list(event.new_parameters) + list(event.changed_parameters):
            if param.name == self.params["label_parameter"]:
                self._label_from_event = True
                self._set_label(str(parameter_value_to_python(param.value)))

    def _on_frame(self, msg, compressed: bool) -> None:
        now = time.monotonic()
        try:
            rgb = conv.compressed_to_rgb(msg) if compressed else conv.image_to_rgb(msg)
        except ImageFormatError as exc:
            self.malformed += 1
            self.get_logger().error(f"malformed frame skipped: {exc}", throttle_duration_sec=5.0)
            return
        self.latency.add((self.get_clock().now().nanoseconds - conv.stamp_to_ns(msg.header.stamp)) / 1e6)
        if self.video is not None:
            self.video.write(rgb)
        self.sheet.add(rgb, self.label)
        self.frames += 1
        self.rate.tick()
        self.first_t = now if self.first_t is None else self.first_t
        self.last_t = now
        if self.params["max_frames"] and self.frames >= self.params["max_frames"]:
            self.done = True

    def finish(self) -> dict:
        """Close the video, write the contact sheet and the summary; returns the summary."""
        p = self.params
        video = self.video.close() if self.video is not None else None
        sheet_path = None
        if self.frames:
            sheet = make_contact_sheet(self.sheet.tiles(), p["sheet_columns"], p["sheet_title"])
            sheet_path = save_png(self.out_dir / p["contact_sheet_file"], sheet)
        span = (self.last_t - self.first_t) if self.frames > 1 else 0.0
        lat = self.latency.summary()
        summary = {
            "topic": self.sub.topic_name, "frames": self.frames, "malformed": self.malformed,
            "seconds": round(span, 3), "fps": round((self.frames - 1) / span, 2) if span > 0 else None,
            "latency_stamp_to_receive_ms": {
                k: (None if isinstance(v, float) and math.isnan(v) else round(v, 2)) for k, v in lat.items()},
            "labels": self.labels_seen,
            "video": str(video) if video else None, "contact_sheet": str(sheet_path) if sheet_path else None,
        }
        self.out_dir.mkdir(parents=True, exist_ok=True)
        (self.out_dir / p["summary_file"]).write_text(json.dumps(summary, indent=2) + "\n")
        return summary


def main(args=None):
    if print_help_if_asked("recorder_node", __doc__, PARAMS, args):
        return 0
    stop_on_signals()
    rclpy.init(args=args)
    node = None
    code = 0
    try:
        node = RecorderNode()
        spin_until_done(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except MuonAdError as exc:
        rclpy.logging.get_logger("recorder_node").fatal(str(exc))
        code = 2
    finally:  # whatever stopped the node, what was recorded is written
        if node is not None:
            try:
                summary = node.finish()
                print(f"recorder_node: {summary['frames']} frames -> {node.out_dir}", flush=True)
            except MuonAdError as exc:
                print(f"recorder_node: could not finish the recording: {exc}", file=sys.stderr)
                code = 2
    return shutdown(node, code)


if __name__ == "__main__":
    sys.exit(main())
