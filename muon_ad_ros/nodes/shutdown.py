"""Ending a node process without hanging in DDS teardown.

Fast DDS's TCP transport, which FASTDDS_BUILTIN_TRANSPORTS=LARGE_DATA enables, can block forever
while a participant is deleted (eProsima/Fast-DDS#2010; seen here about once in a few dozen runs of
the recorder, after its files were written). A node's work is done by then, so teardown gets a
deadline: past it the process exits with the status it would have had.
"""
from __future__ import annotations

import os
import sys
import threading

import rclpy

TEARDOWN_DEADLINE_S = 5.0


def _exit_now(code: int) -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def shutdown(node, code: int = 0, deadline_s: float = TEARDOWN_DEADLINE_S) -> int:
    """destroy_node + rclpy.try_shutdown within ``deadline_s``, then end the process with ``code``.

    The process ends here (``os._exit``) rather than through interpreter finalization: Fast DDS's
    static destructors run at exit and can block the same way (seen in CI: a recorder that had
    written its files never exited). Everything a node writes is closed before this is called.
    """
    watchdog = threading.Timer(deadline_s, _exit_now, args=(code,))
    watchdog.daemon = True
    watchdog.start()
    try:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
    finally:
        _exit_now(code)
    return code  # not reached; keeps ``sys.exit(shutdown(...))`` readable


def teardown_within(executor, node, context, deadline_s: float) -> bool:
    """Shut an in-process executor, node and context down, giving up after ``deadline_s``.

    For processes that go on after their ROS node (the demo runner, tests): the same Fast DDS
    teardown hang must not block them. Returns whether teardown finished in time.
    """
    def teardown():
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown(context=context)

    worker = threading.Thread(target=teardown, daemon=True)
    worker.start()
    worker.join(deadline_s)
    return not worker.is_alive()
