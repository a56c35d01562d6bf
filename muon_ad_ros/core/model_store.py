"""Model cards and model lookup: turn ``"default"``, a card, an ONNX file or a checkpoint into files.

A shipped model is a *card* ``models/<id>.card.json`` naming its files relative to itself:

    {"id": "...", "styles": [...], "student_config": {...}, "untrained": false,
     "files": {"onnx_fp32": {"path": "x.onnx", "sha256": "..."},
               "onnx_int8": {...}, "weights": {"path": "x.safetensors", ...}},
     "training": {...}, "data": [...], "metrics": {...}, "tolerances": {...}}

``models/default.txt`` holds the id of the default model, so the default changes with one line.

A card's file paths must stay inside the card's folder (no absolute path, no ``..`` out of it), and
every file is checked against the card's sha256 (and size) before an engine opens it
(core/integrity.py: cached by size + mtime, so a start-up with unchanged files hashes nothing).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from muon_ad_ros.core.errors import ModelError
from muon_ad_ros.core.integrity import file_matches

CARD_SUFFIX = ".card.json"
PACKAGE_NAME = "muon_ad_ros"


def models_dir() -> Path:
    """Where the shipped models are: the source tree, else the installed share/ directory."""
    env = os.environ.get("MUON_AD_MODELS_DIR")
    if env:
        return Path(env)
    source_tree = Path(__file__).resolve().parents[2] / "models"
    if source_tree.is_dir():
        return source_tree
    try:  # installed by colcon / pip: share/muon_ad_ros/models
        from ament_index_python.packages import get_package_share_directory

        return Path(get_package_share_directory(PACKAGE_NAME)) / "models"
    except Exception:  # ament_index absent or package not indexed
        import sys

        return Path(sys.prefix) / "share" / PACKAGE_NAME / "models"


@dataclass
class ModelFiles:
    """Everything known about one model: its card (possibly synthesised) and resolved file paths."""

    card: dict
    card_path: Optional[Path] = None
    files: dict[str, Path] = field(default_factory=dict)  # role -> path (onnx_fp32, onnx_int8, weights...)
    expected: dict[str, dict] = field(default_factory=dict)  # role -> {"sha256": ..., "bytes": ...} from the card

    @property
    def id(self) -> str:
        return str(self.card.get("id", "unknown"))

    @property
    def styles(self) -> list[str]:
        return list(self.card.get("styles", []))

    def file_for(self, role: str) -> Path:
        if role not in self.files:
            raise ModelError(f"model {self.id!r} has no {role} file (has: {sorted(self.files)})")
        path = self.files[role]
        if not path.is_file():
            raise ModelError(f"model {self.id!r}: {role} file missing: {path}")
        self._verify(role, path)
        return path

    def _verify(self, role: str, path: Path) -> None:
        """ModelError unless the file has the size and sha256 its card records."""
        want = self.expected.get(role, {})
        size, sha = want.get("bytes"), want.get("sha256")
        if size is not None and path.stat().st_size != size:
            raise ModelError(f"model {self.id!r}: {role} file {path.name} has {path.stat().st_size} bytes, its card "
                             f"says {size} (truncated or replaced); reinstall the model")
        if sha is not None and not file_matches(path, sha):
            raise ModelError(f"model {self.id!r}: {role} file {path.name} does not match the sha256 of its card "
                             "(corrupt or modified); reinstall or re-export the model")


def load_card(card_path: Path) -> ModelFiles:
    """Read and check a card; any malformed field is a one-line ModelError naming it."""
    try:
        card = json.loads(card_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(f"{card_path}: unreadable model card ({str(exc).splitlines()[0]})") from None
    if not isinstance(card, dict) or "files" not in card or "styles" not in card:
        raise ModelError(f"{card_path}: a model card needs 'styles' and 'files'")
    styles = card["styles"]
    if (not isinstance(styles, list) or not styles or not all(isinstance(n, str) and n for n in styles)
            or len(set(styles)) != len(styles)):
        raise ModelError(f"{card_path}: 'styles' must be a list of distinct, non-empty names")
    if not isinstance(card["files"], dict):
        raise ModelError(f"{card_path}: 'files' must map a role to {{\"path\": ..., \"sha256\": ...}}")
    files, expected = {}, {}
    for role, entry in card["files"].items():
        rel = entry.get("path") if isinstance(entry, dict) else entry
        if not isinstance(rel, str) or not rel:
            raise ModelError(f"{card_path}: files.{role} needs a 'path' (a file name next to the card)")
        files[role] = _inside(card_path, role, rel)
        if isinstance(entry, dict):
            expected[role] = {k: entry[k] for k in ("sha256", "bytes") if entry.get(k) is not None}
            sha, size = expected[role].get("sha256"), expected[role].get("bytes")
            if sha is not None and not (isinstance(sha, str) and len(sha) == 64):
                raise ModelError(f"{card_path}: files.{role}.sha256 must be 64 hex digits, got {sha!r:.80}")
            if size is not None and (type(size) is not int or size < 0):
                raise ModelError(f"{card_path}: files.{role}.bytes must be a byte count, got {size!r:.80}")
    return ModelFiles(card=card, card_path=card_path, files=files, expected=expected)


def _inside(card_path: Path, role: str, rel: str) -> Path:
    """The file a card names, which must lie in the card's folder: a card cannot point a node at
    /etc/... or ../../somewhere (a copied or downloaded card would load files it does not ship)."""
    pure = Path(rel)
    if pure.is_absolute() or rel.startswith(("/", "\\")) or ".." in pure.parts:
        raise ModelError(f"{card_path}: {role} path {rel!r} must be relative to the card's folder, "
                         "without '..'")
    # Checked on the text, not the resolved path: an install by symlinks (colcon --symlink-install)
    # links each file to the source tree, and that must still load.
    return (card_path.parent / pure).resolve()


def default_model_id(directory: Optional[Path] = None) -> str:
    directory = directory or models_dir()
    marker = directory / "default.txt"
    try:
        return marker.read_text().strip()
    except OSError:
        raise ModelError(f"no default model: {marker} is missing") from None


def resolve_model(model: str | os.PathLike = "default") -> ModelFiles:
    """Resolve a model id ("default", a shipped id), a card, an ONNX file or a .safetensors checkpoint."""
    text = str(model)
    path = Path(text).expanduser()
    if text == "default" or (not path.exists() and os.sep not in text and "." not in path.name):
        directory = models_dir()
        model_id = default_model_id(directory) if text == "default" else text
        card = directory / f"{model_id}{CARD_SUFFIX}"
        if not card.is_file():
            shipped = sorted(p.name[: -len(CARD_SUFFIX)] for p in directory.glob(f"*{CARD_SUFFIX}"))
            raise ModelError(f"unknown model {model_id!r}; shipped models: {shipped or 'none'}")
        return load_card(card)
    if not path.exists():
        raise ModelError(f"model file not found: {path}")
    if path.name.endswith(CARD_SUFFIX):
        return load_card(path)
    if path.suffix == ".onnx":
        return _card_from_onnx(path)
    if path.suffix == ".safetensors":
        return _card_from_checkpoint(path)
    raise ModelError(f"{path}: not a model (expected .card.json, .onnx or .safetensors)")


def _card_from_onnx(path: Path) -> ModelFiles:
    from muon_ad_ros.core.onnx_contract import read_onnx_metadata

    meta = read_onnx_metadata(path)
    if "styles" not in meta:
        raise ModelError(f"{path}: ONNX model without muon_ad metadata (not exported by muon_ad_ros)")
    card = {"id": meta.get("id", path.stem), "styles": meta["styles"],
            "student_config": meta.get("student_config", {}), "files": {}}
    role = "onnx_int8" if meta.get("precision") == "int8" else "onnx_fp32"
    return ModelFiles(card=card, files={role: path.resolve()})


def _card_from_checkpoint(path: Path) -> ModelFiles:
    from muon_ad_ros.core.checkpoint import read_student_config

    config = read_student_config(path)
    card = {"id": path.stem, "styles": config.style_names, "student_config": config.to_dict(), "files": {}}
    return ModelFiles(card=card, files={"weights": path.resolve()})
