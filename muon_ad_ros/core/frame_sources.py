"""Frame iterators for the source node and the demo: a video file, an image folder, a rosbag, or the
built-in sample. Plain Python / OpenCV (no rclpy).

Every source yields HxWx3 uint8 RGB frames, one pass per ``frames()`` call; ``looping`` repeats
passes. The built-in ``sample`` needs no file and no camera: it pans and zooms slowly over real
photographs shipped with scikit-image (astronaut, coffee, chelsea, rocket), so a stylizer sees
motion, faces, texture and sky as it would from a camera.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional

import cv2
import numpy as np

from muon_ad_ros.core.errors import ConfigError, ImageFormatError

SAMPLE = "sample"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
BAG_SUFFIXES = (".bag", ".mcap", ".db3")
SAMPLE_IMAGES = ("astronaut", "coffee", "chelsea", "rocket")


@dataclass
class SourceFrame:
    rgb: np.ndarray               # HxWx3 uint8 RGB
    index: int                    # position within the pass
    label: str = ""               # where it came from (file name, bag topic, sample image)


def fit_frame(rgb: np.ndarray, width: int = 0, height: int = 0) -> np.ndarray:
    """Resize to width x height (0 = keep that side's ratio; both 0 = unchanged)."""
    h, w = rgb.shape[:2]
    if width <= 0 and height <= 0:
        return rgb
    if width <= 0:
        width = max(1, round(w * height / h))
    if height <= 0:
        height = max(1, round(h * width / w))
    if (width, height) == (w, h):
        return rgb
    interp = cv2.INTER_AREA if width * height < w * h else cv2.INTER_LINEAR
    return cv2.resize(rgb, (width, height), interpolation=interp)


class FrameSource:
    """One pass over a sequence of frames. Subclasses implement ``_frames``."""

    name = "source"

    def __init__(self, width: int = 0, height: int = 0):
        if width < 0 or height < 0:
            raise ConfigError(f"frame size must be non-negative, got {width}x{height}")
        self.width, self.height = width, height

    def frames(self) -> Iterator[SourceFrame]:
        for frame in self._frames():
            frame.rgb = np.ascontiguousarray(fit_frame(frame.rgb, self.width, self.height))
            yield frame

    def _frames(self) -> Iterator[SourceFrame]:
        raise NotImplementedError

    def describe(self) -> str:
        return self.name


class VideoSource(FrameSource):
    def __init__(self, path: Path, width: int = 0, height: int = 0):
        super().__init__(width, height)
        self.path = Path(path)
        self.name = f"video {self.path}"
        cap = cv2.VideoCapture(str(self.path))
        ok = cap.isOpened()
        self.fps = cap.get(cv2.CAP_PROP_FPS) if ok else 0.0
        cap.release()
        if not ok:
            raise ConfigError(f"cannot open video {self.path} (not a video OpenCV can read?)")

    def _frames(self):
        cap = cv2.VideoCapture(str(self.path))
        try:
            index = 0
            while True:
                ok, bgr = cap.read()
                if not ok:
                    return
                yield SourceFrame(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), index, self.path.name)
                index += 1
        finally:
            cap.release()


class ImageFolderSource(FrameSource):
    """The images of a folder in name order; a file that will not decode is skipped, not fatal."""

    def __init__(self, path: Path, width: int = 0, height: int = 0):
        super().__init__(width, height)
        self.path = Path(path)
        self.files = sorted(p for p in self.path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        self.name = f"image folder {self.path} ({len(self.files)} images)"
        self.skipped: list[str] = []
        if not self.files:
            raise ConfigError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {self.path}")

    def _frames(self):
        index = 0
        for path in self.files:
            bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if bgr is None:
                if path.name not in self.skipped:
                    self.skipped.append(path.name)
                continue
            yield SourceFrame(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), index, path.name)
            index += 1


class BagSource(FrameSource):
    """Image or CompressedImage messages of one topic of a rosbag (ROS 1 .bag, rosbag2, .mcap)."""

    def __init__(self, path: Path, topic: str = "", width: int = 0, height: int = 0):
        super().__init__(width, height)
        from muon_ad_ros.evaluation.bag_io import BagError, BagReader

        self.path = Path(path)
        try:
            with BagReader(self.path) as bag:
                topics = bag.image_topics()
                if not topic:
                    if not topics:
                        raise ConfigError(f"{self.path}: the bag has no Image or CompressedImage topic")
                    topic = topics[0].name
                bag.check_topics([topic])
        except BagError as exc:
            raise ConfigError(str(exc)) from None
        self.topic = topic
        self.name = f"rosbag {self.path} topic {topic}"
        self.skipped = 0

    def _frames(self):
        from muon_ad_ros.evaluation.bag_io import BagReader

        index = 0
        with BagReader(self.path) as bag:
            for frame in bag.frames([self.topic]):
                if frame.rgb is None:  # undecodable message: counted, the stream goes on
                    self.skipped += 1
                    continue
                yield SourceFrame(frame.rgb, index, self.topic)
                index += 1


class SampleSource(FrameSource):
    """Slow pans and zooms ("Ken Burns") over real photos from scikit-image, ``seconds`` per photo.

    Frames are made on the fly (one warpAffine each), so the sample costs no disk and no memory.
    """

    def __init__(self, width: int = 640, height: int = 480, frames_per_image: int = 45,
                 images: tuple = SAMPLE_IMAGES):
        super().__init__(0, 0)  # frames are rendered at the final size directly
        if width <= 0 or height <= 0:
            raise ConfigError(f"the sample needs a positive frame size, got {width}x{height}")
        if frames_per_image < 1:
            raise ConfigError(f"frames_per_image must be at least 1, got {frames_per_image}")
        self.out_w, self.out_h, self.frames_per_image = width, height, frames_per_image
        self.images = [_skimage_photo(name) for name in images]
        self.labels = list(images)
        self.name = f"built-in sample ({', '.join(images)} from scikit-image), {width}x{height}"

    def _frames(self):
        for k, photo in enumerate(self.images):
            for i in range(self.frames_per_image):
                t = i / max(1, self.frames_per_image - 1)
                # Alternate zoom in / zoom out and the pan direction per photo, eased at both ends.
                ease = 0.5 - 0.5 * math.cos(math.pi * t)
                zoom = 1.0 + 0.35 * (ease if k % 2 == 0 else 1.0 - ease)
                pan = (ease - 0.5) * (1 if k % 2 == 0 else -1)
                yield SourceFrame(_ken_burns(photo, self.out_w, self.out_h, zoom, pan),
                                  k * self.frames_per_image + i, self.labels[k])


def _skimage_photo(name: str) -> np.ndarray:
    try:
        from skimage import data
    except ImportError:
        raise ConfigError("the built-in sample needs scikit-image (pip install scikit-image); "
                          "or pass a video file, an image folder or a rosbag") from None
    loader = getattr(data, name, None)
    if loader is None:
        raise ConfigError(f"scikit-image has no sample photo {name!r}")
    img = np.asarray(loader())
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    return np.ascontiguousarray(img[..., :3].astype(np.uint8))


def _ken_burns(photo: np.ndarray, out_w: int, out_h: int, zoom: float, pan: float) -> np.ndarray:
    """A out_w x out_h view of ``photo``: the largest crop of the output's aspect ratio, shrunk by
    ``zoom`` and moved by ``pan`` in [-0.5, 0.5] of the free room along the longer free axis."""
    h, w = photo.shape[:2]
    aspect = out_w / out_h
    crop_w = min(w, h * aspect) / zoom                 # source pixels seen across the output
    crop_h = crop_w / aspect
    room_x, room_y = w - crop_w, h - crop_h
    x0 = room_x / 2 + pan * room_x
    y0 = room_y / 2 + pan * room_y * 0.5
    scale = out_w / crop_w
    m = np.array([[scale, 0.0, -x0 * scale], [0.0, scale, -y0 * scale]], dtype=np.float64)
    return cv2.warpAffine(photo, m, (out_w, out_h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


def open_source(spec: str, width: int = 0, height: int = 0, bag_topic: str = "",
                sample_frames_per_image: int = 45) -> FrameSource:
    """A FrameSource from a spec: "sample", a video file, an image folder or a rosbag."""
    if not isinstance(spec, str) or not spec.strip():
        raise ConfigError("no source given: pass 'sample', a video file, an image folder or a rosbag")
    if spec == SAMPLE:
        return SampleSource(width or 640, height or 480, frames_per_image=sample_frames_per_image)
    path = Path(spec).expanduser()
    if not path.exists():
        raise ConfigError(f"source not found: {path}")
    if path.is_dir() and (path / "metadata.yaml").is_file():
        return BagSource(path, bag_topic, width, height)
    if path.is_dir():
        return ImageFolderSource(path, width, height)
    if path.suffix.lower() in BAG_SUFFIXES:
        return BagSource(path, bag_topic, width, height)
    if path.suffix.lower() in IMAGE_SUFFIXES:
        raise ConfigError(f"{path} is a single image; pass the folder that holds it")
    return VideoSource(path, width, height)


def looping(source: FrameSource, loop: bool = True, max_frames: int = 0) -> Iterator[SourceFrame]:
    """Frames of ``source``, pass after pass when ``loop``, at most ``max_frames`` (0 = no limit).

    A pass that yields no frame raises instead of spinning forever on an empty source.
    """
    sent = 0
    while True:
        got = 0
        for frame in source.frames():
            yield frame
            got += 1
            sent += 1
            if max_frames and sent >= max_frames:
                return
        if got == 0:
            raise ImageFormatError(f"{source.describe()}: no readable frame")
        if not loop:
            return


def nominal_intrinsics(width: int, height: int, hfov_deg: float = 60.0) -> tuple[list, list]:
    """(K, P) row-major for an ideal pinhole of the given horizontal field of view, centred.

    The source node publishes this CameraInfo so the pipeline's intrinsics handling can be seen
    working without a calibrated camera; it is not a calibration.
    """
    f = (width / 2.0) / math.tan(math.radians(hfov_deg) / 2.0)
    cx, cy = (width - 1) / 2.0, (height - 1) / 2.0
    k = [f, 0.0, cx, 0.0, f, cy, 0.0, 0.0, 1.0]
    p = [f, 0.0, cx, 0.0, 0.0, f, cy, 0.0, 0.0, 0.0, 1.0, 0.0]
    return k, p


def source_fps(source: FrameSource) -> Optional[float]:
    """The native frame rate where the source knows it (videos), else None."""
    fps = getattr(source, "fps", 0.0)
    return float(fps) if fps and fps > 0 else None
