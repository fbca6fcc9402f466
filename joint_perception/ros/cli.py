"""Console-script entry point of ``perception_node`` (``ros2 run`` / ``ros2 launch``).

It imports the node module lazily: the imports (rclpy, OpenCV, ONNX Runtime, ...) take about
a second, and a Ctrl-C during them must end the process quietly with exit code 0, as one
during start-up or spinning does (:func:`joint_perception.ros.perception_node.main`).
"""

from __future__ import annotations


def main() -> int:
    """Run :func:`joint_perception.ros.perception_node.main`; 0 on a Ctrl-C at any point."""
    try:
        from joint_perception.ros.perception_node import main as node_main

        return node_main()
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
