"""The exception types of the core. Every user error raises one of these, never a bare traceback."""


class MuonAdError(Exception):
    """Base class of every error the package raises on bad input or configuration."""


class ImageFormatError(MuonAdError, ValueError):
    """A frame (raw or compressed) is malformed, too large, or in an unsupported encoding."""


class ConfigError(MuonAdError, ValueError):
    """A parameter, config file or command-line option is invalid."""


class ModelError(MuonAdError):
    """A model file is missing, corrupt, or does not match what was asked of it."""


class EngineError(MuonAdError):
    """An inference engine cannot be created or run (missing backend, wrong engine file...)."""
