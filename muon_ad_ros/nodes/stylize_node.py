"""stylize_node: camera images in, stylized images out.

    image_raw (Image, or image_raw/compressed)  --> [latest-frame slot] --> worker thread:
    camera_info (sibling of the input)              decode -> Stylizer -> encode -> publish
                                                  --> image_stylized (+ image_stylized/compressed)
                                                  --> camera info (scaled), /diagnostics at 1 Hz

The subscription callback only stores the message in a one-frame slot (a newer frame replaces a
pending one and counts as a drop), so the executor never waits on inference, nothing queues
without bound, and the worker always stylizes the newest frame. Style and strength change at run
time through parameter updates. Topic names and QoS are documented in docs/ros.md.

The node is built in the steps of a managed (lifecycle) node: declare the parameters, configure
(check them, load the model, create the publishers, start the worker), activate (subscribe).
StylizeNode runs them all at construction; stylize_lifecycle_node runs the same methods from its
lifecycle transitions.
"""
from __future__ import annotations

import functools
import sys
import threading
import time

from diagnostic_msgs.msg import DiagnosticArray
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, CompressedImage, Image

from muon_ad_ros.core.engines import BACKENDS, IO_CHOICES, PRECISIONS
from muon_ad_ros.core.engines.onnx_engine import GRAPH_OPTIMIZATION, SessionConfig
from muon_ad_ros.core.errors import ConfigError, ImageFormatError, MuonAdError
from muon_ad_ros.core.frame_sources import fit_frame
from muon_ad_ros.core.image_codec import DEFAULT_MAX_SIDE, MAX_PIXELS, NODE_MAX_PIXELS, SUPPORTED_ENCODINGS
from muon_ad_ros.core.rolling_stats import RateMeter, StageTimes
from muon_ad_ros.core.style_spec import describe_style
from muon_ad_ros.core.stylizer import MAX_SIDE_LIMIT, Stylizer
from muon_ad_ros.nodes import conversions as conv
from muon_ad_ros.nodes.diagnostics import process_age_s, publish_status, stylize_status
from muon_ad_ros.nodes.latest_slot import LatestSlot
from muon_ad_ros.nodes.shutdown import spin_main
from muon_ad_ros.nodes.worker import serve_latest
from muon_ad_ros.nodes.params import (COMPRESSED_FORMATS, QOS_RELIABILITY, TRANSPORTS, ParamSpec,
                                      check_topic, declare_all, make_on_set_callback, qos_profile)


def _check_device(value: str):
    if value == "cpu" or value.startswith("cuda"):
        return None
    return f"device must be 'cpu' or 'cuda[:N]', got {value!r}"


def _check_style_type(value):
    # `ros2 param set /stylize_node style 2` sends an integer, a name a string: both are fine.
    if isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool)):
        return None
    return f"style must be a style name or an index, got {value!r}"


SIZE = (0, MAX_SIDE_LIMIT)
PARAMS = (
    ParamSpec("model", "default",
              "model id ('default', a shipped id), model card, .onnx or .safetensors path"),
    ParamSpec("backend", "onnxruntime", "inference backend", choices=BACKENDS),
    ParamSpec("precision", "fp32", "numeric precision of the engine", choices=PRECISIONS),
    ParamSpec("device", "cpu", "'cpu' or 'cuda[:N]'", check=_check_device),
    ParamSpec("threads", 0, "CPU threads of the engine (0: the physical cores this process may use)",
              int_range=(0, 256)),
    ParamSpec("graph_optimization", "all", "onnxruntime graph optimization level", choices=GRAPH_OPTIMIZATION),
    ParamSpec("cpu_arena", True, "onnxruntime CPU memory arena (false: buffers returned after each frame, "
              "slower)"),
    ParamSpec("mem_pattern", False, "onnxruntime memory pattern (true: one preplanned block per input size, "
              "more RSS)"),
    ParamSpec("blocked_layout", False, "onnxruntime NCHWc blocked layout on x86 (true: ~4% faster inference, "
              "~30 MB more RSS at 640x480)"),
    ParamSpec("model_io", "auto", "onnxruntime model file: 'uint8' (pixel conversions inside the graph), "
              "'float' (the float contract), 'auto' (uint8 when the model card lists it)", choices=IO_CHOICES),
    ParamSpec("style", "", "style name, index or mixture 'a:0.7,b:0.3' of the model ('' = the first "
              "style; core/style_spec.py); changes live",
              dynamic=True, any_type=True, check=_check_style_type),
    ParamSpec("strength", 1.0, "blend of stylized and input image, 0..1; changes live", dynamic=True,
              float_range=(0.0, 1.0)),
    ParamSpec("temporal", False, "steady video for AR: blend each output with the previous one along the "
              "input's optical flow, occlusion-aware, reset on scene cuts (core/temporal.py); changes live",
              dynamic=True),
    ParamSpec("network_width", 0, "fixed network input width (with network_height; 0: frame size)",
              int_range=SIZE),
    ParamSpec("network_height", 0, "fixed network input height (with network_width; 0: frame size)",
              int_range=SIZE),
    ParamSpec("max_side", DEFAULT_MAX_SIDE, "cap on the network input's longer side, frame-size mode "
              "(0: full size, which a 1080p frame needs GBs for)", int_range=SIZE),
    ParamSpec("max_input_pixels", NODE_MAX_PIXELS, "largest input frame accepted (width * height, read "
              "from the header before decoding; default 4K UHD); a larger one counts as malformed",
              int_range=(1, MAX_PIXELS)),
    ParamSpec("output_width", 0, "output image width (with output_height; 0: input size)", int_range=SIZE),
    ParamSpec("output_height", 0, "output image height (with output_width; 0: input size)", int_range=SIZE),
    ParamSpec("output_encoding", "rgb8", "encoding of the output Image", choices=SUPPORTED_ENCODINGS),
    ParamSpec("input_topic", "image_raw", "input image topic (a raw Image, or the base of a /compressed one)",
              check=check_topic),
    ParamSpec("output_topic", "image_stylized", "output image topic", check=check_topic),
    ParamSpec("input_transport", "raw", "'raw': sensor_msgs/Image on input_topic; 'compressed': "
              "sensor_msgs/CompressedImage on <input_topic>/compressed", choices=TRANSPORTS),
    ParamSpec("publish_compressed", False, "also publish a CompressedImage on <output_topic>/compressed"),
    ParamSpec("compressed_format", "jpeg", "codec of the compressed output", choices=COMPRESSED_FORMATS),
    ParamSpec("jpeg_quality", 90, "JPEG quality of the compressed output; changes live", dynamic=True,
              int_range=(1, 100)),
    ParamSpec("qos_reliability", "best_effort", "reliability of the input subscription",
              choices=QOS_RELIABILITY),
    ParamSpec("qos_depth", 1, "history depth of the input subscription", int_range=(1, 100)),
    ParamSpec("diagnostics_period", 1.0, "seconds between /diagnostics messages", float_range=(0.1, 60.0)),
)


class StylizeNode(Node):
    def __init__(self, managed: bool = False, **node_kwargs):
        """``managed``: only declare the parameters; a lifecycle node configures and activates later."""
        super().__init__("stylize_node", **node_kwargs)
        self.params = declare_all(self, PARAMS)
        self.stylizer = None
        self.sub = None
        self.add_on_set_parameters_callback(make_on_set_callback(PARAMS, self._prepare_parameter))
        if not managed:
            self.configure_stylizer()
            self.start_input()

    # -- lifecycle steps (the plain node runs them at construction) -------------------------------
    def configure_stylizer(self) -> None:
        """Check the parameters, load the model, create the publishers, start the worker."""
        p = self.params
        if (p["output_width"] > 0) != (p["output_height"] > 0):
            raise ConfigError("set both output_width and output_height, or neither")
        resolution = (p["network_width"], p["network_height"]) if p["network_width"] else None
        self.stylizer = Stylizer.from_model(
            p["model"], backend=p["backend"], precision=p["precision"], device=p["device"],
            threads=p["threads"] or None, resolution=resolution, max_side=p["max_side"],
            style=p["style"], strength=p["strength"], temporal=p["temporal"], io=p["model_io"],
            session=SessionConfig(graph_optimization=p["graph_optimization"], cpu_arena=p["cpu_arena"],
                                  mem_pattern=p["mem_pattern"], blocked_layout=p["blocked_layout"]))
        self._style_name = self._describe_style()

        # Topics: resolve (with remapping) first, so derived names follow a remapped base as in
        # image_transport: <input>/compressed, camera_info beside the input, <output>/compressed.
        self.input_topic = self.resolve_topic_name(p["input_topic"])
        self.output_topic = self.resolve_topic_name(p["output_topic"])
        self.info_in_topic = conv.sibling_topic(self.input_topic, "camera_info")
        self.info_out_topic = conv.sibling_topic(self.output_topic, "camera_info")
        if self.info_out_topic == self.info_in_topic:  # same namespace: the sibling is taken by the input's
            self.info_out_topic = self.output_topic + "/camera_info"

        self.pub = self.create_publisher(Image, self.output_topic, qos_profile("reliable", 1))
        self._payload = conv.PayloadBuffer()   # the worker's reusable output pixels (one copy a frame)
        self.pub_compressed = (self.create_publisher(CompressedImage, self.output_topic + "/compressed",
                                                     qos_profile("reliable", 1))
                               if p["publish_compressed"] else None)
        self.pub_info = self.create_publisher(CameraInfo, self.info_out_topic, qos_profile("reliable", 1))
        self.pub_diag = self.create_publisher(DiagnosticArray, "/diagnostics", 10)

        # State shared by the executor thread (callbacks, timer) and the worker thread.
        self._slot = LatestSlot()
        self._infos: list = []                      # [(stamp_ns, CameraInfo)], newest last
        self._infos_lock = threading.Lock()
        self.rate_in, self.rate_out = RateMeter(), RateMeter()
        self.times = StageTimes()
        self.counts = {"frames_in": 0, "frames_out": 0, "malformed": 0, "errors": 0}
        self._last_problem = ""
        self._malformed_seen = 0
        self.startup_s = float("nan")  # process start -> first frame published
        self.ready_s = float("nan")  # process start -> subscribed (imports, model load included)
        self._worker = threading.Thread(target=serve_latest, args=(self, "frame"), name="stylize_worker",
                                        daemon=True)
        self._worker.start()
        self._diag_timer = self.create_timer(p["diagnostics_period"], self._publish_diagnostics)
        if self.stylizer.card.get("untrained"):
            self.get_logger().warning(
                f"model {self.stylizer.card.get('id')} is UNTRAINED: its output is not a style")

    def start_input(self) -> None:
        """Subscribe to the camera (and its camera info): frames start to flow."""
        p = self.params
        in_qos = qos_profile(p["qos_reliability"], p["qos_depth"])
        if p["input_transport"] == "compressed":
            self.sub = self.create_subscription(CompressedImage, self.input_topic + "/compressed",
                                                lambda m: self._on_frame(m, True), in_qos)
        else:
            self.sub = self.create_subscription(Image, self.input_topic,
                                                lambda m: self._on_frame(m, False), in_qos)
        self.info_sub = self.create_subscription(CameraInfo, self.info_in_topic, self._on_info,
                                                 qos_profile_sensor_data)
        self.ready_s = process_age_s()
        self.get_logger().info(
            f"ready {self.ready_s:.2f} s after the process started; "
            f"{self.stylizer.describe()}; style {self._style_name}, strength {self.stylizer.strength:g}; "
            f"{self.sub.topic_name} ({p['input_transport']}, {p['qos_reliability']}) -> {self.output_topic}, "
            f"camera info {self.info_in_topic} -> {self.info_out_topic}")

    def stop_input(self) -> None:
        """Unsubscribe: no new frame is taken (one in the worker is still published)."""
        if self.sub is not None:
            self.destroy_subscription(self.sub)
            self.destroy_subscription(self.info_sub)
            self.sub = None

    def release_stylizer(self) -> None:
        """Undo configure_stylizer: stop the worker, drop the publishers, the timer and the model."""
        self.stop_input()
        if self.stylizer is None:
            return
        self._slot.close()
        if self._worker.is_alive():
            self._worker.join(timeout=5.0)
        self.destroy_timer(self._diag_timer)
        for pub in (self.pub, self.pub_compressed, self.pub_info, self.pub_diag):
            if pub is not None:
                self.destroy_publisher(pub)
        self.stylizer = None

    # -- parameters ------------------------------------------------------------------------------
    def _describe_style(self) -> str:
        return describe_style(self.stylizer.current_style_weights, self.stylizer.styles)

    def _prepare_parameter(self, name, value):
        """Check a live update without changing anything; returns the function that applies it
        (params.make_on_set_callback applies a request only once all of it is prepared). Before
        configure_stylizer there is no model to check against: configuring reads the values."""
        if self.stylizer is None:
            return lambda: None
        if name == "style":
            change = functools.partial(self._set_style_weights, self.stylizer.style_weights(value))
        elif name == "strength":
            change = functools.partial(self.stylizer.set_strength, Stylizer._check_strength(value))
        elif name == "temporal":
            change = functools.partial(self.stylizer.set_temporal, bool(value))
        else:  # jpeg_quality: read by the worker for each frame
            change = functools.partial(self.params.__setitem__, name, value)

        def commit():
            change()
            self.get_logger().info(f"{name} -> {value!r}")
        return commit

    def _set_style_weights(self, weights) -> None:
        self.stylizer.set_style(weights)
        self._style_name = self._describe_style()

    # -- executor thread: store only -------------------------------------------------------------
    def _on_frame(self, msg, compressed: bool) -> None:
        self.rate_in.tick()
        self.counts["frames_in"] += 1
        self._slot.put((msg, compressed, time.perf_counter()))

    def _on_info(self, msg: CameraInfo) -> None:
        with self._infos_lock:
            self._infos.append((conv.stamp_to_ns(msg.header.stamp), msg))
            del self._infos[:-30]

    # -- worker thread ---------------------------------------------------------------------------
    def _process(self, msg, compressed: bool, t_received: float) -> None:
        t0 = time.perf_counter()
        try:
            limit = self.params["max_input_pixels"]
            rgb = conv.compressed_to_rgb(msg, limit) if compressed else conv.image_to_rgb(msg, limit)
        except ImageFormatError as exc:
            self.counts["malformed"] += 1
            self._last_problem = f"malformed {'CompressedImage' if compressed else 'Image'}: {exc}"
            self.get_logger().error(f"{self._last_problem} (on {self.sub.topic_name}; frame skipped)",
                                    throttle_duration_sec=5.0)
            return
        t1 = time.perf_counter()
        try:
            result = self.stylizer.stylize(rgb)
        except MuonAdError as exc:
            self.counts["errors"] += 1
            self._last_problem = f"stylizer: {exc}"
            self.get_logger().error(self._last_problem, throttle_duration_sec=5.0)
            return
        out = result.image
        in_size = (rgb.shape[1], rgb.shape[0])
        out_size = in_size
        if self.params["output_width"]:
            out_size = (self.params["output_width"], self.params["output_height"])
            out = fit_frame(out, *out_size)
        t2 = time.perf_counter()

        header = msg.header
        self.pub.publish(conv.rgb_to_image(out, header, self.params["output_encoding"], self._payload))
        if self.pub_compressed is not None:
            self.pub_compressed.publish(conv.rgb_to_compressed(
                out, header, self.params["compressed_format"], self.params["jpeg_quality"]))
        with self._infos_lock:
            info = conv.find_by_stamp(self._infos, conv.stamp_to_ns(header.stamp))
        if info is not None:
            self.pub_info.publish(conv.scaled_camera_info(info, header, in_size, out_size))
        t3 = time.perf_counter()

        now_ns = self.get_clock().now().nanoseconds
        if self.counts["frames_out"] == 0:
            self.startup_s = process_age_s()
            self.get_logger().info(f"first frame published {self.startup_s:.2f} s after the process started "
                                   f"(ready at {self.ready_s:.2f} s, then waiting for input and stylizing)")
        self.rate_out.tick()
        self.counts["frames_out"] += 1
        ms = 1e3
        timings = result.timings
        # stamp -> receive: sensor and transport latency up to the callback (DDS in, when the stamp is
        # the publish time on this clock), per frame; receive -> publish: the node's own share;
        # beyond inference: stamp -> publish but for the slot wait and inference (what the node adds)
        queue_ms = (t0 - t_received) * ms
        receive_to_publish = (t3 - t_received) * ms
        stamp_to_publish = (now_ns - conv.stamp_to_ns(header.stamp)) / 1e6
        resize_ms = (t2 - t1) * ms - timings["total"]
        self.times.add_all({"queue": queue_ms, "decode": (t1 - t0) * ms,
                            "preprocess": timings["preprocess"], "inference": timings["inference"],
                            "postprocess": timings["postprocess"] + resize_ms,
                            "temporal": timings.get("temporal", 0.0),
                            "publish": (t3 - t2) * ms, "receive_to_publish": receive_to_publish,
                            "stamp_to_publish": stamp_to_publish,
                            "stamp_to_receive": stamp_to_publish - receive_to_publish,
                            "beyond_inference": stamp_to_publish - queue_ms - timings["inference"]})

    # -- diagnostics (executor thread, timer) -----------------------------------------------------
    def _publish_diagnostics(self) -> None:
        if self.sub is None:  # inactive (lifecycle): nothing to report until frames can arrive
            return
        malformed_new = self.counts["malformed"] - self._malformed_seen
        self._malformed_seen = self.counts["malformed"]
        publish_status(self, self.pub_diag, stylize_status(self, malformed_new))

    def destroy_node(self):
        if self.stylizer is not None:
            self._slot.close()
            if self._worker.is_alive():
                self._worker.join(timeout=5.0)
        return super().destroy_node()


def main(args=None):
    return spin_main("stylize_node", StylizeNode, __doc__, PARAMS, args)


if __name__ == "__main__":
    sys.exit(main())
