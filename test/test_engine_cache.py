"""TensorRT engine cache keys: reuse on match, clear errors on any mismatch (no TensorRT needed)."""
import pytest

from muon_ad_ros.core.engines.engine_cache import EngineCache, EngineKey, ShapeProfile, sidecar_path, verify_engine_file
from muon_ad_ros.core.errors import EngineError


def key(**overrides):
    fields = dict(onnx_sha256="a" * 64, tensorrt_version="10.3.0", compute_capability="8.7",
                  precision="fp16", profile=ShapeProfile())
    fields.update(overrides)
    return EngineKey(**fields)


def test_store_then_lookup_reuses_the_same_file(tmp_path):
    cache = EngineCache(tmp_path)
    assert cache.lookup(key()) is None
    path = cache.store(key(), b"engine-bytes")
    assert cache.lookup(key()) == path and path.read_bytes() == b"engine-bytes"


@pytest.mark.parametrize("change", [dict(onnx_sha256="b" * 64), dict(tensorrt_version="10.4.0"),
                                    dict(compute_capability="9.0"), dict(precision="int8"),
                                    dict(profile=ShapeProfile(opt_hw=(720, 1280)))])
def test_every_key_field_changes_the_cache_entry(tmp_path, change):
    cache = EngineCache(tmp_path)
    cache.store(key(), b"x")
    assert cache.lookup(key(**change)) is None  # a different key is a different engine, built separately
    assert key(**change).digest() != key().digest()


def test_a_named_engine_that_does_not_match_is_an_error_naming_the_field(tmp_path):
    path = EngineCache(tmp_path).store(key(), b"x")
    verify_engine_file(path, key())
    with pytest.raises(EngineError, match="compute_capability: engine has '8.7', need '9.0'"):
        verify_engine_file(path, key(compute_capability="9.0"))
    sidecar_path(path).unlink()
    with pytest.raises(EngineError, match="missing or unreadable key"):
        verify_engine_file(path, key())
    with pytest.raises(EngineError, match="not found"):
        verify_engine_file(tmp_path / "nope.engine", key())


def test_a_tampered_cache_entry_is_not_silently_rebuilt(tmp_path):
    cache = EngineCache(tmp_path)
    path = cache.store(key(), b"x")
    sidecar_path(path).write_text('{"onnx_sha256": "zz"}')
    with pytest.raises(EngineError):
        cache.lookup(key())


def test_shape_profile_validation_and_containment():
    profile = ShapeProfile((240, 320), (480, 640), (1088, 1920))
    assert profile.contains(480, 640) and not profile.contains(2000, 640)
    with pytest.raises(EngineError):
        ShapeProfile((480, 640), (240, 320), (1088, 1920))


def test_an_engine_file_with_flipped_bytes_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("MUON_AD_CACHE_DIR", str(tmp_path / "hash_cache"))
    cache = EngineCache(tmp_path / "engines")
    path = cache.store(key(), b"serialized engine bytes")
    assert cache.lookup(key()) == path
    path.write_bytes(b"serialized engine bytez")          # same size, one byte off, new mtime
    with pytest.raises(EngineError, match="does not match the sha256"):
        cache.lookup(key())
    with pytest.raises(EngineError, match="does not match the sha256"):
        verify_engine_file(path, key())


def test_a_key_file_without_the_engine_hash_is_refused(tmp_path):
    import json

    path = EngineCache(tmp_path).store(key(), b"x")
    record = json.loads(sidecar_path(path).read_text())
    del record["engine_sha256"]
    sidecar_path(path).write_text(json.dumps(record))
    with pytest.raises(EngineError, match="rebuild"):
        verify_engine_file(path, key())
