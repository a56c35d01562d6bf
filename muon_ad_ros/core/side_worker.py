"""One worker thread beside the caller, for work that overlaps the caller's own (OpenCV and ONNX
Runtime release the GIL): the temporal filter's backward flow, the stereo disparity."""
from __future__ import annotations

import weakref
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Optional


class SideWorker:
    """``submit`` runs a call on a single worker thread, started on first use (an object that never
    overlaps anything starts none); the thread ends when this object is dropped."""

    def __init__(self, name: str):
        self._name = name
        self._executor: Optional[ThreadPoolExecutor] = None

    def submit(self, fn, *args) -> Future:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix=self._name)
            weakref.finalize(self, self._executor.shutdown, wait=False)
        return self._executor.submit(fn, *args)
