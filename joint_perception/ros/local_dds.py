"""Keep ROS 2 / DDS traffic on this machine for tests, the demo and rosbag replay.

docs/contracts.md section 6: a loopback-only Fast DDS profile (shared memory + UDPv4 on 127.0.0.1),
``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST`` as a second guard and a private ``ROS_DOMAIN_ID``.
Robots keep their own DDS set-up; nothing here runs inside the perception node itself.

This module imports neither rclpy nor message packages, so it can run before ``rclpy.init``.
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

PROFILE_NAME = "fastdds_loopback.xml"

# rmw variables that decide where DDS traffic goes.
_ENV_KEYS = (
    "RMW_IMPLEMENTATION",
    "FASTDDS_DEFAULT_PROFILES_FILE",
    "ROS_AUTOMATIC_DISCOVERY_RANGE",
    "ROS_DOMAIN_ID",
)


def profile_path() -> Path:
    """Path of the shipped loopback Fast DDS XML profile (package data)."""
    return Path(str(resources.files("joint_perception.ros").joinpath(PROFILE_NAME)))


def domain_id_for(pid: int | None = None) -> int:
    """A ROS domain id private to one process tree, in [100, 200).

    ROS 2 domain ids must stay below 232 (UDP port arithmetic); 100-199 avoids the default 0
    and the ids people use by hand. Derived from the pid so parallel test runs differ.
    """
    pid = os.getpid() if pid is None else pid
    return 100 + pid % 100


def loopback_environment(domain_id: int | None = None, base: dict | None = None) -> dict:
    """Return a copy of ``base`` (default ``os.environ``) configured for loopback-only DDS.

    Keeps ``LD_LIBRARY_PATH`` and the ROS wheels' bootstrap marker, so a child process started
    with this environment can still ``import rclpy`` (docs/contracts.md section 6).

    Args:
        domain_id: ROS_DOMAIN_ID to use; default: an existing ROS_DOMAIN_ID in ``base`` or
            :func:`domain_id_for` the current process.
        base: environment to start from.

    Returns:
        A new ``dict`` suitable for ``subprocess.Popen(env=...)``.
    """
    env = dict(os.environ if base is None else base)
    if domain_id is None:
        domain_id = int(env.get("ROS_DOMAIN_ID") or domain_id_for())
    if not 0 <= domain_id <= 232:
        raise ValueError(f"ROS_DOMAIN_ID must be in [0, 232], got {domain_id}")
    env["RMW_IMPLEMENTATION"] = "rmw_fastrtps_cpp"
    env["FASTDDS_DEFAULT_PROFILES_FILE"] = str(profile_path())
    env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    env["ROS_DOMAIN_ID"] = str(domain_id)
    return env


def apply_loopback_environment(domain_id: int | None = None) -> dict:
    """Configure ``os.environ`` for loopback-only DDS; call before ``rclpy.init()``.

    Returns:
        The variables that were set (name -> value).
    """
    env = loopback_environment(domain_id)
    changed = {k: env[k] for k in _ENV_KEYS}
    os.environ.update(changed)
    return changed
