"""Approximate-time pairing of N message streams (plain Python, no rclpy).

The pairing rule is that of message_filters' Python ``ApproximateTimeSynchronizer`` (the PyPI ROS
install has no message_filters, and this one also counts what it drops):

* each stream keeps at most ``queue_size`` messages by stamp; the oldest beyond that is dropped;
* when a message arrives, the other streams' messages within ``slop`` of its stamp are tried,
  nearest first; the first combination whose stamps all lie within ``slop`` is emitted and removed.

One addition: after a match, messages older than the matched stamps minus ``slop`` are dropped at
once. Each stream arrives in stamp order, so nothing can pair with them any more; dropping them
now (instead of when the queue overflows) makes the unmatched count current.
"""
from __future__ import annotations

import itertools
import threading
from typing import Any, Optional


class ApproximatePairer:
    def __init__(self, streams: int = 2, queue_size: int = 10, slop_ns: int = 20_000_000):
        if streams < 2 or queue_size < 1 or slop_ns < 0:
            raise ValueError("need >= 2 streams, queue_size >= 1 and slop >= 0")
        self.queue_size, self.slop_ns = queue_size, slop_ns
        self.queues: list[dict[int, Any]] = [{} for _ in range(streams)]
        self.unmatched = [0] * streams     # dropped without a partner, per stream
        self.matched = 0
        self._lock = threading.Lock()

    def add(self, stream: int, stamp_ns: int, msg: Any) -> Optional[tuple]:
        """Add one message; returns the matched tuple (one message per stream) or None."""
        with self._lock:
            queue = self.queues[stream]
            if stamp_ns in queue:          # a repeated stamp replaces the pending message
                self.unmatched[stream] += 1
            queue[stamp_ns] = msg
            while len(queue) > self.queue_size:
                del queue[min(queue)]
                self.unmatched[stream] += 1
            candidates = []
            for i, other in enumerate(self.queues):
                if i == stream:
                    continue
                near = sorted((abs(s - stamp_ns), s) for s in other if abs(s - stamp_ns) <= self.slop_ns)
                if not near:
                    return None
                candidates.append([s for _, s in near])
            for combo in itertools.product(*candidates):
                stamps = list(combo)
                stamps.insert(stream, stamp_ns)
                if max(stamps) - min(stamps) <= self.slop_ns:
                    out = tuple(q.pop(s) for q, s in zip(self.queues, stamps))
                    self.matched += 1
                    self._drop_older_than(min(stamps) - self.slop_ns)
                    return out
            return None

    def _drop_older_than(self, stamp_ns: int) -> None:
        for i, queue in enumerate(self.queues):
            for s in [s for s in queue if s < stamp_ns]:
                del queue[s]
                self.unmatched[i] += 1

    @property
    def unmatched_total(self) -> int:
        return sum(self.unmatched)
