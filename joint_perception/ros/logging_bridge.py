"""Python ``logging`` records of the library, re-emitted through a ROS node's logger.

The runtime (``joint_perception.runtime``: backend choice and fallback, TensorRT engine cache
rebuilds) logs with Python's ``logging``, which a ROS node does not route anywhere but
stderr. :func:`forward_python_logs` sends them through the node's rclpy logger for the
duration of a block, so they reach ``/rosout`` (``ros2 topic echo /rosout``, rqt_console,
bags) with the node's name.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager


class RosLogHandler(logging.Handler):
    """A ``logging.Handler`` writing each record to an rclpy logger at the matching severity."""

    def __init__(self, ros_logger, level: int = logging.INFO) -> None:
        super().__init__(level)
        self.ros_logger = ros_logger

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = f"{record.name}: {record.getMessage()}"
            if record.levelno >= logging.ERROR:
                self.ros_logger.error(text)
            elif record.levelno >= logging.WARNING:
                self.ros_logger.warning(text)
            elif record.levelno >= logging.INFO:
                self.ros_logger.info(text)
            else:
                self.ros_logger.debug(text)
        except Exception:  # noqa: BLE001 - logging must never raise into the caller
            self.handleError(record)


@contextmanager
def forward_python_logs(
    ros_logger, name: str = "joint_perception", level: int = logging.INFO
) -> Iterator[RosLogHandler]:
    """Within the block, records of logger ``name`` (and its children) at ``level`` or above
    go to ``ros_logger`` (an ``rclpy`` logger, e.g. ``node.get_logger()``)."""
    logger = logging.getLogger(name)
    handler = RosLogHandler(ros_logger, level)
    old_level = logger.level
    logger.addHandler(handler)
    if logger.getEffectiveLevel() > level:
        logger.setLevel(level)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
