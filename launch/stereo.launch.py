"""Launch stereo_stylize_node with the defaults of config/stereo.yaml (VR: both eyes painted alike).

    ros2 launch muon_ad_ros stereo.launch.py left_input:=/stereo/left/image_rect_color \
        right_input:=/stereo/right/image_rect_color
    ros2 launch muon_ad_ros stereo.launch.py mode:=independent side_by_side:=true
    ros2 launch muon_ad_ros stereo.launch.py disparity_topic:=/stereo/disparity   # stereo_image_proc's

Parameters come from ``params_file`` first, then the arguments below on top. Topics are remapped
from the node's relative names (``left/image_raw``, ...); camera infos follow beside each input.
Large images: as stylize.launch.py, the processes get FASTDDS_DEFAULT_PROFILES_FILE =
config/fastdds_images.xml unless the environment already names a profile (docs/ros.md).
The node is required: when it exits, the launch ends.
"""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, EmitEvent, RegisterEventHandler, SetEnvironmentVariable
from launch.event_handlers import OnProcessExit
from launch.events import Shutdown
from launch.substitutions import EnvironmentVariable, LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.descriptions import ParameterValue
from launch_ros.substitutions import FindPackageShare

PACKAGE = "muon_ad_ros"


def generate_launch_description():
    def arg(name, default, description):
        return DeclareLaunchArgument(name, default_value=default, description=description)

    arguments = [
        arg("params_file", PathJoinSubstitution([FindPackageShare(PACKAGE), "config", "stereo.yaml"]),
            "parameter file of stereo_stylize_node"),
        arg("model", "default", "model id, model card, .onnx or .safetensors (overrides params_file)"),
        arg("mode", "consistent", "consistent | independent (overrides params_file)"),
        arg("side_by_side", "false", "also publish side_by_side/image_stylized (overrides params_file)"),
        arg("disparity_topic", "", "DisparityImage of the left view; '' = StereoSGBM in the node"),
        arg("left_input", "left/image_raw", "left camera image topic"),
        arg("right_input", "right/image_raw", "right camera image topic"),
        arg("left_output", "left/image_stylized", "stylized left image topic"),
        arg("right_output", "right/image_stylized", "stylized right image topic"),
        arg("dds_profile", EnvironmentVariable(
            "FASTDDS_DEFAULT_PROFILES_FILE",
            default_value=PathJoinSubstitution([FindPackageShare(PACKAGE), "config", "fastdds_images.xml"])),
            "Fast DDS XML profile of the launched process (shared memory + UDP sized for images)"),
    ]
    profile = SetEnvironmentVariable("FASTDDS_DEFAULT_PROFILES_FILE", LaunchConfiguration("dds_profile"))
    stereo = Node(
        package=PACKAGE,
        executable="stereo_stylize_node",
        name="stereo_stylize_node",
        output="screen",
        parameters=[LaunchConfiguration("params_file"), {
            "model": ParameterValue(LaunchConfiguration("model"), value_type=str),
            "mode": ParameterValue(LaunchConfiguration("mode"), value_type=str),
            "publish_side_by_side": ParameterValue(LaunchConfiguration("side_by_side"), value_type=bool),
            "disparity_topic": ParameterValue(LaunchConfiguration("disparity_topic"), value_type=str),
        }],
        remappings=[("left/image_raw", LaunchConfiguration("left_input")),
                    ("right/image_raw", LaunchConfiguration("right_input")),
                    ("left/image_stylized", LaunchConfiguration("left_output")),
                    ("right/image_stylized", LaunchConfiguration("right_output"))],
    )
    required = RegisterEventHandler(OnProcessExit(target_action=stereo, on_exit=[EmitEvent(event=Shutdown(
        reason="stereo_stylize_node exited"))]))
    return LaunchDescription(arguments + [profile, stereo, required])
