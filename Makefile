# Two entry points for a fresh clone (see README): `make demo` and `make test`.
# Both create .venv, install torch 2.13.0 (CPU wheel) *first* - an unpinned torch would pull a
# multi-GB CUDA build - then this package with ROS 2 from the PyPI wheels, training and test extras.
# `make test` also installs the real ROS 2 launch system, ros2 CLI and colcon (for
# test/test_ros2_tools.py) when ../shared/ros2-tools is there; a clone without it skips those tests.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
SHARED ?= $(or $(MUON_AD_SHARED),../shared)
ROS2_TOOLS := $(SHARED)/ros2-tools
COLCON := colcon-core colcon-ros colcon-python-setup-py colcon-bash colcon-package-selection

.PHONY: setup interfaces ros2-tools demo test bench clean

$(STAMP): setup.py package.xml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[ros,train,test]'
	touch $(STAMP)

setup: $(STAMP) interfaces

# muon_ad_interfaces (texture_node's SynthesizeTexture action), generated with the wheels' rosidl
# tooling into the venv (cmake, make and a C compiler; without them it is skipped with a note).
# After ros2-tools: its install.sh stops when the wheels' CMake paths it rewrites were already rewritten.
interfaces: $(STAMP) ros2-tools
	interfaces/build.sh $(VENV)

demo: $(STAMP)
	$(VENV)/bin/muon-ad demo

# launch, launch_ros, ros2cli are not on PyPI: their release sources are in ../shared/ros2-tools.
ros2-tools: $(STAMP)
	@if [ -x $(ROS2_TOOLS)/install.sh ]; then \
		$(ROS2_TOOLS)/install.sh $(VENV) && $(PY) -m pip install --quiet $(COLCON); \
	else echo "no $(ROS2_TOOLS): the ros2 launch / CLI / colcon tests will be skipped"; fi

test: $(STAMP) interfaces ros2-tools
	$(PY) -m pytest

clean:
	rm -rf $(VENV) out build install log
