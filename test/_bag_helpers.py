"""Helpers for the bag evaluation tests: real video frames, and small bags written from them."""
from pathlib import Path

import cv2
import numpy as np
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore

from _shared import DATA

BAGS = DATA / "bags"
VIDEO = DATA / "video" / "tree.avi"

TS = get_typestore(Stores.ROS2_KILTED)
Image = TS.types["sensor_msgs/msg/Image"]
CompressedImage = TS.types["sensor_msgs/msg/CompressedImage"]
Header = TS.types["std_msgs/msg/Header"]
Time = TS.types["builtin_interfaces/msg/Time"]

T0_NS = 1_700_000_000_000_000_000  # bag (receive) time of the first frame
PERIOD_NS = 100_000_000            # 10 fps
STAMP_LAG_NS = 12_345_678          # header stamps are earlier than receive times, as on a robot


def camera_frames(count=10, size=(96, 72)):
    """`count` consecutive frames of real footage as HxWx3 uint8 RGB of `size` (w, h): the shared
    video when it is there, else the built-in sample (a slow pan and zoom over a scikit-image photo,
    what image_source_node publishes), so a clone without ../shared runs the same tests."""
    if VIDEO.exists():
        return video_frames(count, size)
    from muon_ad_ros.core.frame_sources import SampleSource

    source = SampleSource(size[0], size[1], frames_per_image=max(count, 2))
    return [frame.rgb for frame, _ in zip(source.frames(), range(count))]


def video_frames(count=10, size=(96, 72), path=VIDEO):
    """The first `count` frames of a real video as HxWx3 uint8 RGB, resized to `size` (w, h)."""
    cap = cv2.VideoCapture(str(path))
    frames = []
    while len(frames) < count:
        ok, bgr = cap.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(cv2.resize(bgr, size, interpolation=cv2.INTER_AREA),
                                   cv2.COLOR_BGR2RGB))
    cap.release()
    if len(frames) < count:
        raise RuntimeError(f"{path}: wanted {count} frames, read {len(frames)}")
    return frames


def receive_time(i):
    return T0_NS + i * PERIOD_NS


def header_stamp(i):
    ns = receive_time(i) - STAMP_LAG_NS
    return ns // 1_000_000_000, ns % 1_000_000_000


def image_msg(rgb, i, frame_id="camera", encoding="rgb8"):
    data = rgb if encoding == "rgb8" else rgb[..., ::-1]
    sec, nsec = header_stamp(i)
    return Image(header=Header(stamp=Time(sec=sec, nanosec=nsec), frame_id=frame_id),
                 height=rgb.shape[0], width=rgb.shape[1], encoding=encoding, is_bigendian=0,
                 step=rgb.shape[1] * 3, data=np.ascontiguousarray(data).reshape(-1))


def compressed_msg(rgb, i, frame_id="camera", data=None):
    if data is None:
        ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR),
                               [cv2.IMWRITE_JPEG_QUALITY, 95])
        assert ok
        data = buf.reshape(-1)
    sec, nsec = header_stamp(i)
    return CompressedImage(header=Header(stamp=Time(sec=sec, nanosec=nsec), frame_id=frame_id),
                           format="jpeg", data=np.frombuffer(bytes(data), np.uint8))


def write_bag(path, frames, storage="mcap", image_topic="/camera/image_raw",
              compressed_topic="/camera/image_raw/compressed", bad_compressed=(), extra_topic=True):
    """A rosbag2 directory with one Image and one CompressedImage topic of `frames` (interleaved in
    time as a camera driver publishes them), plus a non-image topic. Frames whose index is in
    `bad_compressed` get garbage bytes in the CompressedImage. Returns the bag path."""
    plugin = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}[storage]
    with Writer(path, version=9, storage_plugin=plugin) as w:
        conns = {}
        if image_topic:
            conns["img"] = w.add_connection(image_topic, Image.__msgtype__, typestore=TS)
        if compressed_topic:
            conns["cmp"] = w.add_connection(compressed_topic, CompressedImage.__msgtype__,
                                            typestore=TS)
        if extra_topic:
            Temp = TS.types["sensor_msgs/msg/Temperature"]
            conns["temp"] = w.add_connection("/temperature", Temp.__msgtype__, typestore=TS)
        for i, rgb in enumerate(frames):
            if "img" in conns:
                w.write(conns["img"], receive_time(i),
                        TS.serialize_cdr(image_msg(rgb, i), Image.__msgtype__))
            if "cmp" in conns:
                data = b"\x00not a jpeg" * 8 if i in bad_compressed else None
                w.write(conns["cmp"], receive_time(i) + 1000,
                        TS.serialize_cdr(compressed_msg(rgb, i, data=data),
                                         CompressedImage.__msgtype__))
            if "temp" in conns:
                sec, nsec = header_stamp(i)
                msg = Temp(header=Header(stamp=Time(sec=sec, nanosec=nsec), frame_id="t"),
                           temperature=20.0 + i, variance=0.0)
                w.write(conns["temp"], receive_time(i) + 2000, TS.serialize_cdr(msg, Temp.__msgtype__))
    return Path(path)


def storage_file(bag_dir):
    """The single .mcap / .db3 file of a rosbag2 directory."""
    files = [p for p in Path(bag_dir).iterdir() if p.suffix in (".mcap", ".db3")]
    assert len(files) == 1, files
    return files[0]


def write_ros1_bag(path, frames, topic="/camera/image_raw"):
    """A ROS 1 .bag with one sensor_msgs/Image topic (header seq included, as ROS 1 has it)."""
    from rosbags.rosbag1 import Writer as Writer1
    ts1 = get_typestore(Stores.ROS1_NOETIC)
    Image1 = ts1.types["sensor_msgs/msg/Image"]
    Header1 = ts1.types["std_msgs/msg/Header"]
    Time1 = ts1.types["builtin_interfaces/msg/Time"]
    with Writer1(path) as w:
        conn = w.add_connection(topic, Image1.__msgtype__, typestore=ts1)
        for i, rgb in enumerate(frames):
            sec, nsec = header_stamp(i)
            msg = Image1(header=Header1(seq=i, stamp=Time1(sec=sec, nanosec=nsec), frame_id="camera"),
                         height=rgb.shape[0], width=rgb.shape[1], encoding="bgr8", is_bigendian=0,
                         step=rgb.shape[1] * 3, data=np.ascontiguousarray(rgb[..., ::-1]).reshape(-1))
            w.write(conn, receive_time(i), ts1.serialize_ros1(msg, Image1.__msgtype__))
    return Path(path)
