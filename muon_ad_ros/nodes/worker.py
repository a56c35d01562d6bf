"""The worker thread of the stylize nodes: take the latest item off the slot, process it, and never
let one bad item end the thread (the node counts and reports it; a stop in progress ends it quietly)."""
from __future__ import annotations

from muon_ad_ros.nodes.shutdown import stopping


def serve_latest(node, what: str) -> None:
    """Run ``node._process(*item)`` on each item of ``node._slot`` until the slot is closed.

    An exception counts as ``node.counts["errors"]``, becomes ``node._last_problem`` and a throttled
    log line ("stylizing a <what> failed"), except while the process stops: the publisher's context
    is gone then, and there is nothing to report."""
    while not node._slot.closed:
        item = node._slot.take(timeout=0.5)
        if item is None:
            continue
        try:
            node._process(*item)
        except Exception as exc:  # never let one item kill the worker
            if stopping(node.context):
                return
            node.counts["errors"] += 1
            node._last_problem = f"{type(exc).__name__}: {exc}"
            node.get_logger().error(f"stylizing a {what} failed: {node._last_problem}", throttle_duration_sec=5.0)
