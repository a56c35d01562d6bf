"""Recording helpers for the recorder node: a video writer and a contact sheet, plain OpenCV/numpy.

The contact sheet answers "what did the stylized stream look like" in one PNG. Frames are kept as
thumbnails only, in bounded memory, however long the recording:

* labelled frames (e.g. the stylizer's current style): one tile per label segment, the *last* frame
  of the segment, because frames already in flight when the label changed may still carry the old
  look, while the last one has had the whole segment to catch up;
* unlabelled frames: evenly spaced tiles, kept by stride doubling (keep every s-th frame; when the
  buffer holds twice the tiles wanted, drop every other one and double s).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import cv2
import numpy as np

from muon_ad_ros.core.errors import ConfigError, ImageFormatError

VIDEO_FOURCC = {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".avi": "MJPG", ".mkv": "MJPG"}


def _check_rgb(rgb: np.ndarray) -> None:
    if not isinstance(rgb, np.ndarray) or rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ImageFormatError(f"expected an HxWx3 uint8 RGB frame, got {getattr(rgb, 'shape', type(rgb))}")


class VideoRecorder:
    """Writes RGB frames to a video; opened on the first frame, so its size is the stream's size.

    Later frames of another size are resized to it (a stream may change resolution; a video may
    not). The file is written under a temporary name and renamed on ``close``, so a crash never
    leaves a file that looks complete.
    """

    def __init__(self, path: os.PathLike, fps: float):
        self.path = Path(path)
        if self.path.suffix.lower() not in VIDEO_FOURCC:
            raise ConfigError(f"video file must end in one of {', '.join(VIDEO_FOURCC)}, "
                              f"got {self.path.name}")
        if not fps > 0:
            raise ConfigError(f"video fps must be positive, got {fps}")
        self.fps = float(fps)
        self.frames = 0
        self.size: Optional[tuple[int, int]] = None  # (width, height)
        self._tmp = self.path.with_name(f".{self.path.stem}.partial{self.path.suffix}")
        self._writer = None

    def write(self, rgb: np.ndarray) -> None:
        _check_rgb(rgb)
        if self._writer is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.size = (rgb.shape[1], rgb.shape[0])
            fourcc = cv2.VideoWriter_fourcc(*VIDEO_FOURCC[self.path.suffix.lower()])
            self._writer = cv2.VideoWriter(str(self._tmp), fourcc, self.fps, self.size)
            if not self._writer.isOpened():
                self._writer = None
                raise ConfigError(f"cannot write video {self.path} (codec unavailable or folder unwritable)")
        if (rgb.shape[1], rgb.shape[0]) != self.size:
            rgb = cv2.resize(rgb, self.size, interpolation=cv2.INTER_AREA)
        self._writer.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        self.frames += 1

    def close(self) -> Optional[Path]:
        """Finish the file; returns its path, or None when no frame was written."""
        if self._writer is None:
            return None
        self._writer.release()
        self._writer = None
        self._tmp.replace(self.path)
        return self.path

    def discard(self) -> None:
        """Abandon the recording: the temporary file goes, nothing gets the final name."""
        if self._writer is not None:
            self._writer.release()
            self._writer = None
        self._tmp.unlink(missing_ok=True)


@dataclass
class Tile:
    thumb: np.ndarray  # hxwx3 uint8
    label: str
    index: int         # frame number in the stream


def thumbnail(rgb: np.ndarray, width: int) -> np.ndarray:
    h, w = rgb.shape[:2]
    if w <= width:
        return rgb.copy()
    return cv2.resize(rgb, (width, max(1, round(h * width / w))), interpolation=cv2.INTER_AREA)


class SheetCollector:
    """Chooses the contact sheet's tiles from a stream, in bounded memory (see the module doc)."""

    def __init__(self, max_tiles: int = 12, thumb_width: int = 320):
        if max_tiles < 1 or thumb_width < 8:
            raise ConfigError(f"need max_tiles >= 1 and thumb_width >= 8, got {max_tiles}, {thumb_width}")
        self.max_tiles, self.thumb_width = max_tiles, thumb_width
        self._segments: list[Tile] = []   # labelled mode: last frame of each label segment
        self._even: list[Tile] = []       # unlabelled mode: every stride-th frame
        self._stride = 1
        self.frames = 0

    def add(self, rgb: np.ndarray, label: str = "") -> None:
        _check_rgb(rgb)
        index = self.frames
        self.frames += 1
        if label:
            tile = Tile(thumbnail(rgb, self.thumb_width), label, index)
            if self._segments and self._segments[-1].label == label:
                self._segments[-1] = tile
            else:
                self._segments.append(tile)
                if len(self._segments) > 4 * self.max_tiles:   # bound memory on endless relabelling
                    self._segments = self._segments[::2]
            return
        if index % self._stride == 0:
            self._even.append(Tile(thumbnail(rgb, self.thumb_width), "", index))
            if len(self._even) > 2 * self.max_tiles:   # keep max..2*max, thinned evenly in tiles()
                self._even = self._even[::2]
                self._stride *= 2

    def tiles(self) -> list[Tile]:
        """Labelled segments when there are any (evenly thinned to max_tiles), else even samples."""
        tiles = self._segments or self._even
        if len(tiles) > self.max_tiles:
            picks = np.linspace(0, len(tiles) - 1, self.max_tiles).round().astype(int)
            tiles = [tiles[i] for i in picks]
        return list(tiles)


def make_contact_sheet(tiles: list[Tile], columns: int = 4, title: str = "",
                       margin: int = 6, background: int = 24) -> np.ndarray:
    """A grid of the tiles with their label and frame number under each; HxWx3 uint8 RGB."""
    if not tiles:
        raise ConfigError("a contact sheet needs at least one frame")
    if columns < 1:
        raise ConfigError(f"columns must be at least 1, got {columns}")
    columns = min(columns, len(tiles))
    rows = -(-len(tiles) // columns)
    tw = max(t.thumb.shape[1] for t in tiles)
    th = max(t.thumb.shape[0] for t in tiles)
    font, scale = cv2.FONT_HERSHEY_SIMPLEX, max(0.35, tw / 640)
    text_h = int(22 * scale / 0.5)
    title_h = text_h + margin if title else 0
    sheet = np.full((title_h + rows * (th + text_h + margin) + margin,
                     columns * (tw + margin) + margin, 3), background, np.uint8)
    if title:
        cv2.putText(sheet, title, (margin, text_h - 4), font, scale, (235, 235, 235), 1, cv2.LINE_AA)
    for k, tile in enumerate(tiles):
        r, c = divmod(k, columns)
        y = title_h + margin + r * (th + text_h + margin)
        x = margin + c * (tw + margin)
        h, w = tile.thumb.shape[:2]
        sheet[y:y + h, x:x + w] = tile.thumb
        caption = f"{tile.label}  #{tile.index}" if tile.label else f"#{tile.index}"
        cv2.putText(sheet, caption, (x + 2, y + th + text_h - 6), font, scale, (235, 235, 235), 1,
                    cv2.LINE_AA)
    return sheet


def save_png(path: os.PathLike, rgb: np.ndarray) -> Path:
    path = Path(path)
    _check_rgb(rgb)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)):
        raise ConfigError(f"cannot write {path}")
    return path
