"""sensor_msgs/CompressedImage <-> RGB arrays (JPEG and PNG), plain numpy / OpenCV.

The image size is read from the PNG IHDR chunk or the JPEG SOF segment and checked against the
limits of image_codec *before* the decoder allocates the frame, so a tiny packet that claims to be
100000 x 100000 px is rejected in microseconds. Truncation is caught up front as well (no PNG IEND
chunk / no JPEG EOI marker after the scan).

JPEGs are decoded by libjpeg-turbo through simplejpeg with ``strict=True``: libjpeg "decodes" a
truncated or corrupt JPEG, or one whose frame header claims more rows than its scan holds, by
padding it with grey and only printing a warning ("Corrupt JPEG data: premature end of data
segment"), and cv2.imdecode passes such a frame on as a good one. In strict mode every libjpeg
warning is an error, so such a frame is malformed and never published. (Same library and IDCT as
OpenCV's decoder: the pixels of a good JPEG are identical.) PNGs are decoded by OpenCV (libpng
fails on CRC errors and missing data).

Format strings follow image_transport: the old plain "jpeg" / "png", and the compressed_image_transport
style "<source encoding>; <codec> compressed <encoding inside>", e.g. "rgb8; jpeg compressed bgr8".
As in compressed_image_transport the data is decoded by its content; the codec named in the string
only has to be one we can decode.
"""
import struct
from typing import Optional

import cv2
import numpy as np
import simplejpeg

from muon_ad_ros.core import image_codec
from muon_ad_ros.core.errors import ConfigError, ImageFormatError

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_JPEG_SOI = b"\xff\xd8"
_JPEG_EOI = b"\xff\xd9"
# Start-of-frame markers SOF0..SOF15, except DHT (C4), JPG (C8) and DAC (CC) which share the range.
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_JPEG_SOS = 0xDA
_JPEG_STANDALONE = frozenset([0x01, *range(0xD0, 0xD8)])   # TEM, RST0..7: no length field
_DECODABLE_CODECS = ("jpeg", "jpg", "png")
# IMREAD_COLOR_RGB (OpenCV >= 4.10) decodes straight to RGB; older builds decode BGR and convert.
_IMREAD_RGB = getattr(cv2, "IMREAD_COLOR_RGB", None)


def parse_format(format: str) -> str:
    """The codec named in a CompressedImage format string ("" when the string is empty)."""
    if not isinstance(format, str):
        raise ImageFormatError(f"compressed image format must be a string, got {type(format).__name__}")
    text = format.strip().lower()
    if ";" in text:                                 # "rgb8; jpeg compressed bgr8" -> "jpeg compressed bgr8"
        text = text.split(";", 1)[1].strip()
    codec = text.split()[0] if text else ""
    if codec == "compresseddepth":
        raise ImageFormatError(f"compressedDepth images are not supported (format {format!r})")
    if codec and codec not in _DECODABLE_CODECS:
        raise ImageFormatError(
            f"unsupported compressed image format {format!r}; supported codecs: jpeg, png")
    return codec


def _png_size(blob: bytes) -> tuple[int, int]:
    """(height, width) from the IHDR chunk, which the PNG spec requires to come first."""
    if len(blob) < 33 or blob[12:16] != b"IHDR":
        raise ImageFormatError(f"PNG data of {len(blob)} bytes has no IHDR chunk (truncated or corrupt)")
    width, height = struct.unpack_from(">II", blob, 16)
    if blob.rfind(b"IEND", 33) < 0:
        raise ImageFormatError("PNG data has no IEND chunk (truncated)")
    return height, width


def _jpeg_size(blob: bytes) -> tuple[int, int]:
    """(height, width) from the SOF segment, walking the marker segments that precede the scan."""
    size, pos, n = None, 2, len(blob)
    while pos < n:
        if blob[pos] != 0xFF:
            raise ImageFormatError(f"corrupt JPEG: expected a marker at byte {pos}")
        while pos < n and blob[pos] == 0xFF:        # any number of 0xFF fill bytes may precede a marker
            pos += 1
        if pos >= n:
            break
        marker = blob[pos]
        pos += 1
        if marker in _JPEG_STANDALONE:
            continue
        if marker == 0xD9:
            raise ImageFormatError("corrupt JPEG: end of image before any scan")
        if pos + 2 > n:
            break
        (length,) = struct.unpack_from(">H", blob, pos)   # includes its own 2 bytes
        if length < 2:
            raise ImageFormatError(f"corrupt JPEG: segment length {length} at byte {pos}")
        if marker in _JPEG_SOF:
            if length < 8 or pos + 7 > n:
                break
            height, width = struct.unpack_from(">HH", blob, pos + 3)
            if height == 0:                          # size given later by a DNL marker; OpenCV can't
                raise ImageFormatError("JPEG with the height deferred to a DNL marker is not supported")
            size = (height, width)
        elif marker == _JPEG_SOS:
            if size is None:
                raise ImageFormatError("corrupt JPEG: scan data before the frame header (SOF)")
            # Inside entropy-coded data 0xFF is always stuffed (FF00) or a restart marker, so an
            # EOI after the first scan is the real end of the image.
            if blob.rfind(_JPEG_EOI, pos) < 0:
                raise ImageFormatError("JPEG data has no end-of-image marker (truncated)")
            return size
        pos += length
    raise ImageFormatError(f"JPEG data of {n} bytes ends inside its headers (truncated)")


def compressed_size(blob: bytes) -> tuple[int, int]:
    """(height, width) of a PNG or JPEG from its header, without decoding the pixels."""
    if blob.startswith(_PNG_SIGNATURE):
        return _png_size(blob)
    if blob.startswith(_JPEG_SOI):
        return _jpeg_size(blob)
    raise ImageFormatError(f"compressed data of {len(blob)} bytes is neither PNG nor JPEG")


def _as_bytes(data) -> bytes:
    """`data` as bytes: free for bytes, one copy for array.array / bytearray / numpy (a few 10 kB)."""
    if isinstance(data, bytes):
        return data
    return image_codec.byte_view(data).tobytes()


def decode_compressed(format: str, data, max_pixels: Optional[int] = None) -> np.ndarray:
    """Decode a CompressedImage to a fresh HxWx3 uint8 RGB array.

    Grey images are replicated to three channels, alpha is dropped, 16-bit PNGs keep their top byte
    (as fields_to_rgb8 does for mono16). EXIF orientation is ignored so the pixels stay in the
    order the camera sent them, as compressed_image_transport does.
    """
    parse_format(format)
    blob = _as_bytes(data)
    if not blob:
        raise ImageFormatError("compressed image data is empty")
    height, width = compressed_size(blob)
    image_codec.check_image_size(height, width, max_pixels)   # from the header: nothing allocated yet
    if blob.startswith(_JPEG_SOI):
        rgb = _decode_jpeg(blob)
    else:
        rgb = _decode_png(blob, format)
    image_codec.check_image_size(rgb.shape[0], rgb.shape[1])   # never trust the header alone
    if rgb.shape[:2] != (height, width):
        raise ImageFormatError(
            f"decoded image is {rgb.shape[1]}x{rgb.shape[0]} but its header says {width}x{height}")
    return rgb


def _decode_jpeg(blob: bytes) -> np.ndarray:
    """HxWx3 RGB, or ImageFormatError on any libjpeg error *or warning* (see the module doc)."""
    try:
        return simplejpeg.decode_jpeg(blob, colorspace="RGB", strict=True)
    except (ValueError, RuntimeError) as e:
        reason = (str(e).strip().splitlines() or ["corrupt data"])[0]
        raise ImageFormatError(f"corrupt JPEG ({len(blob)} bytes): {reason}") from None


def _decode_png(blob: bytes, format: str) -> np.ndarray:
    encoded = np.frombuffer(blob, np.uint8)
    try:
        if _IMREAD_RGB is not None:
            rgb = cv2.imdecode(encoded, _IMREAD_RGB | cv2.IMREAD_IGNORE_ORIENTATION)
        else:
            bgr = cv2.imdecode(encoded, cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
            rgb = None if bgr is None else cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    except cv2.error as e:
        raise ImageFormatError(f"cannot decode compressed image ({format!r}): {e}") from None
    if rgb is None:
        raise ImageFormatError(
            f"cannot decode compressed image ({format!r}, {len(blob)} bytes): corrupt data")
    return rgb


def encode_compressed(rgb: np.ndarray, fmt: str = "jpeg", quality: int = 90,
                      png_level: int = 3) -> tuple[str, bytes]:
    """Encode an HxWx3 uint8 RGB frame as JPEG or PNG.

    Returns (format string as compressed_image_transport writes it, e.g. "rgb8; jpeg compressed bgr8",
    encoded bytes). quality is the JPEG quality 1..100; png_level the zlib level 0..9 (3 is the
    image_transport default: most of the size gain of 9 for a fraction of the time).
    """
    codec = fmt.strip().lower() if isinstance(fmt, str) else fmt
    if codec not in _DECODABLE_CODECS:
        raise ConfigError(f"unsupported compressed format {fmt!r}; use 'jpeg' or 'png'")
    if isinstance(quality, bool) or not isinstance(quality, (int, np.integer)) or not 1 <= quality <= 100:
        raise ConfigError(f"JPEG quality must be an integer in 1..100, got {quality!r}")
    if isinstance(png_level, bool) or not isinstance(png_level, (int, np.integer)) or not 0 <= png_level <= 9:
        raise ConfigError(f"PNG compression level must be an integer in 0..9, got {png_level!r}")
    bgr = cv2.cvtColor(image_codec.check_rgb8(rgb), cv2.COLOR_RGB2BGR)   # imencode expects BGR
    if codec == "png":
        ok, encoded = cv2.imencode(".png", bgr, [cv2.IMWRITE_PNG_COMPRESSION, int(png_level)])
        codec = "png"
    else:
        ok, encoded = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
        codec = "jpeg"
    if not ok:
        raise ImageFormatError(f"OpenCV failed to encode a {rgb.shape[1]}x{rgb.shape[0]} image as {codec}")
    return f"rgb8; {codec} compressed bgr8", encoded.tobytes()
