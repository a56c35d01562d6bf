"""Launch texture_node (the SynthesizeTexture action) with the defaults of config/texture.yaml.

    ros2 launch muon_ad_ros texture.launch.py
    ros2 launch muon_ad_ros texture.launch.py params_file:=/path/to/my.yaml threads:=4

A digital-twin pipeline then sends goals to /synthesize_texture (muon_ad_interfaces/action/
SynthesizeTexture: exemplar image, size, tileable, seed, time cap) and gets the texture back.
"""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.descriptions import ParameterValue
from launch_ros.substitutions import FindPackageShare


def generate_launch_description():
    return LaunchDescription([
        DeclareLaunchArgument("params_file", description="texture_node's parameters",
                              default_value=PathJoinSubstitution([FindPackageShare("muon_ad_ros"), "config",
                                                                  "texture.yaml"])),
        DeclareLaunchArgument("threads", default_value="1", description="torch CPU threads of a synthesis"),
        Node(package="muon_ad_ros", executable="texture_node", name="texture_node", output="screen",
             emulate_tty=True,
             parameters=[LaunchConfiguration("params_file"),
                         {"threads": ParameterValue(LaunchConfiguration("threads"), value_type=int)}]),
    ])
