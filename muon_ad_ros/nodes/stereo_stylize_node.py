"""stereo_stylize_node: a rectified stereo camera in, a stylized pair out, both eyes painted alike.

    left/image_raw  --\\  approximate-time   [latest-pair slot] --> worker: decode both ->
    right/image_raw --/   pairing (slop)                          StereoStylizer (core/stereo.py) ->
    (disparity)        -- by stamp, optional                      publish with the input headers
                                        --> left/image_stylized, right/image_stylized
                                        --> side_by_side/image_stylized (optional, left header)
                                        --> <output>/camera_info (the inputs' CameraInfo, same stamp)
                                        --> /diagnostics at 1 Hz

Pairing follows message_filters' ApproximateTimeSynchronizer (core/approx_sync.py); frames that
find no partner are dropped and counted ("unmatched" in /diagnostics). In ``consistent`` mode the
right view is the stylized left view warped by disparity (StereoSGBM at reduced resolution, or the
DisparityImage of stereo_image_proc on ``disparity_topic``), its occlusions filled from its own
stylization. Style, strength and mode change at run time. A malformed message costs its pair only.
"""
from __future__ import annotations

import functools
import sys
import threading
import time

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, Image

from muon_ad_ros.core.approx_sync import ApproximatePairer
from muon_ad_ros.core.engines import BACKENDS, PRECISIONS
from muon_ad_ros.core.errors import ImageFormatError, MuonAdError
from muon_ad_ros.core.image_codec import DEFAULT_MAX_SIDE, MAX_PIXELS, NODE_MAX_PIXELS, SUPPORTED_ENCODINGS
from muon_ad_ros.core.rolling_stats import RateMeter, StageTimes
from muon_ad_ros.core.stereo import STEREO_MODES, StereoConfig, StereoStylizer
from muon_ad_ros.core.style_spec import describe_style
from muon_ad_ros.core.stylizer import MAX_SIDE_LIMIT, Stylizer
from muon_ad_ros.nodes import conversions as conv
from muon_ad_ros.nodes.diagnostics import publish_status, stereo_status
from muon_ad_ros.nodes.latest_slot import LatestSlot
from muon_ad_ros.nodes.params import (QOS_RELIABILITY, ParamSpec, check_topic, declare_all, make_on_set_callback,
                                      qos_profile)
from muon_ad_ros.nodes.shutdown import spin_main
from muon_ad_ros.nodes.worker import serve_latest
from muon_ad_ros.nodes.stylize_node import _check_device, _check_style_type

LEFT, RIGHT, DISPARITY = 0, 1, 2
PARAMS = (
    ParamSpec("model", "default", "model id ('default', a shipped id), model card, .onnx or .safetensors path"),
    ParamSpec("backend", "onnxruntime", "inference backend", choices=BACKENDS),
    ParamSpec("precision", "fp32", "numeric precision of the engine", choices=PRECISIONS),
    ParamSpec("device", "cpu", "'cpu' or 'cuda[:N]'", check=_check_device),
    ParamSpec("threads", 0, "CPU threads of the engine (0: the physical cores this process may use)",
              int_range=(0, 256)),
    ParamSpec("style", "", "style name, index or mixture of the model ('' = the first style); changes live",
              dynamic=True, any_type=True, check=_check_style_type),
    ParamSpec("strength", 1.0, "blend of stylized and input image, 0..1; changes live", dynamic=True,
              float_range=(0.0, 1.0)),
    ParamSpec("max_side", DEFAULT_MAX_SIDE, "cap on the network input's longer side (0: full size)",
              int_range=(0, MAX_SIDE_LIMIT)),
    ParamSpec("max_input_pixels", NODE_MAX_PIXELS, "largest input frame accepted (width * height); a "
              "larger one counts as malformed", int_range=(1, MAX_PIXELS)),
    ParamSpec("mode", "consistent", "'consistent': right view = stylized left warped by disparity; "
              "'independent': each eye on its own; changes live", dynamic=True, choices=STEREO_MODES),
    ParamSpec("stereo_max_side", 640, "longer side of the images StereoSGBM runs on (px)",
              int_range=(32, MAX_SIDE_LIMIT)),
    ParamSpec("disparity_topic", "", "stereo_msgs/DisparityImage of the left view (e.g. stereo_image_proc's "
              "'disparity'); '' = compute with StereoSGBM", check=lambda v: check_topic(v) if v else None),
    ParamSpec("slop", 0.02, "largest stamp difference (s) of a left and a right frame that pair up",
              float_range=(0.0, 10.0)),
    ParamSpec("queue_size", 10, "frames per eye waiting for a partner", int_range=(1, 1000)),
    ParamSpec("publish_side_by_side", False, "also publish left|right side by side (headset viewers)"),
    ParamSpec("output_encoding", "rgb8", "encoding of the output Images", choices=SUPPORTED_ENCODINGS),
    ParamSpec("left_input_topic", "left/image_raw", "left camera Image topic", check=check_topic),
    ParamSpec("right_input_topic", "right/image_raw", "right camera Image topic", check=check_topic),
    ParamSpec("left_output_topic", "left/image_stylized", "stylized left Image topic", check=check_topic),
    ParamSpec("right_output_topic", "right/image_stylized", "stylized right Image topic", check=check_topic),
    ParamSpec("side_by_side_topic", "side_by_side/image_stylized", "side-by-side Image topic",
              check=check_topic),
    ParamSpec("qos_reliability", "best_effort", "reliability of the input subscriptions",
              choices=QOS_RELIABILITY),
    ParamSpec("qos_depth", 5, "history depth of the input subscriptions", int_range=(1, 100)),
    ParamSpec("diagnostics_period", 1.0, "seconds between /diagnostics messages", float_range=(0.1, 60.0)),
)


def disparity_to_array(msg) -> np.ndarray:
    """stereo_msgs/DisparityImage -> HxW float32 disparity in pixels (NaN/<= 0: unknown)."""
    img = msg.image
    if img.encoding != "32FC1":
        raise ImageFormatError(f"disparity image must be 32FC1, got {img.encoding!r}")
    h, w, step = int(img.height), int(img.width), int(img.step)
    if h <= 0 or w <= 0 or step < 4 * w or len(img.data) < step * h:
        raise ImageFormatError(f"disparity image {w}x{h}, step {step}: {len(img.data)} bytes is too few")
    dtype = np.dtype(">f4" if img.is_bigendian else "<f4")
    rows = np.frombuffer(bytes(img.data[:step * h]), np.uint8).reshape(h, step)
    disp = rows[:, :4 * w].copy().view(dtype).reshape(h, w).astype(np.float32)
    disp[~np.isfinite(disp) | (disp < max(float(msg.min_disparity), 1e-3))] = np.nan
    return disp


class StereoStylizeNode(Node):
    def __init__(self, **node_kwargs):
        super().__init__("stereo_stylize_node", **node_kwargs)
        self.params = p = declare_all(self, PARAMS)
        stylizer = Stylizer.from_model(p["model"], backend=p["backend"], precision=p["precision"],
                                       device=p["device"], threads=p["threads"] or None,
                                       max_side=p["max_side"], style=p["style"], strength=p["strength"])
        self.stereo = StereoStylizer(stylizer, p["mode"], StereoConfig(max_side=p["stereo_max_side"]))
        self.stylizer = stylizer
        self._style_name = describe_style(stylizer.current_style_weights, stylizer.styles)
        self.add_on_set_parameters_callback(make_on_set_callback(PARAMS, self._prepare_parameter))

        names = {k: self.resolve_topic_name(p[k]) for k in (
            "left_input_topic", "right_input_topic", "left_output_topic", "right_output_topic",
            "side_by_side_topic")}
        self.input_topics = (names["left_input_topic"], names["right_input_topic"])
        in_qos = qos_profile(p["qos_reliability"], p["qos_depth"])
        self.pairer = ApproximatePairer(2, p["queue_size"], int(p["slop"] * 1e9))
        self.subs = [self.create_subscription(Image, topic, functools.partial(self._on_image, eye), in_qos)
                     for eye, topic in enumerate(self.input_topics)]
        self._infos = ([], [])                       # per eye: [(stamp_ns, CameraInfo)], newest last
        self._disparities: list = []                 # [(stamp_ns, DisparityImage)], newest last
        self._lock = threading.Lock()
        self.info_subs = [self.create_subscription(CameraInfo, conv.sibling_topic(topic, "camera_info"),
                                                   functools.partial(self._on_info, eye), qos_profile_sensor_data)
                          for eye, topic in enumerate(self.input_topics)]
        if p["disparity_topic"]:
            from stereo_msgs.msg import DisparityImage  # only when used: ros-stereo-msgs

            self.disp_sub = self.create_subscription(DisparityImage, self.resolve_topic_name(p["disparity_topic"]),
                                                     self._on_disparity, in_qos)
        out_qos = qos_profile("reliable", 1)
        outs = (names["left_output_topic"], names["right_output_topic"])
        self.pubs = [self.create_publisher(Image, t, out_qos) for t in outs]
        self._payloads = [conv.PayloadBuffer() for _ in range(3)]   # left, right, side by side (worker)
        self.pub_infos = [self.create_publisher(CameraInfo, t + "/camera_info", out_qos) for t in outs]
        self.pub_sbs = (self.create_publisher(Image, names["side_by_side_topic"], out_qos)
                        if p["publish_side_by_side"] else None)
        self.pub_diag = self.create_publisher(DiagnosticArray, "/diagnostics", 10)

        self._slot = LatestSlot()
        self.rate_in, self.rate_out = RateMeter(), RateMeter()
        self.times = StageTimes()
        self.counts = {"left_in": 0, "right_in": 0, "pairs_out": 0, "malformed": 0, "errors": 0,
                       "disparity_used": 0}
        self._last_problem = ""
        self._malformed_seen = 0
        self._worker = threading.Thread(target=serve_latest, args=(self, "pair"), name="stereo_worker",
                                        daemon=True)
        self._worker.start()
        self._diag_timer = self.create_timer(p["diagnostics_period"], self._publish_diagnostics)
        self.get_logger().info(
            f"{stylizer.describe()}; style {self._style_name}, mode {p['mode']}; "
            f"{self.input_topics[0]} + {self.input_topics[1]} (slop {p['slop']:g} s) -> {outs[0]}, {outs[1]}"
            + (f", disparity from {p['disparity_topic']}" if p["disparity_topic"] else ", disparity by SGBM"))

    # -- parameters ------------------------------------------------------------------------------
    def _prepare_parameter(self, name, value):
        if name == "style":
            weights = self.stylizer.style_weights(value)

            def change():
                self.stylizer.set_style(weights)
                self._style_name = describe_style(weights, self.stylizer.styles)
        elif name == "strength":
            change = functools.partial(self.stylizer.set_strength, Stylizer._check_strength(value))
        else:  # mode: checked by its ParamSpec
            change = functools.partial(setattr, self.stereo, "mode", value)

        def commit():
            change()
            self.get_logger().info(f"{name} -> {value!r}")
        return commit

    # -- executor thread: store and pair only ---------------------------------------------------
    def _on_image(self, eye: int, msg: Image) -> None:
        self.rate_in.tick()
        self.counts["right_in" if eye else "left_in"] += 1
        pair = self.pairer.add(eye, conv.stamp_to_ns(msg.header.stamp), msg)
        if pair is not None:
            self._slot.put((pair, time.perf_counter()))

    def _on_info(self, eye: int, msg: CameraInfo) -> None:
        with self._lock:
            self._infos[eye].append((conv.stamp_to_ns(msg.header.stamp), msg))
            del self._infos[eye][:-30]

    def _on_disparity(self, msg) -> None:
        with self._lock:
            self._disparities.append((conv.stamp_to_ns(msg.header.stamp), msg))
            del self._disparities[:-10]

    # -- worker thread ---------------------------------------------------------------------------
    def _decode(self, msgs):
        limit = self.params["max_input_pixels"]
        disparity = None
        stamp = conv.stamp_to_ns(msgs[LEFT].header.stamp)
        with self._lock:  # the disparity of this very pair (within slop), else SGBM computes one
            near = [(abs(ns - stamp), i) for i, (ns, _) in enumerate(self._disparities)
                    if abs(ns - stamp) <= self.pairer.slop_ns]
            disp_msg = self._disparities[min(near)[1]][1] if near else None
        try:
            rgbs = [conv.image_to_rgb(m, limit) for m in msgs]
            if disp_msg is not None and self.stereo.mode == "consistent":
                disparity = disparity_to_array(disp_msg)
        except ImageFormatError as exc:
            self.counts["malformed"] += 1
            self._last_problem = f"malformed message: {exc}"
            self.get_logger().error(f"{self._last_problem} (pair skipped)", throttle_duration_sec=5.0)
            return None
        return rgbs, disparity

    def _process(self, msgs, t_received: float) -> None:
        t0 = time.perf_counter()
        decoded = self._decode(msgs)
        if decoded is None:
            return
        (left, right), disparity = decoded
        t1 = time.perf_counter()
        try:
            result = self.stereo.stylize_pair(left, right, disparity)
        except ImageFormatError as exc:   # a pair of different sizes, a disparity of another shape
            self.counts["malformed"] += 1
            self._last_problem = f"malformed pair: {exc}"
            self.get_logger().error(f"{self._last_problem} (pair skipped)", throttle_duration_sec=5.0)
            return
        except MuonAdError as exc:
            self.counts["errors"] += 1
            self._last_problem = f"stylizer: {exc}"
            self.get_logger().error(self._last_problem, throttle_duration_sec=5.0)
            return
        if disparity is not None:
            self.counts["disparity_used"] += 1
        t2 = time.perf_counter()
        encoding = self.params["output_encoding"]
        size = (left.shape[1], left.shape[0])
        for eye, (msg, out) in enumerate(zip(msgs, (result.left, result.right))):
            self.pubs[eye].publish(conv.rgb_to_image(out, msg.header, encoding, self._payloads[eye]))
            with self._lock:
                info = conv.find_by_stamp(self._infos[eye], conv.stamp_to_ns(msg.header.stamp))
            if info is not None:
                self.pub_infos[eye].publish(conv.scaled_camera_info(info, msg.header, size, size))
        if self.pub_sbs is not None:
            sbs = np.ascontiguousarray(np.concatenate([result.left, result.right], axis=1))
            self.pub_sbs.publish(conv.rgb_to_image(sbs, msgs[LEFT].header, encoding, self._payloads[2]))
        t3 = time.perf_counter()
        self.rate_out.tick()
        self.counts["pairs_out"] += 1
        ms = 1e3
        self.times.add_all({"queue": (t0 - t_received) * ms, "decode": (t1 - t0) * ms,
                            **{k: v for k, v in result.timings.items() if k != "total"},
                            "stylize_pair": result.timings["total"], "publish": (t3 - t2) * ms,
                            "receive_to_publish": (t3 - t_received) * ms})

    # -- diagnostics (executor thread, timer) -----------------------------------------------------
    def _publish_diagnostics(self) -> None:
        malformed_new = self.counts["malformed"] - self._malformed_seen
        self._malformed_seen = self.counts["malformed"]
        publish_status(self, self.pub_diag, stereo_status(self, malformed_new))

    def destroy_node(self):
        self._slot.close()
        if self._worker.is_alive():
            self._worker.join(timeout=5.0)
        return super().destroy_node()


def main(args=None):
    return spin_main("stereo_stylize_node", StereoStylizeNode, __doc__, PARAMS, args)


if __name__ == "__main__":
    sys.exit(main())
