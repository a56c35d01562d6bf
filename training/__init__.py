"""Training pipeline of muon_ad_ros, installed as the package ``muon_ad_training``.

``muon_ad_training.add_style(image, name, out, model="default")`` adds a style to a trained model
(training/add_style.py; the module itself: ``importlib.import_module("muon_ad_training.add_style")``).
"""
from .add_style import add_style  # noqa: F401  (the public API; the name shadows the submodule)
