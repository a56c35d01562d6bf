"""muon_ad_ros: real-time neural stylization for ROS 2 cameras.

Layout (one rule: nothing below ``muon_ad_ros.nodes`` imports rclpy):

- ``muon_ad_ros.core``: image conversion, the student network, engines, the ``Stylizer`` pipeline.
- ``muon_ad_ros.evaluation``: metrics and offline rosbag evaluation.
- ``muon_ad_ros.nodes``: thin rclpy nodes (message <-> core <-> message).
- ``muon_ad_ros.cli``: the ``muon-ad`` command-line tool.
"""

__version__ = "0.1.0"
