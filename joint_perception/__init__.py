"""joint_perception: monocular joint depth, semantics and normals for ROS 2."""

__version__ = "0.1.0"
