"""Launch the joint_perception perception node next to a camera driver.

    ros2 launch joint_perception perception.launch.py \
        namespace:=front image_topic:=/camera/color/image_raw \
        camera_info_topic:=/camera/color/camera_info backend:=tensorrt

Arguments:
    namespace          namespace of the node and its output topics (default: none)
    image_topic        camera image to subscribe (remaps ``image``; ``image/compressed`` follows)
    camera_info_topic  CameraInfo of that image (remaps ``camera_info``)
    params_file        parameter YAML (default: the package's config/perception.yaml, whose
                       ``/**`` key applies under any namespace)
    model              model directory / .onnx / shipped model name; empty (default) = the
                       params_file's value
    backend            auto | tensorrt | onnxruntime | torch; empty (default) = the params_file's
    precision          TensorRT engine: fp32 | fp16 | int8 | best; empty (default) = the
                       params_file's
    autostart          true: configure and activate at start-up; false: a managed node waiting
                       for ``ros2 lifecycle set /<ns>/perception_node configure``; empty
                       (default) = the params_file's value (true in the shipped file)
    use_sim_time       use /clock (replaying bags)

The node is a lifecycle node (launch_ros ``LifecycleNode``), so launch-level lifecycle events
and ``ros2 lifecycle`` work on it; ``autostart`` is the node's own parameter (older launch_ros
releases have no ``LifecycleNode(autostart=)``).
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import LifecycleNode
from launch_ros.parameter_descriptions import ParameterValue

PACKAGE = "joint_perception"
#: launch arguments that override the params file only when given (non-empty), and their type
OPTIONAL_OVERRIDES = {"model": str, "backend": str, "precision": str, "autostart": bool}


def parameter_overrides(context) -> dict:
    """The parameters the launch arguments set on top of params_file: ``model``, ``backend``,
    ``precision`` and ``autostart`` only when given (empty = the file's value), ``use_sim_time`` always."""
    overrides = {}
    for name, kind in OPTIONAL_OVERRIDES.items():
        value = LaunchConfiguration(name).perform(context).strip()
        if value:
            overrides[name] = ParameterValue(value, value_type=kind)
    overrides["use_sim_time"] = ParameterValue(LaunchConfiguration("use_sim_time"), value_type=bool)
    return overrides


def _node(context):
    image_topic = LaunchConfiguration("image_topic")
    return [
        LifecycleNode(
            package=PACKAGE,
            executable="perception_node",
            name="perception_node",
            namespace=LaunchConfiguration("namespace"),
            output="screen",
            emulate_tty=True,
            parameters=[LaunchConfiguration("params_file"), parameter_overrides(context)],
            remappings=[
                ("image", image_topic),
                ("image/compressed", [image_topic, "/compressed"]),
                ("camera_info", LaunchConfiguration("camera_info_topic")),
            ],
        )
    ]


def generate_launch_description():
    default_params = os.path.join(get_package_share_directory(PACKAGE), "config", "perception.yaml")
    return LaunchDescription(
        [
            DeclareLaunchArgument(
                "namespace", default_value="", description="Namespace of the node and its outputs."
            ),
            DeclareLaunchArgument(
                "image_topic",
                default_value="image",
                description="Camera image topic (sensor_msgs/Image).",
            ),
            DeclareLaunchArgument(
                "camera_info_topic",
                default_value="camera_info",
                description="CameraInfo topic of that image.",
            ),
            DeclareLaunchArgument(
                "params_file",
                default_value=default_params,
                description="Node parameter YAML file.",
            ),
            DeclareLaunchArgument(
                "model",
                default_value="",
                description="Model directory, .onnx file or shipped model name; empty = the "
                "params_file's value.",
            ),
            DeclareLaunchArgument(
                "backend",
                default_value="",
                description="auto | tensorrt | onnxruntime | torch; empty = the params_file's "
                "value.",
            ),
            DeclareLaunchArgument(
                "precision",
                default_value="",
                description="TensorRT engine precision: fp32 | fp16 | int8 | best; empty = the "
                "params_file's value.",
            ),
            DeclareLaunchArgument(
                "autostart",
                default_value="",
                description="true: configure and activate at start-up; false: wait for a "
                "lifecycle manager; empty = the params_file's value (true in the shipped one).",
            ),
            DeclareLaunchArgument(
                "use_sim_time", default_value="false", description="Use simulation (/clock) time."
            ),
            OpaqueFunction(function=_node),
        ]
    )
