"""Tests of muon_ad_ros.core.image_codec / compressed_codec: sensor_msgs/Image fields <-> numpy."""
import array
import struct
import tracemalloc
import zlib

import cv2
import numpy as np
import pytest
import skimage.data

from _shared import DATA
from muon_ad_ros.core import compressed_codec, image_codec
from muon_ad_ros.core.errors import ConfigError, ImageFormatError
from muon_ad_ros.core.image_codec import (SUPPORTED_ENCODINGS, ImageFields, array_to_fields,
                                          decode_compressed, encode_compressed, fields_to_array,
                                          fields_to_rgb8, rgb8_to_fields)

YUV_ENCODINGS = ("yuv422", "uyvy", "yuv422_yuy2", "yuyv")
UYVY_ENCODINGS = ("yuv422", "uyvy")
DATA_KINDS = ("bytes", "bytearray", "memoryview", "array", "numpy")


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return skimage.data.astronaut()                       # (512, 512, 3) uint8 RGB photo


def _photo(h=48, w=64) -> np.ndarray:
    """A small real RGB photo crop (even width, so every encoding accepts it)."""
    return np.ascontiguousarray(skimage.data.astronaut()[100:100 + h, 150:150 + w])


def _as_kind(data: bytes, kind: str):
    """The same bytes as one of the buffer types a caller (rclpy, rosbags, user code) may pass."""
    makers = {"bytes": lambda: data, "bytearray": lambda: bytearray(data),
              "memoryview": lambda: memoryview(data), "array": lambda: array.array("B", data),
              "numpy": lambda: np.frombuffer(data, np.uint8).copy()}
    return makers[kind]()


def _pad_rows(f: ImageFields, extra: int, fill: int = 0xAB) -> ImageFields:
    """The same image with `extra` garbage bytes after every row (step > width * bpp)."""
    rows = np.frombuffer(f.data, np.uint8).reshape(f.height, f.step)
    padded = np.full((f.height, f.step + extra), fill, np.uint8)
    padded[:, :f.step] = rows
    return ImageFields(f.height, f.width, f.encoding, f.step + extra, f.is_bigendian, padded.tobytes())


def _native(encoding: str, h: int, w: int, rng) -> np.ndarray:
    """A random array in the native layout fields_to_array returns for `encoding`."""
    if encoding == "mono16":
        return rng.integers(0, 65536, (h, w), dtype=np.uint16)
    if encoding == "mono8":
        return rng.integers(0, 256, (h, w), dtype=np.uint8)
    channels = {"rgb8": 3, "bgr8": 3, "rgba8": 4, "bgra8": 4}.get(encoding, 2)
    return rng.integers(0, 256, (h, w, channels), dtype=np.uint8)


def _call(fn, f: ImageFields, data=None):
    return fn(f.height, f.width, f.encoding, f.step, f.is_bigendian, f.data if data is None else data)


# ---------------------------------------------------------------------------------------------
# raw Image fields

@pytest.mark.parametrize("encoding", SUPPORTED_ENCODINGS)
@pytest.mark.parametrize("pad", [0, 5])
def test_array_round_trip(encoding, pad):
    rng = np.random.default_rng(0)
    native = _native(encoding, 6, 10, rng)
    f = array_to_fields(native, encoding)
    bpp = native.itemsize * (native.shape[2] if native.ndim == 3 else 1)
    assert (f.height, f.width, f.step, f.is_bigendian) == (6, 10, 10 * bpp, False)
    assert len(f.data) == f.step * f.height
    back = _call(fields_to_array, _pad_rows(f, pad))
    assert back.dtype == native.dtype and back.shape == native.shape
    np.testing.assert_array_equal(back, native)


@pytest.mark.parametrize("kind", DATA_KINDS)
@pytest.mark.parametrize("encoding", ["bgra8", "mono16", "yuyv"])
def test_every_buffer_type_is_accepted(kind, encoding):
    native = _native(encoding, 4, 6, np.random.default_rng(1))
    f = _pad_rows(array_to_fields(native, encoding), 3)
    np.testing.assert_array_equal(_call(fields_to_array, f, _as_kind(f.data, kind)), native)
    np.testing.assert_array_equal(_call(fields_to_rgb8, f, _as_kind(f.data, kind)), _call(fields_to_rgb8, f))


def test_result_never_aliases_a_mutable_buffer():
    native = _native("rgb8", 4, 6, np.random.default_rng(2))
    f = array_to_fields(native, "rgb8")
    for data in (bytearray(f.data), array.array("B", f.data), np.frombuffer(f.data, np.uint8).copy()):
        out = _call(fields_to_array, f, data)
        data[0] ^= 0xFF                                   # the sender reuses its buffer
        assert out[0, 0, 0] == native[0, 0, 0]
    view = _call(fields_to_array, f)                      # immutable bytes: a read-only view is fine
    assert not view.flags.writeable
    rgb = _call(fields_to_rgb8, f)
    assert rgb.flags.writeable and rgb.flags.c_contiguous


def test_big_endian_mono16():
    native = _native("mono16", 5, 7, np.random.default_rng(3))
    big = native.astype(">u2").tobytes()
    f = _pad_rows(ImageFields(5, 7, "mono16", 14, True, big), 4)
    out = _call(fields_to_array, f)
    assert out.dtype == np.uint16 and out.dtype.isnative
    np.testing.assert_array_equal(out, native)
    rgb = _call(fields_to_rgb8, f)
    np.testing.assert_array_equal(rgb, np.repeat((native >> 8).astype(np.uint8)[..., None], 3, axis=2))
    # the little-endian message of the same image reads back identically
    little = array_to_fields(native, "mono16")
    np.testing.assert_array_equal(_call(fields_to_rgb8, little), rgb)


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "rgba8", "bgra8"])
@pytest.mark.parametrize("pad", [0, 7])
def test_colour_encodings_are_lossless(encoding, pad):
    rgb = _photo()
    f = rgb8_to_fields(rgb, encoding)
    if encoding.startswith("bgr"):                        # really stored blue first
        assert f.data[:3] == bytes(rgb[0, 0, ::-1])
    if encoding.endswith("a8"):
        assert np.all(fields_to_array(f.height, f.width, f.encoding, f.step, False, f.data)[..., 3] == 255)
    np.testing.assert_array_equal(_call(fields_to_rgb8, _pad_rows(f, pad)), rgb)


@pytest.mark.parametrize("encoding", ["mono8", "mono16"])
def test_mono_is_luminance(encoding):
    rgb = _photo()
    f = rgb8_to_fields(rgb, encoding)
    luma = 0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2]     # BT.601
    native = _call(fields_to_array, f).astype(np.float64)
    if encoding == "mono16":
        native /= 257.0                                    # 0..255 spread over 0..65535
    assert np.abs(native - luma).max() <= 1.0
    out = _call(fields_to_rgb8, _pad_rows(f, 3))
    assert np.all(out == out[..., :1]) and np.abs(out[..., 0] - luma).max() <= 1.0


def _bt601_limited_range(y, u, v):
    """Reference YUV -> RGB (ITU-R BT.601, Y in 16..235), written out independently of OpenCV."""
    c = 1.164 * (y - 16.0)
    u, v = u - 128.0, v - 128.0
    rgb = np.stack([c + 1.596 * v, c - 0.813 * v - 0.391 * u, c + 2.018 * u], -1)
    return np.clip(np.round(rgb), 0, 255)


@pytest.mark.parametrize("encoding", YUV_ENCODINGS)
def test_yuv422_to_rgb_matches_bt601(encoding):
    rng = np.random.default_rng(4)
    h, w = 6, 12
    y = rng.integers(16, 236, (h, w))
    u, v = rng.integers(16, 241, (h, w // 2)), rng.integers(16, 241, (h, w // 2))
    macro = np.empty((h, w // 2, 4), np.uint8)             # one 4-byte macro-pixel holds 2 pixels
    if encoding in UYVY_ENCODINGS:
        macro[..., 0], macro[..., 1], macro[..., 2], macro[..., 3] = u, y[:, 0::2], v, y[:, 1::2]
    else:
        macro[..., 0], macro[..., 1], macro[..., 2], macro[..., 3] = y[:, 0::2], u, y[:, 1::2], v
    f = _pad_rows(ImageFields(h, w, encoding, 2 * w, False, macro.tobytes()), 6)
    out = _call(fields_to_rgb8, f)
    ref = _bt601_limited_range(y, np.repeat(u, 2, axis=1), np.repeat(v, 2, axis=1))
    assert np.abs(out.astype(int) - ref).max() <= 2


@pytest.mark.parametrize("encoding", YUV_ENCODINGS)
def test_rgb_to_yuv422_subsamples_chroma(encoding):
    rgb = _photo().astype(np.float64)
    f = rgb8_to_fields(_photo(), encoding)
    raw = _call(fields_to_array, f).astype(np.float64)    # (H, W, 2)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    y = 16 + (65.481 * r + 128.553 * g + 24.966 * b) / 255
    u = 128 + (-37.797 * r - 74.203 * g + 112.0 * b) / 255
    v = 128 + (112.0 * r - 93.786 * g - 18.214 * b) / 255
    pair_mean = lambda c: (c[:, 0::2] + c[:, 1::2]) / 2   # noqa: E731  one U, V per pixel pair
    luma_idx, chroma_idx = (1, 0) if encoding in UYVY_ENCODINGS else (0, 1)
    assert np.abs(raw[..., luma_idx] - y).max() <= 1.0
    assert np.abs(raw[:, 0::2, chroma_idx] - pair_mean(u)).max() <= 1.0
    assert np.abs(raw[:, 1::2, chroma_idx] - pair_mean(v)).max() <= 1.0


@pytest.mark.parametrize("encoding", YUV_ENCODINGS)
def test_yuv422_matches_opencv_on_a_photo(encoding, astronaut):
    code_to, code_from = ((cv2.COLOR_RGB2YUV_UYVY, cv2.COLOR_YUV2RGB_UYVY) if encoding in UYVY_ENCODINGS
                          else (cv2.COLOR_RGB2YUV_YUYV, cv2.COLOR_YUV2RGB_YUYV))
    f = rgb8_to_fields(astronaut, encoding)
    reference = cv2.cvtColor(astronaut, code_to)
    assert f.data == reference.tobytes()
    out = _call(fields_to_rgb8, _pad_rows(f, 32))
    np.testing.assert_array_equal(out, cv2.cvtColor(reference, code_from))
    assert np.abs(out.astype(int) - astronaut).mean() < 3.0          # 4:2:2 loses little on a photo


def test_real_rgb8_frame_from_a_ros2_bag():
    bag = DATA / "bags" / "rerun_sensor_msgs.mcap"
    if not bag.exists():
        pytest.skip(f"reference bag {bag} absent (../shared/data is not part of the repository)")
    rosbags = pytest.importorskip("rosbags.highlevel", reason="rosbags is not installed")
    from rosbags.typesys import Stores, get_typestore
    with rosbags.AnyReader([bag], default_typestore=get_typestore(Stores.ROS2_HUMBLE)) as reader:
        by_topic = {}
        wanted = [c for c in reader.connections if c.topic in ("/image", "/compressed_image")]
        for conn, _, raw in reader.messages(wanted):
            by_topic[conn.topic] = reader.deserialize(raw, conn.msgtype)
    m = by_topic["/image"]
    rgb = fields_to_rgb8(m.height, m.width, m.encoding, m.step, m.is_bigendian, m.data)
    assert rgb.shape == (480, 640, 3)
    np.testing.assert_array_equal(rgb, m.data.reshape(480, 640, 3))
    c = by_topic["/compressed_image"]
    decoded = decode_compressed(c.format, c.data)
    np.testing.assert_array_equal(decoded, cv2.imdecode(c.data, cv2.IMREAD_COLOR)[..., ::-1])


GOOD = dict(height=4, width=6, encoding="rgb8", step=18, is_bigendian=False, data=bytes(72))
MALFORMED_FIELDS = [
    ({"encoding": "rgb16"}, "unsupported image encoding"),
    ({"encoding": "8UC3"}, "unsupported image encoding"),
    ({"encoding": None}, "unsupported image encoding"),
    ({"height": 0}, "must be positive"),
    ({"width": 0}, "must be positive"),
    ({"width": -6}, "must be positive"),
    ({"height": 2.5}, "must be an integer"),
    ({"height": 20000, "data": bytes(72)}, "exceeds the limit"),
    ({"height": 8192, "width": 16384, "step": 3 * 16384}, "exceeds the limit"),       # 128 Mpx
    ({"step": 17}, "smaller than one row"),
    ({"data": bytes(71)}, "expected step \\* height"),
    ({"step": 20, "data": bytes(72)}, "expected step \\* height"),                    # padding missing
    ({"data": b""}, "expected step \\* height"),
    ({"data": "x" * 72}, "must be bytes"),
    ({"data": [0] * 72}, "must be bytes"),
    ({"data": np.zeros(72, np.float32)}, "must be uint8"),
    ({"data": array.array("H", [0] * 72)}, "array of bytes"),
    ({"encoding": "yuv422", "width": 5, "step": 10, "data": bytes(40)}, "even width"),
    ({"encoding": "yuyv", "width": 7, "step": 14, "data": bytes(56)}, "even width"),
]


@pytest.mark.parametrize("changes,message", MALFORMED_FIELDS)
@pytest.mark.parametrize("fn", [fields_to_array, fields_to_rgb8])
def test_malformed_fields_raise(fn, changes, message):
    with pytest.raises(ImageFormatError, match=message):
        fn(**{**GOOD, **changes})


@pytest.mark.parametrize("height,width,encoding", [(100_000, 100_000, "rgb8"), (16000, 4000, "mono16")])
def test_huge_header_raises_before_allocating(height, width, encoding):
    tracemalloc.start()
    try:
        for fn in (fields_to_array, fields_to_rgb8):
            with pytest.raises(ImageFormatError):
                fn(height, width, encoding, width * 3, False, bytes(64))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 256 * 1024, f"peak {peak} bytes: something was allocated from the header"


def test_limits_are_read_at_call_time(monkeypatch):
    f = rgb8_to_fields(_photo(48, 64), "bgr8")
    monkeypatch.setattr(image_codec, "MAX_SIDE", 32)
    with pytest.raises(ImageFormatError, match="exceeds the limit"):
        _call(fields_to_rgb8, f)


@pytest.mark.parametrize("array,encoding,message", [
    (np.zeros((4, 6, 3), np.uint8), "mono8", "expects an HxW uint8"),
    (np.zeros((4, 6), np.uint8), "mono16", "expects an HxW uint16"),
    (np.zeros((4, 6, 3), np.float32), "rgb8", "expects an HxWx3 uint8"),
    (np.zeros((4, 6, 3), np.uint8), "rgba8", "expects an HxWx4"),
    (np.zeros((4, 5, 2), np.uint8), "yuv422", "even width"),
    (np.zeros((0, 6, 3), np.uint8), "rgb8", "must be positive"),
    ([[1, 2], [3, 4]], "mono8", "got list"),
    (np.zeros((4, 6, 3), np.uint8), "nv12", "unsupported image encoding"),
])
def test_array_to_fields_rejects_mismatched_arrays(array, encoding, message):
    with pytest.raises(ImageFormatError, match=message):
        array_to_fields(array, encoding)


@pytest.mark.parametrize("rgb,encoding,message", [
    (np.zeros((4, 6, 4), np.uint8), "rgb8", "HxWx3 uint8 RGB"),
    (np.zeros((4, 6), np.uint8), "mono8", "HxWx3 uint8 RGB"),
    (np.zeros((4, 6, 3), np.float32), "bgr8", "HxWx3 uint8 RGB"),
    (np.zeros((4, 7, 3), np.uint8), "yuyv", "even width"),
    (np.zeros((4, 6, 3), np.uint8), "bayer_rggb8", "unsupported image encoding"),
])
def test_rgb8_to_fields_rejects_bad_input(rgb, encoding, message):
    with pytest.raises(ImageFormatError, match=message):
        rgb8_to_fields(rgb, encoding)


def test_mono_array_may_have_a_channel_axis():
    gray = np.arange(24, dtype=np.uint8).reshape(4, 6)
    assert array_to_fields(gray[..., None], "mono8") == array_to_fields(gray, "mono8")


# ---------------------------------------------------------------------------------------------
# CompressedImage

def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0 ** 2 / mse))


def test_jpeg_round_trip(astronaut):
    fmt, data = encode_compressed(astronaut, "jpeg", quality=90)
    assert fmt == "rgb8; jpeg compressed bgr8" and data[:2] == b"\xff\xd8"
    out = decode_compressed(fmt, data)
    assert out.shape == astronaut.shape and out.dtype == np.uint8
    assert _psnr(out, astronaut) > 32.0
    _, low_q = encode_compressed(astronaut, "jpeg", quality=20)
    assert _psnr(decode_compressed("jpeg", low_q), astronaut) < _psnr(out, astronaut)


def test_png_round_trip_is_exact(astronaut):
    fmt, data = encode_compressed(astronaut, "png")
    assert fmt == "rgb8; png compressed bgr8" and data.startswith(b"\x89PNG")
    np.testing.assert_array_equal(decode_compressed(fmt, data), astronaut)


@pytest.mark.parametrize("fmt", ["jpeg", "png", "JPEG", "bgr8; jpeg compressed bgr8",
                                 "rgb8; png compressed bgr8", "mono8; jpeg compressed mono8", ""])
@pytest.mark.parametrize("kind", DATA_KINDS)
def test_decode_accepts_ros_format_strings_and_buffers(fmt, kind):
    rgb = _photo()
    _, data = encode_compressed(rgb, "png")
    np.testing.assert_array_equal(decode_compressed(fmt, _as_kind(data, kind)), rgb)


def test_grey_and_16_bit_png_decode_to_rgb():
    gray16 = (np.arange(48 * 64, dtype=np.uint32).reshape(48, 64) * 21).astype(np.uint16)
    ok, png = cv2.imencode(".png", gray16)
    out = decode_compressed("mono16; png compressed mono16", png.tobytes())
    np.testing.assert_array_equal(out, np.repeat((gray16 >> 8).astype(np.uint8)[..., None], 3, axis=2))
    gray8 = _photo()[..., 1]
    ok, jpg = cv2.imencode(".jpg", gray8, [cv2.IMWRITE_JPEG_QUALITY, 95])
    out = decode_compressed("mono8; jpeg compressed mono8", jpg.tobytes())
    assert out.shape == (48, 64, 3) and np.all(out == out[..., :1])
    assert np.abs(out[..., 0].astype(int) - gray8).mean() < 3


def _with_png_size(png: bytes, width: int, height: int) -> bytes:
    """The PNG with its IHDR size replaced and the chunk CRC fixed, so only a size check can stop it."""
    ihdr = b"IHDR" + struct.pack(">II", width, height) + png[24:29]
    return png[:12] + ihdr + struct.pack(">I", zlib.crc32(ihdr)) + png[33:]


def _with_jpeg_size(jpg: bytes, width: int, height: int) -> bytes:
    sof = jpg.index(b"\xff\xc0")
    return jpg[:sof + 5] + struct.pack(">HH", height, width) + jpg[sof + 9:]


def _compressed_cases():
    rgb = _photo()
    _, jpg = encode_compressed(rgb, "jpeg")
    _, png = encode_compressed(rgb, "png")
    idat = png.index(b"IDAT") + 20
    return [
        ("jpeg", b"", "empty"),
        ("jpeg", bytes(100), "neither PNG nor JPEG"),
        ("jpeg", b"GIF89a" + bytes(50), "neither PNG nor JPEG"),
        ("jpeg", jpg[:2], "ends inside its headers"),
        ("jpeg", jpg[:300], "ends inside its headers|no end-of-image"),
        ("jpeg", jpg[:len(jpg) // 2], "no end-of-image"),
        ("jpeg", jpg[:-2], "no end-of-image"),
        ("jpeg", jpg[:2] + b"\x00" * 50, "expected a marker"),
        ("jpeg", b"\xff\xd8\xff\xd9", "end of image before any scan"),
        ("jpeg", b"\xff\xd8" + jpg[jpg.index(b"\xff\xda"):], "scan data before the frame header"),
        ("jpeg", _with_jpeg_size(jpg, 64, 0), "DNL"),
        ("jpeg", _with_jpeg_size(jpg, 0, 48), "must be positive"),
        ("png", png[:20], "no IHDR"),
        ("png", png[:len(png) // 2], "IEND"),
        ("png", png[:idat] + bytes(40) + png[idat + 40:], "corrupt"),   # damaged IDAT: CRC / zlib error
        ("png", _with_png_size(png, 64, 0), "must be positive"),
        ("h264", jpg, "unsupported compressed image format"),
        ("16UC1; compressedDepth png", png, "compressedDepth"),
        ("bgr8; theora", jpg, "unsupported compressed image format"),
        (None, jpg, "must be a string"),
    ]


@pytest.mark.parametrize("fmt,data,message", _compressed_cases())
def test_malformed_compressed_raises(fmt, data, message):
    with pytest.raises(ImageFormatError, match=message):
        decode_compressed(fmt, data)


def _corrupt_jpegs():
    """JPEGs that pass every header check (SOI, SOF, SOS, EOI all present) but whose scan does not
    match: libjpeg pads them with grey and only warns, so cv2.imdecode returned them as frames."""
    _, jpg = encode_compressed(_photo(), "jpeg")
    sos = jpg.index(b"\xff\xda")
    flipped = bytearray(jpg)
    for k in range(5):
        flipped[(sos + len(jpg)) // 2 + 37 * k] ^= 0x5A
    return {
        "truncated, EOI re-appended": jpg[:len(jpg) // 2] + b"\xff\xd9",
        "truncated near the end": jpg[:-40] + b"\xff\xd9",
        "header taller than the scan": _with_jpeg_size(jpg, 48, 96),
        "header wider than the scan": _with_jpeg_size(jpg, 96, 64),
        "header shorter than the scan": _with_jpeg_size(jpg, 48, 32),
        "entropy data corrupted": bytes(flipped),
    }


@pytest.mark.parametrize("kind", list(_corrupt_jpegs()))
def test_corrupt_jpegs_are_malformed_not_grey_padded(kind):
    blob = _corrupt_jpegs()[kind]
    assert cv2.imdecode(np.frombuffer(blob, np.uint8), cv2.IMREAD_COLOR) is not None  # OpenCV takes it
    with pytest.raises(ImageFormatError, match="corrupt JPEG"):
        decode_compressed("jpeg", blob)


def test_good_jpeg_pixels_match_opencv():
    _, jpg = encode_compressed(_photo(), "jpeg", quality=80)
    ref = cv2.cvtColor(cv2.imdecode(np.frombuffer(jpg, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    out = decode_compressed("jpeg", jpg)
    np.testing.assert_array_equal(out, ref)
    assert out.flags.c_contiguous and out.flags.writeable


@pytest.mark.parametrize("codec", ["png", "jpeg"])
def test_compressed_bomb_is_rejected_from_its_header(codec):
    _, small = encode_compressed(_photo(), codec)
    # 30000 x 20000 is below OpenCV's own 2^30 px limit: OpenCV alone would allocate 1.8 GB.
    bomb = _with_png_size(small, 30000, 20000) if codec == "png" else _with_jpeg_size(small, 30000, 20000)
    tracemalloc.start()
    try:
        with pytest.raises(ImageFormatError, match="exceeds the limit"):
            decode_compressed(codec, bomb)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 256 * 1024, f"peak {peak} bytes"


@pytest.mark.parametrize("codec", ["png", "jpeg"])
def test_limits_apply_to_compressed_images(monkeypatch, astronaut, codec):
    _, data = encode_compressed(astronaut, codec)
    monkeypatch.setattr(image_codec, "MAX_PIXELS", 512 * 511)
    with pytest.raises(ImageFormatError, match="exceeds the limit"):
        decode_compressed(codec, data)


@pytest.mark.parametrize("codec", ["png", "jpeg", "raw"])
def test_a_callers_pixel_limit_rejects_from_the_header(astronaut, codec):
    """A node's max_input_pixels: a frame within the library's limits but above the caller's is
    refused before anything the size of the frame is allocated."""
    h, w = astronaut.shape[:2]
    if codec == "raw":
        def decode(limit):
            return fields_to_rgb8(h, w, "rgb8", w * 3, False, astronaut.tobytes(), max_pixels=limit)
    else:
        _, data = encode_compressed(astronaut, codec)

        def decode(limit):
            return decode_compressed(codec, data, max_pixels=limit)
    assert decode(h * w).shape == (h, w, 3)
    with pytest.raises(ImageFormatError, match=f"exceeds the limit of .* and {h * w - 1} pixels"):
        decode(h * w - 1)


def test_decoded_size_is_checked_even_if_the_header_reader_is_fooled(monkeypatch, astronaut):
    _, data = encode_compressed(astronaut, "png")
    monkeypatch.setattr(image_codec, "MAX_SIDE", 256)
    monkeypatch.setattr(compressed_codec, "compressed_size", lambda blob: (16, 16))
    with pytest.raises(ImageFormatError, match="exceeds the limit"):
        decode_compressed("png", data)


def test_exif_orientation_is_ignored():
    """Camera pixels stay as sent (as compressed_image_transport does), not rotated by EXIF."""
    rgb = _photo()
    _, jpg = encode_compressed(rgb, "jpeg", quality=95)
    tiff = b"MM\x00\x2a\x00\x00\x00\x08" + struct.pack(">HHHIHH", 1, 0x0112, 3, 1, 6, 0) + bytes(4)
    app1 = b"Exif\x00\x00" + tiff                       # one IFD entry: Orientation = 6 (rotate 90)
    rotated = jpg[:2] + b"\xff\xe1" + struct.pack(">H", len(app1) + 2) + app1 + jpg[2:]
    assert cv2.imdecode(np.frombuffer(rotated, np.uint8), cv2.IMREAD_COLOR).shape == (64, 48, 3)
    out = decode_compressed("jpeg", rotated)
    np.testing.assert_array_equal(out, decode_compressed("jpeg", jpg))


def test_header_size_reader_matches_opencv():
    photos = sorted(DATA.glob("photos/*.jpg")) + sorted(DATA.glob("photos/*.png"))
    if not photos:
        pytest.skip(f"no reference photos under {DATA / 'photos'} "
                    "(../shared/data is not part of the repository)")
    for path in photos:
        blob = path.read_bytes()
        reference = cv2.imread(str(path), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
        assert compressed_codec.compressed_size(blob) == reference.shape[:2], path.name
        np.testing.assert_array_equal(decode_compressed(path.suffix[1:], blob), reference[..., ::-1],
                                      err_msg=path.name)


@pytest.mark.parametrize("kwargs,error,message", [
    ({"fmt": "webp"}, ConfigError, "unsupported compressed format"),
    ({"quality": 0}, ConfigError, "quality"),
    ({"quality": 101}, ConfigError, "quality"),
    ({"quality": 9.5}, ConfigError, "quality"),
    ({"png_level": 10}, ConfigError, "PNG compression level"),
    ({"rgb": np.zeros((4, 6), np.uint8)}, ImageFormatError, "HxWx3 uint8 RGB"),
    ({"rgb": np.zeros((4, 6, 3), np.float32)}, ImageFormatError, "HxWx3 uint8 RGB"),
])
def test_encode_rejects_bad_arguments(kwargs, error, message):
    args = {"rgb": _photo(), **kwargs}
    encode = compressed_codec.encode_compressed if "png_level" in kwargs else encode_compressed
    with pytest.raises(error, match=message):
        encode(**args)


def test_encode_accepts_non_contiguous_frames(astronaut):
    view = astronaut[::2, ::2]                           # what a resize-by-slicing hands over
    fmt, data = encode_compressed(view, "png")
    np.testing.assert_array_equal(decode_compressed(fmt, data), view)
