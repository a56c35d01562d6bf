"""Test configuration: make the ``_*_helpers`` modules beside the tests importable.

pytest runs with ``--import-mode=importlib`` (setup.cfg), which does not put this folder on
sys.path; the helper modules are plain files here, so add it once.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
