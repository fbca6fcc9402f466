"""Several cameras in ONE process sharing ONE model (one backend, one copy of the weights).

    ros2 launch joint_perception multi_camera.launch.py cameras:=front,rear \
        image_topic:='/{camera}/color/image_raw' camera_info_topic:='/{camera}/color/camera_info'

Starts ``perception_node --cameras front,rear``: one lifecycle node per camera, named
``perception_node`` in the namespace ``[<namespace>/]<camera>`` (``/front/perception_node``,
``/rear/perception_node``), each with its own topics (``/front/depth/image`` ...), CameraInfo,
parameters and ``/diagnostics`` status, all running on the backend of the first one
(``joint_perception.runtime.shared``; batched where the backend takes batches > 1).

Arguments:
    cameras            comma-separated camera names (required)
    namespace          common namespace in front of every camera (default: none)
    image_topic        image topic of a camera; ``{camera}`` is replaced by its name; a
                       relative name is inside the camera's namespace (default ``image``:
                       ``/<camera>/image``)
    camera_info_topic  the same for its CameraInfo (default ``camera_info``)
    params_file        parameter YAML applied to every camera (default: the package's
                       config/perception.yaml); keys ``/<camera>/perception_node:`` in it set
                       values for one camera
    model, backend, precision, autostart   override params_file only when given
    use_sim_time       use /clock

For one process per camera instead, start perception.launch.py once per camera with its
``namespace``: each process then loads its own copy of the model.
"""

import importlib.util
import os
from pathlib import Path

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

PACKAGE = "joint_perception"


def _single_camera_launch():
    """perception.launch.py, installed beside this file: the home of the launch arguments
    both files share (which override params_file, and how)."""
    path = Path(__file__).with_name("perception.launch.py")
    spec = importlib.util.spec_from_file_location("joint_perception_perception_launch", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


parameter_overrides = _single_camera_launch().parameter_overrides


def camera_remappings(cameras: list[str], namespace: str, image_topic: str, info_topic: str):
    """Remapping rules (fully qualified ``from``, so each applies to one camera's node only)."""

    def absolute(cam: str, topic: str) -> str:
        topic = topic.replace("{camera}", cam)
        if topic.startswith("/"):
            return topic
        return "/" + "/".join(p for p in (namespace.strip("/"), cam, topic) if p)

    rules = []
    for cam in cameras:
        image = absolute(cam, image_topic)
        for src, dst in (
            (absolute(cam, "image"), image),
            (absolute(cam, "image/compressed"), f"{image}/compressed"),
            (absolute(cam, "camera_info"), absolute(cam, info_topic)),
        ):
            if src != dst:
                rules.append((src, dst))
    return rules


def _node(context):
    cameras = [
        c.strip().strip("/")
        for c in LaunchConfiguration("cameras").perform(context).split(",")
        if c.strip()
    ]
    if not cameras:
        raise RuntimeError("multi_camera.launch.py: give cameras:=name1,name2,...")
    namespace = LaunchConfiguration("namespace").perform(context)
    overrides = parameter_overrides(context)
    return [
        Node(
            package=PACKAGE,
            executable="perception_node",
            namespace=namespace,
            output="screen",
            emulate_tty=True,
            arguments=["--cameras", ",".join(cameras)],
            parameters=[LaunchConfiguration("params_file"), overrides],
            remappings=camera_remappings(
                cameras,
                namespace,
                LaunchConfiguration("image_topic").perform(context),
                LaunchConfiguration("camera_info_topic").perform(context),
            ),
        )
    ]


def generate_launch_description():
    default_params = os.path.join(get_package_share_directory(PACKAGE), "config", "perception.yaml")
    return LaunchDescription(
        [
            DeclareLaunchArgument("cameras", description="Comma-separated camera names."),
            DeclareLaunchArgument(
                "namespace", default_value="", description="Common namespace of the cameras."
            ),
            DeclareLaunchArgument(
                "image_topic",
                default_value="image",
                description="Image topic of a camera ({camera} = its name; relative = inside "
                "its namespace).",
            ),
            DeclareLaunchArgument(
                "camera_info_topic",
                default_value="camera_info",
                description="CameraInfo topic of a camera ({camera} = its name).",
            ),
            DeclareLaunchArgument(
                "params_file", default_value=default_params, description="Parameter YAML file."
            ),
            DeclareLaunchArgument(
                "model", default_value="", description="Model; empty = the params_file's value."
            ),
            DeclareLaunchArgument(
                "backend", default_value="", description="Backend; empty = the params_file's value."
            ),
            DeclareLaunchArgument(
                "precision",
                default_value="",
                description="TensorRT precision; empty = the params_file's value.",
            ),
            DeclareLaunchArgument(
                "autostart",
                default_value="",
                description="true/false; empty = the params_file's value.",
            ),
            DeclareLaunchArgument(
                "use_sim_time", default_value="false", description="Use simulation (/clock) time."
            ),
            OpaqueFunction(function=_node),
        ]
    )
