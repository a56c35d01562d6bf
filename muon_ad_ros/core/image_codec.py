"""sensor_msgs/Image fields <-> numpy arrays, plain numpy / OpenCV (never rclpy).

A raw frame arrives as six header fields plus a byte buffer. Every header field is untrusted: the
sizes are checked against MAX_SIDE / MAX_PIXELS and against len(data) *before* anything is
allocated, so a corrupt or hostile header costs an exception, never gigabytes. Rows are read
through a strided view over the caller's buffer (honouring `step` padding), so the only copy is the
one that produces the output array.

Conversions to RGB use cv2.cvtColor (BT.601 for YUV, as OpenCV and cv_bridge do); no Python loop
ever touches a pixel.

Compressed images (sensor_msgs/CompressedImage) live in compressed_codec.py; decode_compressed and
encode_compressed are re-exported here so that callers need one module.
"""
import array
import operator
from dataclasses import dataclass
from typing import NamedTuple, Optional, Union

import cv2
import numpy as np

from muon_ad_ros.core.errors import ImageFormatError

# Limits on any frame we accept (raw or decoded). 16384 px per side covers every camera we know of;
# 64 Mpx caps a single RGB frame at 192 MiB. Read at call time, so tests can lower them.
MAX_SIDE = 16384
MAX_PIXELS = 64 * 1024 * 1024
# What a node accepts by default (its max_input_pixels parameter): a 4K UHD frame. MAX_PIXELS is
# the absolute cap for offline tools; at it one frame is 192 MiB raw and a few GB in flight.
NODE_MAX_PIXELS = 3840 * 2160
# The network input's longer side unless a caller asks otherwise (core/stylizer.InputPolicy): full
# size is never a safe default (a 1920x1080 frame at full size needs 2.8 GB in the network, a
# 2560x1440 one hit a 10 GB limit). 0 asks for full size.
DEFAULT_MAX_SIDE = 640

ByteData = Union[bytes, bytearray, memoryview, array.array, np.ndarray]


class _Layout(NamedTuple):
    """How one encoding lays a pixel out in memory."""
    channels: int        # values per pixel in the native array (yuv422: 2 bytes per pixel, Y + U|V)
    bytes_per_pixel: int
    to_rgb: int          # cv2.cvtColor code to RGB, or -1 where it is done without cvtColor
    from_rgb: int        # cv2.cvtColor code from RGB, or -1 where it is done without cvtColor


# Names as in sensor_msgs/image_encodings.hpp. "uyvy"/"yuyv" are the current names of the
# deprecated "yuv422"/"yuv422_yuy2"; both spellings are in use on real cameras.
_LAYOUTS = {
    "rgb8": _Layout(3, 3, -1, -1),
    "bgr8": _Layout(3, 3, cv2.COLOR_BGR2RGB, cv2.COLOR_RGB2BGR),
    "rgba8": _Layout(4, 4, cv2.COLOR_RGBA2RGB, cv2.COLOR_RGB2RGBA),
    "bgra8": _Layout(4, 4, cv2.COLOR_BGRA2RGB, cv2.COLOR_RGB2BGRA),
    "mono8": _Layout(1, 1, cv2.COLOR_GRAY2RGB, cv2.COLOR_RGB2GRAY),
    "mono16": _Layout(1, 2, -1, -1),
    "yuv422": _Layout(2, 2, cv2.COLOR_YUV2RGB_UYVY, cv2.COLOR_RGB2YUV_UYVY),
    "uyvy": _Layout(2, 2, cv2.COLOR_YUV2RGB_UYVY, cv2.COLOR_RGB2YUV_UYVY),
    "yuv422_yuy2": _Layout(2, 2, cv2.COLOR_YUV2RGB_YUYV, cv2.COLOR_RGB2YUV_YUYV),
    "yuyv": _Layout(2, 2, cv2.COLOR_YUV2RGB_YUYV, cv2.COLOR_RGB2YUV_YUYV),
}
SUPPORTED_ENCODINGS = tuple(_LAYOUTS)


@dataclass
class ImageFields:
    """The plain fields of sensor_msgs/Image, minus the header."""
    height: int
    width: int
    encoding: str
    step: int            # bytes per row, >= width * bytes_per_pixel
    is_bigendian: bool   # only meaningful for mono16
    data: bytes


# ----------------------------------------------------------------------------------------------
# validation helpers (shared with compressed_codec)

def check_image_size(height: int, width: int, max_pixels: Optional[int] = None) -> None:
    """Raise ImageFormatError unless 0 < height, width <= MAX_SIDE and height * width is at most
    ``max_pixels`` (a caller's tighter limit, e.g. a node's parameter) and MAX_PIXELS."""
    limit = MAX_PIXELS if max_pixels is None else min(int(max_pixels), MAX_PIXELS)
    if height <= 0 or width <= 0:
        raise ImageFormatError(f"image size {width}x{height} (width x height) must be positive")
    if height > MAX_SIDE or width > MAX_SIDE or height * width > limit:
        raise ImageFormatError(
            f"image size {width}x{height} exceeds the limit of {MAX_SIDE} px per side "
            f"and {limit} pixels")


def byte_view(data: ByteData) -> np.ndarray:
    """A 1-D uint8 array over `data` without copying (except a non-contiguous numpy array)."""
    if isinstance(data, np.ndarray):
        if data.dtype != np.uint8:
            raise ImageFormatError(f"image data must be uint8, got a numpy array of {data.dtype}")
        return data.reshape(-1)
    if isinstance(data, array.array) and data.itemsize != 1:
        raise ImageFormatError(f"image data must be an array of bytes, got array.array('{data.typecode}')")
    if isinstance(data, str) or not isinstance(data, (bytes, bytearray, memoryview, array.array)):
        raise ImageFormatError(
            f"image data must be bytes, bytearray, memoryview, array.array('B') or a uint8 numpy "
            f"array, got {type(data).__name__}")
    try:
        return np.frombuffer(data, dtype=np.uint8)
    except (ValueError, TypeError) as e:   # e.g. a non-contiguous memoryview
        raise ImageFormatError(f"image data is not a contiguous byte buffer: {e}") from None


def _is_immutable(data: ByteData) -> bool:
    """True where a view over `data` can never change under us (so it need not be copied)."""
    if isinstance(data, memoryview):
        return data.readonly and isinstance(data.obj, bytes)
    return isinstance(data, bytes)


def _layout(encoding: str) -> _Layout:
    if not isinstance(encoding, str) or encoding not in _LAYOUTS:
        raise ImageFormatError(
            f"unsupported image encoding {encoding!r}; supported: {', '.join(SUPPORTED_ENCODINGS)}")
    return _LAYOUTS[encoding]


def _as_int(name: str, value) -> int:
    try:
        return operator.index(value)
    except TypeError:
        raise ImageFormatError(f"{name} must be an integer, got {value!r}") from None


def _check_even_width(encoding: str, width: int) -> None:
    # A UYVY/YUYV macro-pixel (4 bytes) holds two pixels that share one U and one V.
    if _LAYOUTS[encoding].channels == 2 and width % 2:
        raise ImageFormatError(f"{encoding} needs an even width (2 pixels share chroma), got {width}")


def _pixel_view(height, width, encoding, step, is_bigendian, data, max_pixels=None) -> np.ndarray:
    """Validate the header fields and return a strided, padding-free view over `data`.

    Shapes: HxWxC uint8 (rgb8/bgr8/rgba8/bgra8), HxWx2 uint8 (yuv422 raw), HxW uint8 (mono8),
    HxW uint16 in the byte order of the message (mono16, maybe non-native).
    """
    layout = _layout(encoding)
    height, width, step = _as_int("height", height), _as_int("width", width), _as_int("step", step)
    check_image_size(height, width, max_pixels)
    _check_even_width(encoding, width)
    row_bytes = width * layout.bytes_per_pixel
    if step < row_bytes:
        raise ImageFormatError(
            f"step {step} is smaller than one row of {width} px of {encoding} ({row_bytes} bytes)")
    buf = byte_view(data)
    if buf.size < step * height:
        raise ImageFormatError(
            f"image data has {buf.size} bytes, expected step * height = {step} * {height} = {step * height}")
    rows = buf[:step * height].reshape(height, step)[:, :row_bytes]   # (H, row_bytes), strides (step, 1)
    if encoding == "mono16":
        return rows.view(">u2" if is_bigendian else "<u2")            # (H, W)
    if layout.channels == 1:
        return rows                                                   # (H, W)
    return rows.reshape(height, width, layout.channels)               # (H, W, C), still a view


def _describe(value) -> str:
    if isinstance(value, np.ndarray):
        return f"{value.dtype} array of shape {value.shape}"
    return type(value).__name__


def check_rgb8(rgb: np.ndarray) -> np.ndarray:
    if not isinstance(rgb, np.ndarray) or rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ImageFormatError(f"expected an HxWx3 uint8 RGB array, got {_describe(rgb)}")
    check_image_size(rgb.shape[0], rgb.shape[1])
    return rgb if rgb.flags.c_contiguous else np.ascontiguousarray(rgb)


# ----------------------------------------------------------------------------------------------
# public API

def fields_to_array(height, width, encoding, step, is_bigendian, data) -> np.ndarray:
    """The pixels of a sensor_msgs/Image in their native layout, without row padding.

    Returns HxWxC uint8 (C = 3 or 4), HxW uint8 (mono8), HxW native uint16 (mono16) or HxWx2 uint8
    (yuv422 / yuv422_yuy2 raw bytes). The result never aliases a mutable buffer: it is a read-only
    view when `data` is immutable bytes, a fresh C-contiguous copy otherwise.
    """
    view = _pixel_view(height, width, encoding, step, is_bigendian, data)
    if view.dtype.itemsize == 2 and not view.dtype.isnative:
        return view.astype(np.uint16)               # byte swap; this is the copy
    if _is_immutable(data):
        view.flags.writeable = False
        return view
    return np.array(view, order="C")


def array_to_fields(array: np.ndarray, encoding: str) -> ImageFields:
    """Pack an array in the native layout of `encoding` (see fields_to_array) into Image fields.

    step = width * bytes_per_pixel (no padding), is_bigendian False.
    """
    layout = _layout(encoding)
    dtype = np.uint16 if encoding == "mono16" else np.uint8
    if isinstance(array, np.ndarray) and layout.channels == 1 and array.ndim == 3 and array.shape[2] == 1:
        array = array[..., 0]                                         # accept HxWx1 for mono
    expected_ndim = 2 if layout.channels == 1 else 3
    if (not isinstance(array, np.ndarray) or array.dtype != dtype or array.ndim != expected_ndim
            or (expected_ndim == 3 and array.shape[2] != layout.channels)):
        shape = "HxW" if expected_ndim == 2 else f"HxWx{layout.channels}"
        raise ImageFormatError(
            f"{encoding} expects an {shape} {np.dtype(dtype).name} array, got {_describe(array)}")
    height, width = array.shape[:2]
    check_image_size(height, width)
    _check_even_width(encoding, width)
    if encoding == "mono16":
        array = array.astype("<u2", copy=False)     # ROS default byte order is little-endian
    return ImageFields(height=height, width=width, encoding=encoding,
                       step=width * layout.bytes_per_pixel, is_bigendian=False, data=array.tobytes())


def fields_to_rgb8(height, width, encoding, step, is_bigendian, data,
                   max_pixels: Optional[int] = None) -> np.ndarray:
    """Any supported sensor_msgs/Image as a fresh, writable HxWx3 uint8 RGB array (at most
    ``max_pixels`` pixels, checked from the header before anything is allocated).

    Alpha is dropped, mono is replicated to three channels, mono16 keeps its top byte, and YUV 4:2:2
    is converted with OpenCV's BT.601 coefficients.
    """
    view = _pixel_view(height, width, encoding, step, is_bigendian, data, max_pixels)
    if encoding == "rgb8":
        return np.array(view, order="C")
    if encoding == "mono16":
        # Read the most significant byte straight from memory as a uint8 view (H, W) with stride 2
        # instead of shifting a converted uint16 copy (10x faster at 640x480).
        rows8 = view.view(np.uint8)                 # (H, 2W), the raw bytes of the rows
        top = rows8[:, 0::2] if is_bigendian else rows8[:, 1::2]
        return cv2.cvtColor(top, cv2.COLOR_GRAY2RGB)
    return cv2.cvtColor(view, _LAYOUTS[encoding].to_rgb)


def rgb8_to_native(rgb: np.ndarray, encoding: str) -> np.ndarray:
    """An HxWx3 uint8 RGB frame in the native layout of `encoding` (see fields_to_array): C-contiguous,
    mono16 little-endian, so its bytes are an Image's data with step = width * bytes_per_pixel.

    mono8 is BT.601 luminance, mono16 is luminance * 257 (so 255 maps to 65535 and the top byte is
    the 8-bit value), yuv422 encodings subsample chroma 2:1 horizontally (needs an even width).
    """
    layout = _layout(encoding)
    rgb = check_rgb8(rgb)
    _check_even_width(encoding, rgb.shape[1])
    if encoding == "rgb8":
        return rgb
    if encoding == "mono16":
        gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.uint16) * np.uint16(257)
        return gray.astype("<u2", copy=False)
    return np.ascontiguousarray(cv2.cvtColor(rgb, layout.from_rgb))


def rgb8_to_fields(rgb: np.ndarray, encoding: str) -> ImageFields:
    """Convert an HxWx3 uint8 RGB frame to Image fields in `encoding` (e.g. the input's encoding);
    the pixels as rgb8_to_native makes them."""
    return array_to_fields(rgb8_to_native(rgb, encoding), encoding)


# ----------------------------------------------------------------------------------------------
# compressed images: thin re-exports (compressed_codec imports the limits above, so the import
# is deferred to call time to keep the module graph acyclic)

def decode_compressed(format: str, data: ByteData, max_pixels: Optional[int] = None) -> np.ndarray:
    """Decode a sensor_msgs/CompressedImage to HxWx3 uint8 RGB. See compressed_codec.decode_compressed."""
    from muon_ad_ros.core import compressed_codec
    return compressed_codec.decode_compressed(format, data, max_pixels)


def encode_compressed(rgb: np.ndarray, fmt: str = "jpeg", quality: int = 90) -> tuple[str, bytes]:
    """Encode HxWx3 uint8 RGB to (ROS format string, bytes). See compressed_codec.encode_compressed."""
    from muon_ad_ros.core import compressed_codec
    return compressed_codec.encode_compressed(rgb, fmt, quality)
