"""Launch stylize_node with the defaults of config/stylize.yaml, optionally with the image source.

    ros2 launch muon_ad_ros stylize.launch.py input_topic:=/camera/image_raw \
        output_topic:=/camera/stylized/image_raw
    ros2 launch muon_ad_ros stylize.launch.py start_source:=true          # no camera needed
    ros2 launch muon_ad_ros stylize.launch.py params_file:=/path/to/my.yaml model:=my_model

Parameters come from ``params_file`` first, then the ``model`` / ``backend`` arguments on top.
Topics are remapped (the node's relative names ``image_raw`` and ``image_stylized``); the camera info
follows: read beside the input, published beside the output (see docs/ros.md).

Large images: with Fast DDS's default transports most 640x480 frames are lost between processes,
so the processes started here get FASTDDS_DEFAULT_PROFILES_FILE = config/fastdds_images.xml (the
default shared memory + UDP, sized for images; every ROS tool in a default shell still reaches the
nodes). ``fastdds_builtin_transports:=LARGE_DATA`` opts into Fast DDS's TCP-based set instead (then
every tool needs that setting too). Values already in the environment are kept (docs/ros.md).

stylize_node is required: when it exits (e.g. status 2 on a bad argument) the whole launch ends,
with a non-zero status when the node failed.
"""
from launch import LaunchDescription
from launch.actions import (DeclareLaunchArgument, LogInfo, OpaqueFunction, RegisterEventHandler,
                            SetEnvironmentVariable, Shutdown, UnsetEnvironmentVariable)
from launch.conditions import IfCondition, UnlessCondition
from launch.event_handlers import OnProcessExit
from launch.substitutions import (EnvironmentVariable, EqualsSubstitution, LaunchConfiguration,
                                  PathJoinSubstitution)
from launch_ros.actions import Node
from launch_ros.descriptions import ParameterValue
from launch_ros.substitutions import FindPackageShare

PACKAGE = "muon_ad_ros"


class RequiredNodeFailed(RuntimeError):
    """Raised inside launch so that ``ros2 launch`` ends with a non-zero status (launch returns 1
    when an action raises; it has no way to return the node's own status)."""


def _raise_failed(context, name, code):
    raise RequiredNodeFailed(f"{name} exited with status {code}")


def _end_with(event, context):
    """stylize_node ended: end the launch; a failure (positive status, not during a shutdown
    already under way) also fails the launch."""
    if context.is_shutdown:
        return None
    if event.returncode and event.returncode > 0:
        return [OpaqueFunction(function=_raise_failed, args=[event.action.name, event.returncode])]
    reason = f"{event.action.name} exited with status {event.returncode}"
    return [LogInfo(msg=reason), Shutdown(reason=reason)]


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
            "dds_profile",
            default_value=EnvironmentVariable(
                "FASTDDS_DEFAULT_PROFILES_FILE",
                default_value=PathJoinSubstitution([FindPackageShare(PACKAGE), "config", "fastdds_images.xml"])),
            description="Fast DDS XML profile of the launched processes (default: shared memory + UDP "
                        "sized for camera images, reachable from a default shell)"),
        DeclareLaunchArgument(
            "fastdds_builtin_transports",
            default_value=EnvironmentVariable("FASTDDS_BUILTIN_TRANSPORTS", default_value=""),
            description="opt-in Fast DDS builtin transports (LARGE_DATA, DEFAULT, ...) instead of dds_profile; "
                        "every other process must then use the same"),
    ]

    no_builtin = EqualsSubstitution(LaunchConfiguration("fastdds_builtin_transports"), "")
    transports = [
        SetEnvironmentVariable("FASTDDS_DEFAULT_PROFILES_FILE", LaunchConfiguration("dds_profile"),
                               condition=IfCondition(no_builtin)),
        UnsetEnvironmentVariable("FASTDDS_DEFAULT_PROFILES_FILE", condition=UnlessCondition(no_builtin)),
        SetEnvironmentVariable("FASTDDS_BUILTIN_TRANSPORTS", LaunchConfiguration("fastdds_builtin_transports"),
                               condition=UnlessCondition(no_builtin)),
    ]

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

    required = RegisterEventHandler(OnProcessExit(target_action=stylize, on_exit=_end_with))
    return LaunchDescription(arguments + transports + [stylize, source, required])
