"""Console-script entry point of ``perception_node`` (``ros2 run`` / ``ros2 launch``).

It imports the node module lazily: the imports (rclpy, OpenCV, ONNX Runtime, ...) take about
a second, and a Ctrl-C during them must end the process quietly with exit code 0, as one
during start-up or spinning does (:func:`joint_perception.ros.perception_node.main`).
"""

from __future__ import annotations


def main() -> int:
    """Run :func:`joint_perception.ros.perception_node.main`; 0 on a Ctrl-C at any point.

    Once the node has finished, SIGINT and SIGTERM are ignored: the process is exiting, and a
    late signal (the second Ctrl-C, launch's SIGTERM escalation) must not turn a clean exit into
    a traceback or "exit code -15" while the interpreter tears down.
    """
    import signal

    try:
        from joint_perception.ros.perception_node import main as node_main

        code = node_main()
    except KeyboardInterrupt:  # during the imports: nothing started, nothing to report
        _exit_interrupted()
    except ImportError as exc:
        # pybind11 extensions (rclpy's C part) report a Ctrl-C during their initialisation as
        # "ImportError: initialization failed" raised from the KeyboardInterrupt
        if not _interrupted(exc):
            raise
        _exit_interrupted()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    return code


def _interrupted(exc: BaseException | None) -> bool:
    """True when a KeyboardInterrupt is in ``exc``'s cause/context chain."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, KeyboardInterrupt):
            return True
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return False


def _exit_interrupted() -> None:
    """Leave with exit code 0 after a Ctrl-C before the node started."""
    import os
    import sys

    print("perception_node: interrupted during start-up: exiting", file=sys.stderr)
    sys.stdout.flush()
    sys.stderr.flush()
    # CPython marks a KeyboardInterrupt that leaves an exec()'d string (dataclass creation
    # runs one per class) as unhandled even when caught here, and at exit kills the process
    # with SIGINT (exit code -2 instead of 0). Nothing was started, so leave without the
    # interpreter's finalisation.
    os._exit(0)


if __name__ == "__main__":
    raise SystemExit(main())
