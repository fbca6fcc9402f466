"""QoS profiles of the perception node (REP 2003), overridable by parameters.

REP 2003 asks sensor drivers and their consumers to use the *sensor data* profile
(best effort, volatile, keep last, small depth) for high-rate sensor streams, and
reliable publishers for processed outputs. The node subscribes with the sensor-data profile
at depth 1 (the newest frame is all it processes) and publishes reliable with a small depth;
the ``qos.input.*`` / ``qos.output.*`` parameters override each field. Their defaults and
accepted values live only in the parameter table (:mod:`joint_perception.ros.parameters`).
"""

from __future__ import annotations

from rclpy.qos import (
    DurabilityPolicy,
    HistoryPolicy,
    QoSProfile,
    ReliabilityPolicy,
)

from joint_perception.ros.parameters import DURABILITIES, RELIABILITIES, defaults

# parameter value -> rclpy policy (the names are the table's choices, upper-cased in rclpy)
_RELIABILITY = {name: ReliabilityPolicy[name.upper()] for name in RELIABILITIES}
_DURABILITY = {name: DurabilityPolicy[name.upper()] for name in DURABILITIES}


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
        raise ValueError(
            f"unknown QoS reliability {reliability!r}; use one of {list(_RELIABILITY)}"
        )
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


def _profile(params: dict, prefix: str) -> QoSProfile:
    """``<prefix>.reliability`` / ``.durability`` / ``.depth`` from ``params``, else the
    defaults of the parameter table."""
    values = {**defaults(), **params}
    return make_qos(
        values[f"{prefix}.reliability"], values[f"{prefix}.durability"], values[f"{prefix}.depth"]
    )


def input_qos(params: dict) -> QoSProfile:
    """Subscription QoS from ``qos.input.*`` (defaults: the parameter table's sensor-data profile)."""
    return _profile(params, "qos.input")


def output_qos(params: dict) -> QoSProfile:
    """Publisher QoS from ``qos.output.*`` (defaults: the parameter table's)."""
    return _profile(params, "qos.output")
