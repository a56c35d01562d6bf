"""TensorRT engine cache: a built engine is reused only when everything that shaped it matches.

A serialized TensorRT engine is valid for one ONNX graph, one TensorRT version, one GPU
architecture, one precision and one optimisation profile. The cache key holds all five; each
engine file has a JSON sidecar with the key, so a mismatch is reported field by field instead of
failing deep inside ``deserialize_cuda_engine`` (or, worse, running a stale engine). The sidecar
also holds the engine file's own sha256, checked before the engine is used (core/integrity.py,
cached by size + mtime): a corrupt or swapped engine file is an error, not a silent wrong output. Nothing here
imports TensorRT: the logic is plain Python and tested on CPU.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional

from muon_ad_ros.core.atomic_io import atomic_write_bytes, atomic_write_json
from muon_ad_ros.core.errors import EngineError
from muon_ad_ros.core.integrity import file_matches, sha256_file


@dataclass(frozen=True)
class ShapeProfile:
    """TensorRT optimisation profile for the image input: min / opt / max (height, width)."""

    min_hw: tuple[int, int] = (240, 320)
    opt_hw: tuple[int, int] = (480, 640)
    max_hw: tuple[int, int] = (1088, 1920)

    def __post_init__(self):
        for lo, mid, hi in zip(self.min_hw, self.opt_hw, self.max_hw):
            if not 0 < lo <= mid <= hi:
                raise EngineError(f"shape profile must satisfy 0 < min <= opt <= max: {self}")

    def contains(self, h: int, w: int) -> bool:
        return self.min_hw[0] <= h <= self.max_hw[0] and self.min_hw[1] <= w <= self.max_hw[1]


@dataclass(frozen=True)
class EngineKey:
    onnx_sha256: str
    tensorrt_version: str
    compute_capability: str  # e.g. "8.7" (Jetson Orin), "9.0" (H100)
    precision: str
    profile: ShapeProfile

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()

    def to_dict(self) -> dict:
        d = asdict(self)
        d["profile"] = {k: list(v) for k, v in asdict(self.profile).items()}
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "EngineKey":
        p = d["profile"]
        profile = ShapeProfile(tuple(p["min_hw"]), tuple(p["opt_hw"]), tuple(p["max_hw"]))
        return cls(d["onnx_sha256"], d["tensorrt_version"], d["compute_capability"], d["precision"], profile)

    @classmethod
    def for_onnx(cls, onnx_path: str | os.PathLike, tensorrt_version: str, compute_capability: str,
                 precision: str, profile: ShapeProfile) -> "EngineKey":
        return cls(sha256_file(onnx_path), tensorrt_version, compute_capability, precision, profile)


def sidecar_path(engine_path: Path) -> Path:
    return engine_path.with_suffix(engine_path.suffix + ".json")


def verify_engine_file(engine_path: str | os.PathLike, expected: EngineKey) -> None:
    """Raise EngineError unless ``engine_path`` was built for exactly ``expected``."""
    engine_path = Path(engine_path)
    if not engine_path.is_file():
        raise EngineError(f"TensorRT engine not found: {engine_path}")
    side = sidecar_path(engine_path)
    try:
        record = json.loads(side.read_text())
        found = EngineKey.from_dict(record)
        engine_sha = str(record["engine_sha256"])
    except (OSError, json.JSONDecodeError, KeyError, TypeError, ValueError, EngineError) as exc:
        raise EngineError(f"{engine_path}: missing or unreadable key file {side.name} ({exc}); "
                          "rebuild it with `muon-ad build-engine`") from None
    if found != expected:
        want, have = expected.to_dict(), found.to_dict()
        diffs = [f"{k}: engine has {have[k]!r}, need {want[k]!r}" for k in want if want[k] != have[k]]
        raise EngineError(f"{engine_path} does not match this model/GPU/precision ({'; '.join(diffs)}); "
                          "rebuild it with `muon-ad build-engine`")
    if not file_matches(engine_path, engine_sha):
        raise EngineError(f"{engine_path} does not match the sha256 in {side.name} (corrupt or replaced); "
                          "delete it and rebuild it with `muon-ad build-engine`")


class EngineCache:
    """A directory of ``<name>-<precision>-<digest16>.engine`` files with key sidecars."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root).expanduser()

    def path_for(self, key: EngineKey, name: str = "student") -> Path:
        return self.root / f"{name}-{key.precision}-{key.digest()[:16]}.engine"

    def lookup(self, key: EngineKey, name: str = "student") -> Optional[Path]:
        """The cached engine for ``key``, verified, or None when none was built yet."""
        path = self.path_for(key, name)
        if not path.exists():
            return None
        verify_engine_file(path, key)  # a tampered or half-written entry is an error, not a rebuild
        return path

    def store(self, key: EngineKey, serialized: bytes, name: str = "student") -> Path:
        self.root.mkdir(parents=True, exist_ok=True)
        path = self.path_for(key, name)
        # Key first: a crash in between leaves a key without an engine, which reads as "not built".
        serialized = bytes(serialized)
        record = {**key.to_dict(), "engine_sha256": hashlib.sha256(serialized).hexdigest()}
        atomic_write_json(sidecar_path(path), record)
        atomic_write_bytes(path, serialized)
        return path


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "muon_ad_ros" / "tensorrt"
