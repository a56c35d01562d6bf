"""A single-slot "latest item" mailbox between a subscription callback and a worker thread.

The camera is faster than inference more often than not. A queue would then grow without bound
(or, bounded, serve ever older frames); a single slot always holds the newest frame: an item put
while another is pending replaces it, and the replacement is counted as a drop. Plain Python.
"""
from __future__ import annotations

import threading
from typing import Any, Optional


class LatestSlot:
    def __init__(self):
        self._item: Any = None
        self._full = False
        self._closed = False
        self._cond = threading.Condition()
        self.dropped = 0

    def put(self, item: Any) -> bool:
        """Store ``item``; True when it replaced a pending one (a dropped frame)."""
        with self._cond:
            replaced = self._full
            if replaced:
                self.dropped += 1
            self._item, self._full = item, True
            self._cond.notify()
            return replaced

    def take(self, timeout: Optional[float] = None) -> Any:
        """The pending item (emptying the slot), or None on timeout or once closed."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._full or self._closed, timeout):
                return None
            if self._closed:
                return None
            item, self._item, self._full = self._item, None, False
            return item

    def close(self) -> None:
        """Wake the worker for good; later takes return None."""
        with self._cond:
            self._closed = True
            self._item, self._full = None, False
            self._cond.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed
