"""TensorRT engines on a real NVIDIA GPU: FP16 / INT8 parity with ONNX Runtime and cache reuse."""
import importlib.util

import numpy as np
import pytest

from _core_helpers import real_photos, tiny_bundle

torch = pytest.importorskip("torch")
if importlib.util.find_spec("tensorrt") is None:
    pytest.skip("TensorRT is not installed (it needs an NVIDIA GPU); the CPU CI covers ONNX Runtime",
                allow_module_level=True)
if not torch.cuda.is_available():
    pytest.skip("no CUDA GPU on this machine; TensorRT engines cannot be built or run", allow_module_level=True)

from muon_ad_ros.core.engines import create_engine  # noqa: E402
from muon_ad_ros.core.engines.engine_cache import ShapeProfile  # noqa: E402
from muon_ad_ros.core.model_store import resolve_model  # noqa: E402

PROFILE = ShapeProfile((64, 64), (96, 128), (256, 256))


def test_fp16_engine_matches_onnxruntime_and_is_cached(tmp_path):
    _, card = tiny_bundle(tmp_path)
    files = resolve_model(card)
    ref = create_engine(files, "onnxruntime")
    x = np.stack([p.transpose(2, 0, 1) for p in real_photos((96, 128))[:1]]).astype(np.float32) / 255
    w = np.eye(3, dtype=np.float32)[[1]]
    trt_engine = create_engine(files, "tensorrt", precision="fp16", cache_dir=tmp_path / "cache", profile=PROFILE)
    assert np.abs(trt_engine.run(x, w) - ref.run(x, w)).max() < 2e-2
    again = create_engine(files, "tensorrt", precision="fp16", cache_dir=tmp_path / "cache", profile=PROFILE,
                          build_if_missing=False)
    assert again.engine_path == trt_engine.engine_path
