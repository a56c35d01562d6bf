# Two entry points for a fresh clone (see README): `make demo` and `make test`.
# Both create .venv, install torch 2.13.0 (CPU wheel) *first* - an unpinned torch would pull a
# multi-GB CUDA build - then this package with ROS 2 from the PyPI wheels, training and test extras.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup demo test bench clean

$(STAMP): setup.py package.xml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[ros,train,test]'
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/muon-ad demo

test: $(STAMP)
	$(PY) -m pytest

clean:
	rm -rf $(VENV) out build install log
