"""diagnostic_msgs statuses of the nodes: the stylize and stereo nodes' built from their meters, and
make_status / publish_status, which every node's /diagnostics goes through.

Key names are stable (monitoring and the tests read them): rates in Hz, counters since start,
latencies in ms as ``<stage>_p50_ms`` / ``<stage>_p95_ms`` over the last 300 frames.
"""
from __future__ import annotations

import math
import os
from pathlib import Path

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

STALE_AFTER_S = 5.0
STAGES = ("queue", "decode", "preprocess", "inference", "postprocess", "temporal", "publish",
          "receive_to_publish", "stamp_to_publish", "stamp_to_receive", "beyond_inference")


def _fmt(value: float) -> str:
    return "nan" if value is None or math.isnan(value) else f"{value:.2f}"


def stylize_status(node, malformed_since_last: int) -> DiagnosticStatus:
    rate_in, rate_out = node.rate_in.rate(), node.rate_out.rate()
    counts = dict(node.counts)
    dropped = node._slot.dropped
    stages = node.times.summary()

    level, message = DiagnosticStatus.OK, f"stylizing at {rate_out:.1f} Hz"
    if counts["frames_in"] == 0:
        level, message = DiagnosticStatus.WARN, f"waiting for images on {node.sub.topic_name}"
    elif node.rate_in.seconds_since_last() > STALE_AFTER_S:
        level = DiagnosticStatus.WARN
        message = f"no image on {node.sub.topic_name} for over {STALE_AFTER_S:g} s"
    if malformed_since_last:
        level = DiagnosticStatus.WARN
        message = f"{malformed_since_last} malformed message(s): {node._last_problem}"
    if counts["errors"] and counts["frames_out"] == 0:
        level, message = DiagnosticStatus.ERROR, f"no frame stylized: {node._last_problem}"

    values = {
        "input_rate_hz": _fmt(rate_in), "output_rate_hz": _fmt(rate_out),
        "frames_in": str(counts["frames_in"]), "frames_out": str(counts["frames_out"]),
        "dropped": str(dropped), "malformed": str(counts["malformed"]), "errors": str(counts["errors"]),
        "style": node._style_name, "strength": f"{node.stylizer.strength:g}",
        "temporal": "on" if node.stylizer.temporal is not None else "off",
        "model": str(node.stylizer.card.get("id", "?")), "engine": node.stylizer.engine.describe(),
        "untrained": str(bool(node.stylizer.card.get("untrained", False))).lower(),
        "last_problem": node._last_problem,
        "startup_to_ready_s": _fmt(getattr(node, "ready_s", float("nan"))),
        "startup_to_first_frame_s": _fmt(getattr(node, "startup_s", float("nan"))),
    }
    values.update(stage_values(stages, STAGES))
    return make_status(node, "stylization", level, message, values, model_id(node))


def stage_values(stages: dict, names) -> dict:
    """``<stage>_p50_ms`` / ``<stage>_p95_ms`` of every named stage ("nan" before its first sample)."""
    values = {}
    for stage in names:
        summary = stages.get(stage)
        values[f"{stage}_p50_ms"] = _fmt(summary["p50"]) if summary else "nan"
        values[f"{stage}_p95_ms"] = _fmt(summary["p95"]) if summary else "nan"
    return values


def model_id(node) -> str:
    """A stylizing node's model id (its card's "id"): the hardware id of its statuses."""
    return str(node.stylizer.card.get("id", ""))


def make_status(node, what: str, level, message: str, values: dict, hardware_id: str = "") -> DiagnosticStatus:
    """A node's DiagnosticStatus named "<node>: <what>" (a stylizing node gives its model id as the
    hardware id); values are written with str()."""
    status = DiagnosticStatus()
    status.level = level
    status.name = f"{node.get_fully_qualified_name()}: {what}"
    status.message = message
    status.hardware_id = hardware_id
    status.values = [KeyValue(key=k, value=str(v)) for k, v in values.items()]
    return status


def publish_status(node, publisher, status: DiagnosticStatus) -> None:
    """Publish one status as a DiagnosticArray stamped with the node's clock now."""
    msg = DiagnosticArray(status=[status])
    msg.header.stamp = node.get_clock().now().to_msg()
    publisher.publish(msg)


def process_age_s() -> float:
    """Seconds since this process started (Linux /proc; nan elsewhere): start-up includes the
    interpreter, imports and model load, which a timer started in the node would miss."""
    try:
        start_ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        return uptime - start_ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return float("nan")


def status_values(status: DiagnosticStatus) -> dict:
    """{key: value} of a status, for readers of the diagnostics (tests, the demo)."""
    return {kv.key: kv.value for kv in status.values}


STEREO_STAGES = ("queue", "decode", "left", "right", "disparity", "warp", "stylize_pair", "publish",
                 "receive_to_publish")


def stereo_status(node, malformed_since_last: int) -> DiagnosticStatus:
    """The stereo node's status: pairs in and out, frames that found no partner, stage latencies."""
    counts = dict(node.counts)
    unmatched = node.pairer.unmatched
    level, message = DiagnosticStatus.OK, f"stylizing pairs at {node.rate_out.rate():.1f} Hz"
    if counts["left_in"] == 0 or counts["right_in"] == 0:
        level = DiagnosticStatus.WARN
        message = f"waiting for images on {' and '.join(node.input_topics)}"
    elif node.pairer.matched == 0:
        level, message = DiagnosticStatus.WARN, "no left and right frames within slop of each other"
    elif node.rate_in.seconds_since_last() > STALE_AFTER_S:
        level, message = DiagnosticStatus.WARN, f"no image for over {STALE_AFTER_S:g} s"
    if malformed_since_last:
        level = DiagnosticStatus.WARN
        message = f"{malformed_since_last} malformed message(s): {node._last_problem}"
    if counts["errors"] and counts["pairs_out"] == 0:
        level, message = DiagnosticStatus.ERROR, f"no pair stylized: {node._last_problem}"
    values = {
        "left_in": str(counts["left_in"]), "right_in": str(counts["right_in"]),
        "pairs_matched": str(node.pairer.matched), "pairs_out": str(counts["pairs_out"]),
        "unmatched_left": str(unmatched[0]), "unmatched_right": str(unmatched[1]),
        "unmatched": str(node.pairer.unmatched_total), "dropped": str(node._slot.dropped),
        "malformed": str(counts["malformed"]), "errors": str(counts["errors"]),
        "disparity_from_topic": str(counts["disparity_used"]), "mode": node.stereo.mode,
        "output_rate_hz": _fmt(node.rate_out.rate()), "style": node._style_name,
        "strength": f"{node.stylizer.strength:g}", "model": str(node.stylizer.card.get("id", "?")),
        "last_problem": node._last_problem,
    }
    values.update(stage_values(node.times.summary(), STEREO_STAGES))
    return make_status(node, "stereo stylization", level, message, values, model_id(node))
