"""Launch stylize_node with the defaults of config/stylize.yaml, optionally with the image source.

    ros2 launch muon_ad_ros stylize.launch.py input_topic:=/camera/image_raw \
        output_topic:=/camera/stylized/image_raw
    ros2 launch muon_ad_ros stylize.launch.py start_source:=true          # no camera needed
    ros2 launch muon_ad_ros stylize.launch.py params_file:=/path/to/my.yaml model:=my_model

Parameters come from ``params_file`` first, then the ``model`` / ``backend`` arguments on top.
Topics are remapped (the node's relative names ``image_raw`` and ``image_stylized``); the camera info
follows: read beside the input, published beside the output (see docs/ros.md).

Large images: Fast DDS's default UDP transport drops most 640x480 frames between processes, so
FASTDDS_BUILTIN_TRANSPORTS is set to LARGE_DATA for the processes started here (an existing value
in the environment is kept). The camera driver must use the same setting (docs/ros.md).
"""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, SetEnvironmentVariable
from launch.conditions import IfCondition
from launch.substitutions import EnvironmentVariable, LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.descriptions import ParameterValue
from launch_ros.substitutions import FindPackageShare

PACKAGE = "muon_ad_ros"


def generate_launch_description():
    params_file = LaunchConfiguration("params_file")
    input_topic = LaunchConfiguration("input_topic")
    output_topic = LaunchConfiguration("output_topic")

    arguments = [
        DeclareLaunchArgument(
            "params_file",
            default_value=PathJoinSubstitution([FindPackageShare(PACKAGE), "config", "stylize.yaml"]),
            description="parameter file of stylize_node"),
        DeclareLaunchArgument("model", default_value="default",
                              description="model id, model card, .onnx or .safetensors "
                                          "(overrides params_file)"),
        DeclareLaunchArgument("backend", default_value="onnxruntime",
                              description="onnxruntime | torch | tensorrt (overrides params_file)"),
        DeclareLaunchArgument("input_topic", default_value="image_raw",
                              description="camera image topic (its camera_info is read beside it)"),
        DeclareLaunchArgument("output_topic", default_value="image_stylized",
                              description="stylized image topic"),
        DeclareLaunchArgument("start_source", default_value="false",
                              description="also start image_source_node publishing on input_topic"),
        DeclareLaunchArgument("source", default_value="sample",
                              description="source of image_source_node: sample, a video, an image folder, "
                                          "a rosbag"),
        DeclareLaunchArgument("source_rate", default_value="15.0",
                              description="frames per second of the source"),
        DeclareLaunchArgument(
            "fastdds_builtin_transports",
            default_value=EnvironmentVariable("FASTDDS_BUILTIN_TRANSPORTS", default_value="LARGE_DATA"),
            description="Fast DDS transports of the launched processes (LARGE_DATA carries big images)"),
    ]

    transports = SetEnvironmentVariable("FASTDDS_BUILTIN_TRANSPORTS",
                                        LaunchConfiguration("fastdds_builtin_transports"))

    stylize = Node(
        package=PACKAGE,
        executable="stylize_node",
        name="stylize_node",
        output="screen",
        parameters=[params_file, {
            "model": ParameterValue(LaunchConfiguration("model"), value_type=str),
            "backend": ParameterValue(LaunchConfiguration("backend"), value_type=str),
        }],
        remappings=[("image_raw", input_topic), ("image_stylized", output_topic)],
    )

    source = Node(
        package=PACKAGE,
        executable="image_source_node",
        name="image_source_node",
        output="screen",
        condition=IfCondition(LaunchConfiguration("start_source")),
        parameters=[{
            "source": ParameterValue(LaunchConfiguration("source"), value_type=str),
            "rate": ParameterValue(LaunchConfiguration("source_rate"), value_type=float),
        }],
        remappings=[("image_raw", input_topic)],
    )

    return LaunchDescription(arguments + [transports, stylize, source])
