"""Ending a node process: quietly on SIGINT / SIGTERM, and without hanging in DDS teardown.

Signals. Under ``ros2 launch`` a Ctrl-C reaches a node twice: the terminal sends SIGINT to the
whole process group and launch forwards another one (then SIGTERM if the node is slow). The first
signal stops the node; any later one must not interrupt its teardown with a KeyboardInterrupt
traceback. ``stop_on_signals`` makes the first SIGINT / SIGTERM a KeyboardInterrupt (rclpy's own
handlers chain to it) and ignores the rest; ``shutdown`` ignores them all.

Teardown deadline. Fast DDS's TCP transport (FASTDDS_BUILTIN_TRANSPORTS=LARGE_DATA, which a user
may still choose) can block forever while a participant is deleted (eProsima/Fast-DDS#2010; seen
here about once in a few dozen runs of the recorder, after its files were written). A node's work
is done by then, so teardown gets a deadline: past it the process exits with the status it would
have had. A node stopped by a signal thus ends within about 2 s, with status 0.
"""
from __future__ import annotations

import os
import signal
import sys
import threading

import rclpy

TEARDOWN_DEADLINE_S = 1.5
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
_stopping = threading.Event()


def _on_stop_signal(signum, frame) -> None:
    if _stopping.is_set():
        return  # already stopping: a second Ctrl-C / launch's forwarded SIGINT / SIGTERM
    _stopping.set()
    raise KeyboardInterrupt


def stop_on_signals() -> None:
    """First SIGINT or SIGTERM: KeyboardInterrupt in the main thread (a normal stop); later ones: ignored.

    Call before ``rclpy.init``: rclpy installs its handlers (which wake a waiting executor) on top
    and calls this one after its own, as it does Python's default handler.
    """
    for sig in STOP_SIGNALS:
        signal.signal(sig, _on_stop_signal)


def stopping(context=None) -> bool:
    """Whether the process is stopping (a stop signal came, or the context is shut down): errors
    from rcl calls (a publish on the invalidated context) are then expected, not worth a log line."""
    return _stopping.is_set() or not rclpy.ok(context=context)


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
    _stopping.set()
    if threading.current_thread() is threading.main_thread():
        for sig in STOP_SIGNALS:  # replaces rclpy's handlers, and is what they restore
            signal.signal(sig, _on_stop_signal)
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


def spin_until_done(node) -> None:
    """Spin a node that ends by itself (``node.done``: a finite source) or by a stop."""
    while rclpy.ok() and not node.done:
        rclpy.spin_once(node, timeout_sec=0.1)


def spin_main(name: str, make_node, doc: str, params, args=None, spin=rclpy.spin) -> int:
    """The ``main()`` of a node: ``--help``, quiet signals, one-line fatal errors (exit status 2 for a
    bad configuration or model), bounded teardown. ``spin``: ``rclpy.spin`` or ``spin_until_done``."""
    from rclpy.executors import ExternalShutdownException

    from muon_ad_ros.core.errors import MuonAdError
    from muon_ad_ros.core.malloc_tuning import keep_frame_buffers_mapped
    from muon_ad_ros.nodes.params import print_help_if_asked

    if print_help_if_asked(name, doc, params, args):
        return 0
    keep_frame_buffers_mapped()   # frame-sized buffers reused, not page-faulted in, every frame
    stop_on_signals()
    rclpy.init(args=args)
    node, code = None, 0
    try:
        node = make_node()
        spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except MuonAdError as exc:  # bad configuration / model: one clear line, exit status 2
        rclpy.logging.get_logger(name).fatal(str(exc))
        code = 2
    except Exception:
        if not stopping():  # an rcl call racing a SIGTERM's shutdown raises RCLError: a normal stop
            raise
    return shutdown(node, code)
