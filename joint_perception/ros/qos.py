"""QoS profiles of the perception node (REP 2003), overridable by parameters.

REP 2003 asks sensor drivers and their consumers to use the *sensor data* profile
(best effort, volatile, keep last, small depth) for high-rate sensor streams, and
reliable publishers for processed outputs. The node subscribes with the sensor-data profile
at depth 1 (the newest frame is all it processes) and publishes reliable with a small depth;
the ``qos.input.*`` / ``qos.output.*`` parameters (:mod:`joint_perception.ros.parameters`)
override each field.
"""

from __future__ import annotations

from rclpy.qos import (
    DurabilityPolicy,
    HistoryPolicy,
    QoSProfile,
    ReliabilityPolicy,
)

_RELIABILITY = {
    "best_effort": ReliabilityPolicy.BEST_EFFORT,
    "reliable": ReliabilityPolicy.RELIABLE,
    "system_default": ReliabilityPolicy.SYSTEM_DEFAULT,
}
_DURABILITY = {
    "volatile": DurabilityPolicy.VOLATILE,
    "transient_local": DurabilityPolicy.TRANSIENT_LOCAL,
    "system_default": DurabilityPolicy.SYSTEM_DEFAULT,
}


def make_qos(reliability: str, durability: str, depth: int) -> QoSProfile:
    """A keep-last :class:`QoSProfile` from parameter strings.

    Args:
        reliability: ``best_effort``, ``reliable`` or ``system_default``.
        durability: ``volatile``, ``transient_local`` or ``system_default``.
        depth: history depth >= 1.

    Raises:
        ValueError: unknown policy name or depth < 1 (message lists the accepted values).
    """
    if reliability not in _RELIABILITY:
        raise ValueError(f"unknown QoS reliability {reliability!r}; use one of {list(_RELIABILITY)}")
    if durability not in _DURABILITY:
        raise ValueError(f"unknown QoS durability {durability!r}; use one of {list(_DURABILITY)}")
    if int(depth) < 1:
        raise ValueError(f"QoS depth must be >= 1, got {depth}")
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=int(depth),
        reliability=_RELIABILITY[reliability],
        durability=_DURABILITY[durability],
    )


def input_qos(params: dict) -> QoSProfile:
    """Subscription QoS from ``qos.input.*`` (default: sensor data, best effort, depth 1)."""
    return make_qos(params.get("qos.input.reliability", "best_effort"),
                    params.get("qos.input.durability", "volatile"),
                    params.get("qos.input.depth", 1))


def output_qos(params: dict) -> QoSProfile:
    """Publisher QoS from ``qos.output.*`` (default: reliable, volatile, depth 2)."""
    return make_qos(params.get("qos.output.reliability", "reliable"),
                    params.get("qos.output.durability", "volatile"),
                    params.get("qos.output.depth", 2))
