"""config/perception.rviz shows the node's outputs: every display's topic is an output topic of
ros/topics.py, image displays only get encodings RViz's image display supports (it has no
32FC3), and the cloud display colours by the cloud's ``rgb`` field."""

from __future__ import annotations

import yaml

from joint_perception.pointcloud import cloud_fields
from joint_perception.ros.topics import OUTPUT_TOPICS

#: rviz_default_plugins ros_image_texture.cpp
RVIZ_IMAGE_ENCODINGS = {"rgb8", "rgba8", "bgr8", "bgra8", "mono8", "mono16", "16UC1", "32FC1"}


def test_rviz_config_shows_depth_labels_normals_and_cloud(repo_root):
    config = yaml.safe_load((repo_root / "config" / "perception.rviz").read_text())
    displays = config["Visualization Manager"]["Displays"]
    topics = {t.name: t for t in OUTPUT_TOPICS}
    shown = {}
    for d in displays:
        name = d["Topic"]["Value"].lstrip("/")
        assert name in topics, name
        shown[name] = d
        if d["Class"] == "rviz_default_plugins/Image":
            assert topics[name].encoding in RVIZ_IMAGE_ENCODINGS, name
        else:
            assert d["Class"] == "rviz_default_plugins/PointCloud2"
            assert topics[name].msg_type == "sensor_msgs/msg/PointCloud2"
            assert d["Color Transformer"] == "RGB8"
            assert "rgb" in [f.name for f in cloud_fields()]
    assert {"depth/image", "segmentation/color", "normals/color", "points"} <= set(shown)
    assert (repo_root / "README.md").read_text().count("config/perception.rviz") >= 1
