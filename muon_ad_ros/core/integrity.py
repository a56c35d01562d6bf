"""File integrity: the sha256 a model card (or an engine's key file) records, checked at load.

A model file with flipped bytes loads silently and changes the output, so every file a card names
is hashed and compared before an engine opens it. Hashing the shipped model's files costs about a
second on a small CPU, so a file that matched once is remembered by (size, mtime_ns) in a small
JSON cache under the user's cache directory (``$MUON_AD_CACHE_DIR``, else
``$XDG_CACHE_HOME/muon_ad_ros``, else ``~/.cache/muon_ad_ros``): a file that is rewritten, copied,
truncated or replaced gets a new mtime and is hashed again. (The cache guards against accidents
and stale files; someone who can restore a file's mtime can also rewrite the card.)
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

CACHE_FILE = "verified_files.json"
MAX_ENTRIES = 256


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def cache_dir() -> Path:
    env = os.environ.get("MUON_AD_CACHE_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "muon_ad_ros"


def _read_cache(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _remember(path: Path, key: str, entry: list) -> None:
    """Best effort: a read-only home or a concurrent writer only costs a hash next time."""
    cache = _read_cache(path)
    cache.pop(key, None)
    cache[key] = entry
    while len(cache) > MAX_ENTRIES:
        cache.pop(next(iter(cache)))
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(cache))
        os.replace(tmp, path)
    except OSError:
        try:
            tmp.unlink()
        except OSError:
            pass


def file_matches(path: str | os.PathLike, expected_sha256: str) -> bool:
    """True when the file's sha256 is ``expected_sha256`` (hashed, or remembered from an earlier
    match of the same size and mtime)."""
    path = Path(path)
    st = path.stat()
    key = str(path.resolve())
    expected = str(expected_sha256).lower()
    entry = [st.st_size, st.st_mtime_ns, expected]
    store = cache_dir() / CACHE_FILE
    if _read_cache(store).get(key) == entry:
        return True
    if sha256_file(path) != expected:
        return False
    _remember(store, key, entry)
    return True
