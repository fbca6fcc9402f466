"""Launch the joint_perception perception node next to a camera driver.

    ros2 launch joint_perception perception.launch.py \
        namespace:=front image_topic:=/camera/color/image_raw \
        camera_info_topic:=/camera/color/camera_info backend:=tensorrt

Arguments:
    namespace          namespace of the node and its output topics (default: none)
    image_topic        camera image to subscribe (remaps ``image``; ``image/compressed`` follows)
    camera_info_topic  CameraInfo of that image (remaps ``camera_info``)
    params_file        parameter YAML (default: the package's config/perception.yaml)
    model              model directory / .onnx / shipped model name (overrides params_file)
    backend            auto | tensorrt | onnxruntime | torch (overrides params_file)
    precision          TensorRT engine: fp32 | fp16 | int8 | best (overrides params_file)
    use_sim_time       use /clock (replaying bags)
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration, PythonExpression
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue

PACKAGE = "joint_perception"


def generate_launch_description():
    default_params = os.path.join(get_package_share_directory(PACKAGE), "config", "perception.yaml")
    image_topic = LaunchConfiguration("image_topic")
    args = [
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
            "params_file", default_value=default_params, description="Node parameter YAML file."
        ),
        DeclareLaunchArgument(
            "model",
            default_value="realtime",
            description="Model directory, .onnx file or shipped model name.",
        ),
        DeclareLaunchArgument(
            "backend", default_value="auto", description="auto | tensorrt | onnxruntime | torch."
        ),
        DeclareLaunchArgument(
            "precision",
            default_value="best",
            description="TensorRT engine precision: fp32 | fp16 | int8 | best.",
        ),
        DeclareLaunchArgument(
            "use_sim_time", default_value="false", description="Use simulation (/clock) time."
        ),
    ]
    node = Node(
        package=PACKAGE,
        executable="perception_node",
        name="perception_node",
        namespace=LaunchConfiguration("namespace"),
        output="screen",
        emulate_tty=True,
        parameters=[
            LaunchConfiguration("params_file"),
            {
                "model": LaunchConfiguration("model"),
                "backend": LaunchConfiguration("backend"),
                "precision": LaunchConfiguration("precision"),
                "use_sim_time": ParameterValue(
                    LaunchConfiguration("use_sim_time"), value_type=bool
                ),
            },
        ],
        remappings=[
            ("image", image_topic),
            ("image/compressed", PythonExpression(["'", image_topic, "' + '/compressed'"])),
            ("camera_info", LaunchConfiguration("camera_info_topic")),
        ],
    )
    return LaunchDescription(args + [node])
