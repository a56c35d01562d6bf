"""Writing a video so that nothing half-written looks complete.

Frames go to a hidden ``.<name>.partial<ext>`` beside the destination; ``commit`` renames it to the
final name only after the last frame, ``discard`` (or an exception inside ``with``) deletes it.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from muon_ad_ros.core.errors import ConfigError

MP4_SUFFIXES = {".mp4", ".m4v", ".mov"}


class VideoSink:
    def __init__(self, path, fps: float = 25.0):
        self.path = Path(path)
        self.fps = float(fps) if fps and fps > 0 else 25.0
        self.tmp = self.path.with_name(f".{self.path.stem}.partial{self.path.suffix}")
        self.frames = 0
        self._writer = None

    def write(self, rgb: np.ndarray) -> None:
        """Append one HxWx3 uint8 RGB frame (the first frame fixes the size)."""
        if self._writer is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            codec = "mp4v" if self.path.suffix.lower() in MP4_SUFFIXES else "MJPG"
            self._writer = cv2.VideoWriter(str(self.tmp), cv2.VideoWriter_fourcc(*codec), self.fps,
                                           (rgb.shape[1], rgb.shape[0]))
            if not self._writer.isOpened():
                self._writer = None
                raise ConfigError(f"cannot write video {self.path}")
        self._writer.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        self.frames += 1

    def _release(self) -> None:
        if self._writer is not None:
            self._writer.release()
            self._writer = None

    def commit(self) -> int:
        """Give the video its final name; returns the frame count (0: nothing written, no file)."""
        self._release()
        if self.frames == 0:
            self.tmp.unlink(missing_ok=True)
            return 0
        self.tmp.replace(self.path)
        return self.frames

    def discard(self) -> None:
        self._release()
        self.tmp.unlink(missing_ok=True)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None:
            self.discard()
        return False
