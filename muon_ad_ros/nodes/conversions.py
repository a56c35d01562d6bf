"""sensor_msgs <-> core conversions for the nodes: thin wrappers over core.image_codec.

All pixel work is in the core; this file only moves fields between ROS messages and the core's
plain types. Two details matter for speed: a ``uint8[]`` field assigned a ``bytes`` object is
validated element by element by the generated setter (~50 ms for a VGA frame), while an
``array.array('B')`` is taken as is by a message made with ``check_fields=True`` (one made without
copies it), so outgoing data is always such an array in such a message; and a publisher that sends a
frame per inference reuses one such array (PayloadBuffer): the pixels are copied once, into memory
that is already mapped, instead of twice into fresh allocations (``tobytes`` then ``frombytes``),
which in a node whose other threads are busy cost 1-2 ms a frame instead of ~0.1 ms.
"""
from __future__ import annotations

import array
import math
from typing import Optional, Sequence

import numpy as np
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_msgs.msg import Header

from muon_ad_ros.core.image_codec import (decode_compressed, encode_compressed, fields_to_rgb8,
                                          rgb8_to_native)


def stamp_to_ns(stamp) -> int:
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def byte_array(data: bytes) -> array.array:
    out = array.array("B")
    out.frombytes(data)
    return out


class PayloadBuffer:
    """A publisher's reusable ``uint8[]`` payload.

    ``fill`` copies an array's bytes into the same ``array.array`` each time (a new one only when
    the size changes) and returns it for a message's ``data``. rclpy's ``publish`` copies the
    message into its own C structure before it returns, so the buffer may be refilled after
    ``publish``, not before: one PayloadBuffer per publisher, used by one thread.
    """

    def __init__(self):
        self._data = array.array("B")
        self._view: Optional[np.ndarray] = None   # numpy view of _data (holds its buffer export)

    def fill(self, native: np.ndarray) -> array.array:
        flat = np.ascontiguousarray(native).reshape(-1).view(np.uint8)
        if self._view is None or self._view.size != flat.size:
            self._view = None                        # release the export before replacing _data
            self._data = array.array("B", bytes(flat.size))
            self._view = np.frombuffer(self._data, np.uint8)
        self._view[:] = flat
        return self._data


def image_to_rgb(msg: Image, max_pixels: Optional[int] = None) -> np.ndarray:
    """HxWx3 uint8 RGB from any supported Image encoding; ImageFormatError if malformed or larger
    than ``max_pixels``."""
    return fields_to_rgb8(msg.height, msg.width, msg.encoding, msg.step, msg.is_bigendian, msg.data,
                          max_pixels)


def compressed_to_rgb(msg: CompressedImage, max_pixels: Optional[int] = None) -> np.ndarray:
    """HxWx3 uint8 RGB from a JPEG/PNG CompressedImage; ImageFormatError if malformed or larger than
    ``max_pixels`` (read from the header, before decoding)."""
    return decode_compressed(msg.format, msg.data, max_pixels)


def rgb_to_image(rgb: np.ndarray, header: Header, encoding: str = "rgb8",
                 payload: Optional[PayloadBuffer] = None) -> Image:
    """An Image in ``encoding`` from HxWx3 uint8 RGB. With ``payload`` the message's data is that
    buffer (publish the message before the next fill); without, a buffer of its own."""
    native = rgb8_to_native(rgb, encoding)   # C-contiguous: step = width * bytes per pixel
    msg = Image(check_fields=True)           # takes the payload's array as is (see the module doc)
    msg.header = header
    msg.height, msg.width = native.shape[0], native.shape[1]
    msg.encoding, msg.is_bigendian, msg.step = encoding, 0, native.strides[0]
    msg.data = (payload or PayloadBuffer()).fill(native)
    return msg


def rgb_to_compressed(rgb: np.ndarray, header: Header, fmt: str = "jpeg",
                      quality: int = 90) -> CompressedImage:
    format_str, data = encode_compressed(rgb, fmt, quality)
    msg = CompressedImage()
    msg.header = header
    msg.format = format_str
    msg.data = byte_array(data)
    return msg


# ----------------------------------------------------------------------------------------------
# camera intrinsics

def scale_intrinsics(k: Sequence[float], p: Sequence[float], sx: float, sy: float) -> tuple[list, list]:
    """K (3x3) and P (3x4), row-major, for an image resized by (sx, sy).

    Pixel coordinates scale as u' = sx * u (taking pixel centres at integer coordinates, as the
    ROS CameraInfo convention and OpenCV do), so fx, cx and P's Tx = -fx * baseline scale by sx,
    fy, cy (and Ty) by sy; the third rows are unchanged.
    """
    k2 = list(map(float, k))
    p2 = list(map(float, p))
    for i in (0, 1, 2):          # row 0 of K: fx, skew, cx
        k2[i] *= sx
    for i in (3, 4, 5):          # row 1 of K: 0, fy, cy
        k2[i] *= sy
    for i in (0, 1, 2, 3):       # row 0 of P: fx', skew, cx', Tx
        p2[i] *= sx
    for i in (4, 5, 6, 7):       # row 1 of P: 0, fy', cy', Ty
        p2[i] *= sy
    return k2, p2


def scaled_camera_info(info: CameraInfo, header: Header, in_size: tuple[int, int],
                       out_size: tuple[int, int]) -> CameraInfo:
    """A copy of ``info`` with ``header``, rescaled from in_size to out_size (width, height).

    Unchanged (but for the header) when the sizes are equal. D and R do not depend on the pixel
    scale; binning is kept; the ROI scales with the image.
    """
    out = CameraInfo()
    out.header = header
    out.distortion_model = info.distortion_model
    out.d = info.d
    out.r = info.r
    out.binning_x, out.binning_y = info.binning_x, info.binning_y
    in_w, in_h = in_size
    out_w, out_h = out_size
    if (in_w, in_h) == (out_w, out_h):
        out.width, out.height, out.k, out.p, out.roi = info.width, info.height, info.k, info.p, info.roi
        return out
    sx, sy = out_w / in_w, out_h / in_h
    k, p = scale_intrinsics(info.k, info.p, sx, sy)
    out.k, out.p = k, p
    out.width = round(info.width * sx) if info.width else out_w
    out.height = round(info.height * sy) if info.height else out_h
    roi = out.roi
    roi.x_offset = int(math.floor(info.roi.x_offset * sx))
    roi.y_offset = int(math.floor(info.roi.y_offset * sy))
    roi.width = round(info.roi.width * sx)
    roi.height = round(info.roi.height * sy)
    roi.do_rectify = info.roi.do_rectify
    return out


def find_by_stamp(infos: Sequence[tuple[int, CameraInfo]], stamp_ns: int) -> Optional[CameraInfo]:
    """The CameraInfo with exactly this stamp, else the newest one, else None."""
    for ns, info in reversed(infos):
        if ns == stamp_ns:
            return info
    return infos[-1][1] if infos else None


def sibling_topic(resolved: str, name: str) -> str:
    """'/a/b/image' + 'camera_info' -> '/a/b/camera_info' (image_transport's camera-info rule)."""
    parent = resolved.rsplit("/", 1)[0]
    return f"{parent}/{name}"
