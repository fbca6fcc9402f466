"""The topics replay uses: the bag's inputs, the node's outputs and ``/diagnostics``.

One definition of each: the node's inputs are remapped to the bag topics of
:class:`ReplayTopics`, the recorder subscribes to every topic of :data:`OUTPUT_TOPICS` under
the node's namespace (:func:`namespaced`), and accuracy reads the outputs of
:data:`SCORED_OUTPUTS` back from the output bag.
"""

from __future__ import annotations

from dataclasses import dataclass

from joint_perception.data.rosbag_io import BagTopics
from joint_perception.ros.topics import OUTPUT_TOPICS as NODE_OUTPUT_TOPICS

DEFAULT_NAMESPACE = "/replay"

#: relative output topic -> ROS type name: every raw topic of the node's table (the
#: ``compressed``/``compressedDepth`` variants are not recorded: subscribing would make the node
#: encode them, which is not what replay measures)
OUTPUT_TOPICS = {t.name: t.msg_type for t in NODE_OUTPUT_TOPICS if t.transport == "raw"}
DIAGNOSTICS_TOPIC = "/diagnostics"
DIAGNOSTICS_TYPE = "diagnostic_msgs/msg/DiagnosticArray"

# The output latency and missed frames are measured on (when the node publishes it).
PRIMARY_OUTPUT = "depth/image"

# Network output (as accuracy.load_recorded_outputs names it) -> relative output topic.
SCORED_OUTPUTS = {
    "depth": "depth/image",
    "labels": "segmentation/labels",
    "normals": "normals/image",
}


@dataclass
class ReplayTopics:
    """Bag topics replay publishes from and scores against; defaults are the RealSense-style
    names of :class:`joint_perception.data.rosbag_io.BagTopics` (as in ../shared/data/bags)."""

    image: str = BagTopics.color
    compressed: str = BagTopics.color_compressed
    camera_info: str = BagTopics.color_info
    depth: str = BagTopics.depth

    def input_image(self, compressed: bool) -> str:
        """The bag's image topic that is replayed (compressed or raw)."""
        return self.compressed if compressed else self.image

    def bag_topics(self) -> BagTopics:
        """The same names as :class:`~joint_perception.data.rosbag_io.BagTopics` (for reading
        the ground truth)."""
        return BagTopics(
            color=self.image,
            color_compressed=self.compressed,
            color_info=self.camera_info,
            depth=self.depth,
        )


def namespaced(namespace: str, name: str) -> str:
    """``name`` (relative) under ``namespace``: ``namespaced("/replay/", "points")`` is
    ``/replay/points``."""
    return f"{namespace.rstrip('/')}/{name}"


def primary_output(active: list[str]) -> str | None:
    """:data:`PRIMARY_OUTPUT` when it is among the ``active`` outputs, else the first active
    one; None when there is none."""
    if PRIMARY_OUTPUT in active:
        return PRIMARY_OUTPUT
    return active[0] if active else None
