"""Declaring and validating node parameters from one table of ``ParamSpec``.

Each spec gives the default, a description, whether it may change at run time, and its constraints
(choices or a numeric range). Declaration builds a ParameterDescriptor from it (so ``ros2 param
describe`` shows the constraints) and checks the start-up value; the on-set callback checks every
update against the same spec, so a bad value is rejected with a reason and never crashes a node.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, SetParametersResult
from rclpy.exceptions import InvalidTopicNameException, ParameterException
from rclpy.validate_topic_name import validate_topic_name

from muon_ad_ros.core.errors import ConfigError, MuonAdError

QOS_RELIABILITY = ("best_effort", "reliable")
TRANSPORTS = ("raw", "compressed")
COMPRESSED_FORMATS = ("jpeg", "png")


def check_topic(value: str) -> Optional[str]:
    try:
        validate_topic_name(value)
    except InvalidTopicNameException as exc:
        return f"invalid topic name {value!r}: {str(exc).splitlines()[0]}"
    return None


@dataclass(frozen=True)
class ParamSpec:
    name: str
    default: Any
    description: str
    dynamic: bool = False                          # may change at run time
    choices: tuple = ()
    int_range: Optional[tuple[int, int]] = None
    float_range: Optional[tuple[float, float]] = None
    check: Optional[Callable[[Any], Optional[str]]] = None   # extra check: None if fine, else the reason
    any_type: bool = False                         # the type is left to ``check`` (e.g. a name or an index)

    def descriptor(self) -> ParameterDescriptor:
        d = ParameterDescriptor(description=self.description, read_only=not self.dynamic)
        # A float parameter takes an integer too ("rate:=15"): rclpy would reject the INTEGER type
        # outright, so typing is left to validate(), which accepts int for float and nothing else.
        d.dynamic_typing = isinstance(self.default, float) or self.any_type
        constraints = []
        if self.choices:
            constraints.append("one of: " + ", ".join(repr(c) for c in self.choices))
        if self.int_range:
            d.integer_range = [IntegerRange(from_value=self.int_range[0], to_value=self.int_range[1], step=0)]
        if self.float_range:
            d.floating_point_range = [FloatingPointRange(from_value=float(self.float_range[0]),
                                                         to_value=float(self.float_range[1]), step=0.0)]
        d.additional_constraints = "; ".join(constraints)
        return d

    def validate(self, value: Any) -> Optional[str]:
        """None if ``value`` is acceptable, else why not."""
        int_for_float = isinstance(self.default, float) and type(value) is int
        if type(value) is not type(self.default) and not int_for_float and not self.any_type:
            return f"{self.name} must be a {type(self.default).__name__}, got {value!r}"
        if self.choices and value not in self.choices:
            return f"{self.name} must be one of {', '.join(map(str, self.choices))}, got {value!r}"
        for rng in (self.int_range, self.float_range):
            if rng and not rng[0] <= value <= rng[1]:
                return f"{self.name} must be within [{rng[0]}, {rng[1]}], got {value}"
        return self.check(value) if self.check else None


def declare_all(node, specs: Sequence[ParamSpec]) -> dict:
    """Declare every spec on ``node``; returns {name: value}. Raises ConfigError listing every bad
    start-up value (from a params file or -p) at once, instead of failing on the first."""
    values, problems = {}, []
    for spec in specs:
        try:
            value = node.declare_parameter(spec.name, spec.default, spec.descriptor()).value
        except ParameterException as exc:  # out of a declared range, wrong type...
            problems.append(f"{spec.name}: {str(exc).splitlines()[0]}")
            continue
        reason = spec.validate(value)
        if reason:
            problems.append(reason)
        values[spec.name] = float(value) if isinstance(spec.default, float) else value
    if problems:
        raise ConfigError("invalid parameters: " + "; ".join(problems))
    return values


def one_line(exc: BaseException) -> str:
    """The first line of an exception, named by its type unless it is one of ours (a ConfigError's
    message already says what is wrong)."""
    text = (str(exc).strip().splitlines() or [""])[0]
    return text if isinstance(exc, MuonAdError) else f"{type(exc).__name__}: {text}"


def make_on_set_callback(specs: Sequence[ParamSpec], prepare: Callable[[str, Any], Callable[[], None]]):
    """An on-set-parameters callback that applies a request all-or-nothing, as rclpy expects.

    Every update is validated by its spec, then ``prepare(name, value)`` checks it against the
    node's state and returns a function that applies it (or raises ConfigError). Only when every
    update of the request is prepared are they applied, so a rejected request changes nothing: the
    node never runs with a value its parameters do not show. Any exception is a rejection with its
    one-line reason: a parameter value never kills a node."""
    by_name = {s.name: s for s in specs}

    def check_and_apply(params) -> SetParametersResult:
        commits = []
        for p in params:
            spec = by_name.get(p.name)
            if spec is None:
                continue  # not ours (e.g. use_sim_time): rclpy's own checks apply
            if not spec.dynamic:
                return SetParametersResult(successful=False,
                                           reason=f"{p.name} is read-only (set it at start-up)")
            reason = spec.validate(p.value)
            if reason:
                return SetParametersResult(successful=False, reason=reason)
            commits.append(prepare(p.name, p.value))
        for commit in commits:  # nothing above changed the node; from here nothing can fail
            commit()
        return SetParametersResult(successful=True)

    def callback(params) -> SetParametersResult:
        try:
            return check_and_apply(params)
        except Exception as exc:  # noqa: BLE001 - rclpy would end spin() on it
            return SetParametersResult(successful=False, reason=one_line(exc))

    return callback


def print_help_if_asked(node_name: str, doc: Optional[str], specs: Sequence[ParamSpec],
                        args: Optional[Sequence[str]] = None) -> bool:
    """``-h`` / ``--help`` before any ``--ros-args``: print the node's usage and parameter table and
    return True (main() then exits 0 without starting ROS); otherwise False."""
    argv = list(sys.argv[1:] if args is None else args)
    own = argv[:argv.index("--ros-args")] if "--ros-args" in argv else argv
    if not any(a in ("-h", "--help") for a in own):
        return False
    summary = (doc or "").strip().split("\n\n")[0]
    lines = [f"usage: ros2 run muon_ad_ros {node_name} [--ros-args [-p NAME:=VALUE]... "
             "[--params-file FILE] [-r FROM:=TO]...]", "", summary, "", "parameters (default; * = changes live):"]
    width = max(len(spec.name) for spec in specs)
    for spec in specs:
        live = "*" if spec.dynamic else " "
        lines.append(f"  {spec.name:<{width}} {live} {spec.default!r:<14} {spec.description}")
    print("\n".join(lines))
    return True


def qos_profile(reliability: str, depth: int):
    from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy

    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth,
                      reliability=ReliabilityPolicy.BEST_EFFORT if reliability == "best_effort"
                      else ReliabilityPolicy.RELIABLE)
