"""The perception node's output topics: the one table the node, its parameters, ``replay``'s
recorder and the tests derive from.

Each :class:`OutputTopic` names a relative topic (so namespaces and remapping apply), its ROS
message type, the encoding of its image, the network outputs
(:data:`joint_perception.tasks.OUTPUTS`) it is computed from, and the ``publish_*`` parameter
that switches it. The node creates a publisher per enabled entry, computes only the network
outputs that subscribed topics need, and fills each message with the builder registered under
the topic's name (:mod:`joint_perception.ros.perception_node`).

Adding an output topic = one entry here + its message builder in the node (see the worked
example in docs/architecture.md). This module imports no ROS package: message types are names
(``sensor_msgs/msg/Image``), turned into classes by :func:`message_class` where rclpy runs.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "OutputTopic",
    "OUTPUT_TOPICS",
    "publish_parameters",
    "topics_needing",
    "outputs_of",
    "outputs_needed",
    "message_class",
]


@dataclass(frozen=True)
class OutputTopic:
    """One published topic.

    Attributes:
        name: relative topic name.
        msg_type: ROS interface name, e.g. ``sensor_msgs/msg/Image``.
        needs: network outputs its message is built from.
        param: the ``publish_*`` parameter that enables it (several topics may share one).
        default: that parameter's default.
        encoding: image encoding (``sensor_msgs/image_encodings``), "" for non-images; for a
            compressed topic, the encoding of the image it carries.
        description: contract in one sentence (units, frame, REP).
        transport: ``"raw"`` (a plain message), or the image_transport transport that
            ``<base>/<transport>`` carries: ``"compressed"`` or ``"compressedDepth"``
            (``sensor_msgs/CompressedImage`` in that transport's exact format, so
            image_transport subscribers, RViz and rqt decode it).
    """

    name: str
    msg_type: str
    needs: tuple[str, ...]
    param: str
    default: bool
    encoding: str
    description: str
    transport: str = "raw"

    @property
    def is_camera_info(self) -> bool:
        return self.msg_type == "sensor_msgs/msg/CameraInfo"


OUTPUT_TOPICS: tuple[OutputTopic, ...] = (
    OutputTopic("depth/image", "sensor_msgs/msg/Image", ("depth",), "publish_depth", True, "32FC1",
                "metres along z of the optical frame; -Inf nearer than min_depth, +Inf beyond "
                "max_depth, NaN no estimate (REP 117/118)"),
    OutputTopic("depth/camera_info", "sensor_msgs/msg/CameraInfo", ("depth",), "publish_depth",
                True, "", "K and P of the published resolution, the input header"),
    OutputTopic("depth/image/compressedDepth", "sensor_msgs/msg/CompressedImage", ("depth",),
                "publish_depth", True, "32FC1",
                "image_transport compressedDepth (PNG of quantised inverse depth); "
                "non-finite depth and depth beyond compressed_depth.depth_max decode as NaN",
                "compressedDepth"),
    OutputTopic("segmentation/labels", "sensor_msgs/msg/Image", ("labels",), "publish_labels",
                True, "mono8", "class ids, 0 = void (mono16 above 255 classes)"),
    OutputTopic("segmentation/camera_info", "sensor_msgs/msg/CameraInfo", ("labels",),
                "publish_labels", True, "", "K and P of the segmentation images"),
    OutputTopic("segmentation/labels/compressed", "sensor_msgs/msg/CompressedImage", ("labels",),
                "publish_labels", True, "mono8",
                "image_transport compressed, lossless PNG of the class ids", "compressed"),
    OutputTopic("segmentation/color", "sensor_msgs/msg/Image", ("labels",), "publish_color",
                True, "rgb8", "colour-coded labels, optionally over the input image"),
    OutputTopic("segmentation/color/compressed", "sensor_msgs/msg/CompressedImage", ("labels",),
                "publish_color", True, "rgb8",
                "image_transport compressed, JPEG or PNG (compressed.color_format)", "compressed"),
    OutputTopic("normals/image", "sensor_msgs/msg/Image", ("normals",), "publish_normals", True,
                "32FC3", "unit normals in the optical frame, facing the camera"),
    OutputTopic("normals/camera_info", "sensor_msgs/msg/CameraInfo", ("normals",),
                "publish_normals", True, "", "K and P of the normals image"),
    OutputTopic("normals/color", "sensor_msgs/msg/Image", ("normals",), "publish_normals", True,
                "rgb8", "normals as colours, round((n + 1) / 2 * 255), black where undefined "
                "(for viewers: RViz shows no 32FC3)"),
    OutputTopic("points", "sensor_msgs/msg/PointCloud2", ("depth", "labels"), "publish_points",
                True, "", "organised cloud x, y, z, rgb, label in the optical frame"),
    OutputTopic("confidence/image", "sensor_msgs/msg/Image", ("confidence",),
                "publish_confidence", False, "32FC1",
                "softmax probability of the predicted class, in [0, 1]"),
    OutputTopic("confidence/camera_info", "sensor_msgs/msg/CameraInfo", ("confidence",),
                "publish_confidence", False, "", "K and P of the confidence image"),
)  # fmt: skip


def publish_parameters() -> dict[str, tuple[bool, str]]:
    """``publish_*`` parameter -> (default, description listing its topics), in table order."""
    out: dict[str, tuple[bool, list[str]]] = {}
    for t in OUTPUT_TOPICS:
        default, topics = out.setdefault(t.param, (t.default, []))
        if default != t.default:
            raise ValueError(f"topics sharing {t.param} disagree on its default")
        topics.append(f"{t.name} ({t.encoding or t.msg_type.rsplit('/', 1)[-1]}: {t.description})")
    return {p: (d, "Publish " + " and ".join(ts) + ".") for p, (d, ts) in out.items()}


def topics_needing(output: str) -> tuple[str, ...]:
    """Names of the topics built from network output ``output``."""
    return tuple(t.name for t in OUTPUT_TOPICS if output in t.needs)


def outputs_of(topic_names: Iterable[str]) -> tuple[str, ...]:
    """Network outputs the named topics are built from, in :data:`OUTPUT_TOPICS` order."""
    names = set(topic_names)
    needed: dict[str, None] = {}
    for t in OUTPUT_TOPICS:
        if t.name in names:
            needed.update(dict.fromkeys(t.needs))
    return tuple(needed)


def outputs_needed(params: Mapping[str, Any]) -> tuple[str, ...]:
    """Network outputs the topics enabled by ``params`` (``publish_*`` -> bool) are built from
    (:func:`outputs_of`): what the backend has to compute (the rest is not run)."""
    return outputs_of(t.name for t in OUTPUT_TOPICS if params[t.param])


def message_class(msg_type: str) -> type:
    """The Python class of a ROS interface name (``sensor_msgs/msg/Image`` -> ``Image``).

    Raises:
        ValueError: not of the form ``package/msg/Name``.
        ImportError: the interface package is not installed.
    """
    parts = msg_type.split("/")
    if len(parts) != 3 or parts[1] != "msg":
        raise ValueError(f"expected package/msg/Name, got {msg_type!r}")
    return getattr(importlib.import_module(f"{parts[0]}.msg"), parts[2])
