"""Core of muon_ad_ros: plain Python / numpy / torch. Never imports rclpy."""
from muon_ad_ros.core.errors import ConfigError, EngineError, ImageFormatError, ModelError, MuonAdError

__all__ = ["ConfigError", "EngineError", "ImageFormatError", "ModelError", "MuonAdError"]
