"""image_source_node: publish frames from a video, an image folder, a rosbag or the built-in sample.

Like image_tools' cam2image with its built-in image, it lets the whole pipeline run without a
camera: a timer publishes one frame per period on ``image_raw`` (stamped now, ``frame_id`` from a
parameter), a nominal pinhole CameraInfo beside it on ``camera_info``, and optionally a JPEG on
``image_raw/compressed``. The source loops by default; with ``loop: false`` or ``max_frames`` the
node exits once done.
"""
from __future__ import annotations

import sys

from rclpy.node import Node
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_msgs.msg import Header

from muon_ad_ros.core.errors import MuonAdError
from muon_ad_ros.core.frame_sources import looping, nominal_intrinsics, open_source
from muon_ad_ros.core.image_codec import SUPPORTED_ENCODINGS
from muon_ad_ros.nodes import conversions as conv
from muon_ad_ros.nodes.params import QOS_RELIABILITY, ParamSpec, check_topic, declare_all, qos_profile
from muon_ad_ros.nodes.shutdown import spin_main, spin_until_done

PARAMS = (
    ParamSpec("source", "sample", "'sample' (built-in photos), a video file, an image folder or a rosbag",
              check=lambda v: None if v.strip() else "source must not be empty"),
    ParamSpec("bag_topic", "", "image topic to read from a rosbag ('' = its first image topic)"),
    ParamSpec("rate", 15.0, "frames per second", float_range=(0.1, 1000.0)),
    ParamSpec("loop", True, "start over at the end of the source"),
    ParamSpec("max_frames", 0, "stop after this many frames (0: never)", int_range=(0, 2**31 - 1)),
    ParamSpec("width", 0, "output width (0: source width; the sample's default is 640)", int_range=(0, 8192)),
    ParamSpec("height", 0, "output height (0: source height; the sample's default is 480)",
              int_range=(0, 8192)),
    ParamSpec("sample_frames_per_image", 45, "frames per photo of the built-in sample",
              int_range=(1, 100000)),
    ParamSpec("frame_id", "camera", "header.frame_id of the published frames"),
    ParamSpec("encoding", "rgb8", "encoding of the published Image", choices=SUPPORTED_ENCODINGS),
    ParamSpec("output_topic", "image_raw", "image topic", check=check_topic),
    ParamSpec("publish_camera_info", True,
              "publish a nominal (uncalibrated, 60 deg) CameraInfo beside the image"),
    ParamSpec("publish_compressed", False,
              "also publish a JPEG CompressedImage on <output_topic>/compressed"),
    ParamSpec("jpeg_quality", 90, "JPEG quality of the compressed frames", int_range=(1, 100)),
    ParamSpec("qos_reliability", "reliable", "reliability of the publishers", choices=QOS_RELIABILITY),
    ParamSpec("qos_depth", 1, "history depth of the publishers", int_range=(1, 100)),
)


class ImageSourceNode(Node):
    def __init__(self, **node_kwargs):
        super().__init__("image_source_node", **node_kwargs)
        self.params = p = declare_all(self, PARAMS)
        self.source = open_source(p["source"], p["width"], p["height"], p["bag_topic"],
                                  p["sample_frames_per_image"])
        self.frames = looping(self.source, p["loop"], p["max_frames"])
        qos = qos_profile(p["qos_reliability"], p["qos_depth"])
        topic = self.resolve_topic_name(p["output_topic"])
        self.pub = self.create_publisher(Image, topic, qos)
        self._payload = conv.PayloadBuffer()   # reused for every frame (the timer's thread only)
        self.pub_info = (self.create_publisher(CameraInfo, conv.sibling_topic(topic, "camera_info"), qos)
                         if p["publish_camera_info"] else None)
        self.pub_compressed = (self.create_publisher(CompressedImage, topic + "/compressed", qos)
                               if p["publish_compressed"] else None)
        self.sent = 0
        self.done = False
        self._info_cache = None
        self.timer = self.create_timer(1.0 / p["rate"], self._tick)
        self.get_logger().info(f"publishing {self.source.describe()} on {topic} at {p['rate']:g} Hz"
                               f"{' (looping)' if p['loop'] else ''}")

    def _camera_info(self, header: Header, width: int, height: int) -> CameraInfo:
        if self._info_cache is None or (self._info_cache.width, self._info_cache.height) != (width, height):
            info = CameraInfo()
            info.width, info.height, info.distortion_model = width, height, "plumb_bob"
            info.d = [0.0] * 5
            info.k, info.p = nominal_intrinsics(width, height)
            info.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
            self._info_cache = info
        self._info_cache.header = header
        return self._info_cache

    def _tick(self) -> None:
        try:
            frame = next(self.frames)
        except StopIteration:
            self.get_logger().info(f"source finished after {self.sent} frames")
            self.timer.cancel()
            self.done = True
            return
        except MuonAdError as exc:
            self.get_logger().error(str(exc))
            self.timer.cancel()
            self.done = True
            return
        header = Header()
        header.stamp = self.get_clock().now().to_msg()
        header.frame_id = self.params["frame_id"]
        height, width = frame.rgb.shape[:2]
        self.pub.publish(conv.rgb_to_image(frame.rgb, header, self.params["encoding"], self._payload))
        if self.pub_info is not None:
            self.pub_info.publish(self._camera_info(header, width, height))
        if self.pub_compressed is not None:
            self.pub_compressed.publish(
                conv.rgb_to_compressed(frame.rgb, header, "jpeg", self.params["jpeg_quality"]))
        self.sent += 1


def main(args=None):
    return spin_main("image_source_node", ImageSourceNode, __doc__, PARAMS, args, spin=spin_until_done)


if __name__ == "__main__":
    sys.exit(main())
