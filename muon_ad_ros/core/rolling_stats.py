"""Rolling rate and percentile meters for the nodes' diagnostics, plain Python (no rclpy, no numpy).

A node reports "what happened lately", not since start: rates are counted over a sliding time
window and percentiles over the last N samples, so one slow warm-up frame does not haunt p95 for
the rest of the run. Every meter is thread safe: the inference worker writes while a timer reads.
"""
from __future__ import annotations

import math
import threading
import time
from collections import deque
from typing import Callable, Iterable, Optional


def percentile(values: Iterable[float], q: float) -> float:
    """The q-th percentile (0..100) with linear interpolation, as numpy.percentile's default.

    NaN for no values, so an empty window never looks like a 0 ms latency.
    """
    data = sorted(values)
    if not data:
        return math.nan
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"percentile must be within [0, 100], got {q}")
    pos = (len(data) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(data) - 1)
    return data[lo] + (data[hi] - data[lo]) * (pos - lo)


class RateMeter:
    """Events per second over the last ``window_s`` seconds, plus a running total.

    The rate is (events in window - 1) / (time between the first and last event in the window): the
    interval between events, which is right even when the window is not yet full.
    """

    def __init__(self, window_s: float = 5.0, clock: Callable[[], float] = time.monotonic):
        if window_s <= 0:
            raise ValueError(f"window_s must be positive, got {window_s}")
        self.window_s = float(window_s)
        self._clock = clock
        self._times: deque[float] = deque()
        self._lock = threading.Lock()
        self.total = 0

    def tick(self, now: Optional[float] = None) -> None:
        now = self._clock() if now is None else now
        with self._lock:
            self._times.append(now)
            self.total += 1
            self._expire(now)

    def _expire(self, now: float) -> None:
        while self._times and now - self._times[0] > self.window_s:
            self._times.popleft()

    def rate(self, now: Optional[float] = None) -> float:
        """Hz over the window; 0.0 with fewer than two recent events."""
        now = self._clock() if now is None else now
        with self._lock:
            self._expire(now)
            if len(self._times) < 2:
                return 0.0
            span = self._times[-1] - self._times[0]
            return (len(self._times) - 1) / span if span > 0 else 0.0

    def seconds_since_last(self, now: Optional[float] = None) -> float:
        """Seconds since the last event (inf if none in the window)."""
        now = self._clock() if now is None else now
        with self._lock:
            return now - self._times[-1] if self._times else math.inf


class PercentileWindow:
    """The last ``size`` samples of one quantity (e.g. a latency in ms) and their percentiles."""

    def __init__(self, size: int = 300):
        if size < 1:
            raise ValueError(f"size must be at least 1, got {size}")
        self._samples: deque[float] = deque(maxlen=size)
        self._lock = threading.Lock()
        self.count = 0

    def add(self, value: float) -> None:
        with self._lock:
            self._samples.append(float(value))
            self.count += 1

    def values(self) -> list[float]:
        with self._lock:
            return list(self._samples)

    def percentile(self, q: float) -> float:
        return percentile(self.values(), q)

    def summary(self) -> dict:
        """{'p50', 'p95', 'max', 'n'} over the window (NaN where empty)."""
        values = self.values()
        return {"p50": percentile(values, 50), "p95": percentile(values, 95),
                "max": max(values) if values else math.nan, "n": len(values)}


class StageTimes:
    """One PercentileWindow per named stage, created on first use (stage names come from callers)."""

    def __init__(self, size: int = 300):
        self._size = size
        self._stages: dict[str, PercentileWindow] = {}
        self._lock = threading.Lock()

    def add(self, stage: str, value_ms: float) -> None:
        with self._lock:
            window = self._stages.setdefault(stage, PercentileWindow(self._size))
        window.add(value_ms)

    def add_all(self, timings: dict) -> None:
        for stage, value in timings.items():
            self.add(stage, value)

    def summary(self) -> dict[str, dict]:
        with self._lock:
            stages = dict(self._stages)
        return {name: window.summary() for name, window in stages.items()}
