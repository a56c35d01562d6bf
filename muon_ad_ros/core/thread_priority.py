"""Run inference at a lower CPU priority than the threads that move frames.

On a small CPU the engine's thread pool takes every core for most of each frame period. The
threads that carry frames in and out (the DDS transport's receive threads, the executor, other
nodes' subscribers) then wait for a core behind inference for a millisecond or more at each of
their wake-ups. Inference is throughput work: a frame a few hundred microseconds later changes
nothing; the transport is latency work. Raising the inference threads' nice value lets the kernel's
scheduler preempt them for the short transport wake-ups at once, at almost no cost to inference.

Linux applies a nice value per thread (``setpriority(PRIO_PROCESS, tid)``), and a new thread
inherits its creator's: so the engine's pool must be *created* by a lowered thread (the worker pool
of ONNX Runtime is built when its session is), and the thread that calls ``run`` must be lowered
too. Lowering never needs privileges; raising it back would, which is why the model is loaded in a
short-lived thread of its own rather than by lowering the caller. Elsewhere this is a no-op.
"""
from __future__ import annotations

import os
import sys
import threading
from typing import Callable, TypeVar

T = TypeVar("T")
MAX_NICE = 19


def supported() -> bool:
    return sys.platform.startswith("linux") and hasattr(os, "setpriority")


def lower_current_thread(increment: int) -> int:
    """Add ``increment`` (0..19) to this thread's nice value; returns the new value (unchanged where
    threads have no nice value of their own)."""
    if not 0 <= increment <= MAX_NICE:
        raise ValueError(f"nice increment must be within 0..{MAX_NICE}, got {increment}")
    if not supported():
        return 0
    tid = threading.get_native_id()
    now = os.getpriority(os.PRIO_PROCESS, tid)
    if increment:
        os.setpriority(os.PRIO_PROCESS, tid, min(MAX_NICE, now + increment))
    return os.getpriority(os.PRIO_PROCESS, tid)


def thread_nice() -> int:
    """This thread's nice value (0 where unsupported)."""
    return os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) if supported() else 0


def call_lowered(fn: Callable[[], T], increment: int) -> T:
    """``fn()`` run in a new thread lowered by ``increment``, so the threads it creates (an engine's
    pool) inherit the lower priority while the caller keeps its own; its result or exception."""
    if not increment or not supported():
        return fn()
    box: dict = {}

    def target() -> None:
        try:
            lower_current_thread(increment)
            box["result"] = fn()
        except BaseException as exc:  # handed to the caller below
            box["error"] = exc

    thread = threading.Thread(target=target, name="lowered_loader")
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["result"]
