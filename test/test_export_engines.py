"""ONNX export parity, the engines behind one interface, checkpoints and model lookup."""
import json

import numpy as np
import pytest
import torch

from _core_helpers import real_photos, seeded_student, tiny_bundle
from muon_ad_ros.core.checkpoint import load_student, save_student
from muon_ad_ros.core.engines import create_engine
from muon_ad_ros.core.errors import ConfigError, EngineError, ModelError
from muon_ad_ros.core.export import export_onnx, parity_check, read_onnx_metadata
from muon_ad_ros.core.model_store import resolve_model
from muon_ad_ros.core.student import StudentConfig


def test_default_size_student_onnx_matches_pytorch_on_real_photos(tmp_path):
    model = seeded_student(StudentConfig(), seed=1)
    path = export_onnx(model, tmp_path / "s.onnx")
    for hw in [(96, 128), (160, 112)]:  # dynamic H/W: sizes other than the export sample
        result = parity_check(model, path, real_photos(hw), style=2)
        assert result["max_abs"] < 1e-4, result
    meta = read_onnx_metadata(path)
    assert meta["styles"] == model.config.style_names
    assert meta["student_config"] == model.config.to_dict()


def test_onnx_opset_and_dynamic_axes(tmp_path):
    import onnx

    path = export_onnx(seeded_student(), tmp_path / "s.onnx")
    proto = onnx.load(str(path))
    assert max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")) >= 17
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    assert dims[2].dim_param and dims[3].dim_param


def test_torch_and_onnxruntime_engines_agree(tmp_path):
    _, card = tiny_bundle(tmp_path)
    files = resolve_model(card)
    ort_engine = create_engine(files, "onnxruntime")
    torch_engine = create_engine(files, "torch")
    x = np.stack([p.transpose(2, 0, 1) for p in real_photos((64, 96))[:2]]).astype(np.float32) / 255
    w = np.eye(3, dtype=np.float32)[[0, 2]]
    a, b = ort_engine.run(x, w), torch_engine.run(x, w)
    assert a.shape == x.shape and np.abs(a - b).max() < 1e-4
    assert ort_engine.output_spec()[0].name == "stylized"
    assert [s.name for s in ort_engine.input_spec()] == ["image", "style_weights"]


def test_engine_rejects_bad_shapes(tmp_path):
    _, card = tiny_bundle(tmp_path)
    engine = create_engine(resolve_model(card), "onnxruntime")
    with pytest.raises(EngineError, match="multiples of 16"):
        engine.run(np.zeros((1, 3, 30, 32), np.float32), np.array([1, 0, 0], np.float32))
    with pytest.raises(EngineError, match=r"\[B,3,H,W\]"):
        engine.run(np.zeros((1, 4, 32, 32), np.float32), np.array([1, 0, 0], np.float32))
    with pytest.raises(EngineError, match="style_weights"):
        engine.run(np.zeros((1, 3, 32, 32), np.float32), np.array([1, 0], np.float32))


def test_unknown_backend_precision_and_missing_files(tmp_path):
    _, card = tiny_bundle(tmp_path)
    files = resolve_model(card)
    with pytest.raises(ConfigError, match="backend"):
        create_engine(files, "openvino")
    with pytest.raises(ConfigError, match="precision"):
        create_engine(files, "onnxruntime", precision="fp8")
    with pytest.raises(ModelError, match="no onnx_int8"):
        create_engine(files, "onnxruntime", precision="int8")
    with pytest.raises(EngineError, match="not available"):
        create_engine(files, "onnxruntime", device="tensorrt")


def test_corrupt_and_foreign_model_files_raise_model_error(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"definitely not protobuf" * 10)
    with pytest.raises(ModelError):
        resolve_model(bad)
    with pytest.raises(ModelError, match="not found"):
        resolve_model(tmp_path / "missing.onnx")
    with pytest.raises(ModelError, match="unknown model"):
        resolve_model("no_such_model_id")
    broken_card = tmp_path / "x.card.json"
    broken_card.write_text("{ not json")
    with pytest.raises(ModelError, match="unreadable"):
        resolve_model(broken_card)
    card_missing_file = tmp_path / "y.card.json"
    card_missing_file.write_text(json.dumps({"id": "y", "styles": ["a"], "files": {"onnx_fp32": "gone.onnx"}}))
    with pytest.raises(ModelError, match="missing"):
        create_engine(resolve_model(card_missing_file), "onnxruntime")
    weights = tmp_path / "w.safetensors"
    weights.write_bytes(b"\x00" * 64)
    with pytest.raises(ModelError):
        load_student(weights)


def test_checkpoint_round_trip_keeps_config_and_weights(tmp_path):
    config = StudentConfig.tiny(num_styles=2)
    config.attn_heads = [3]
    model = seeded_student(config)
    model.prune_heads([[0, 2]])
    path = save_student(model, tmp_path / "ckpt")
    loaded = load_student(path)
    assert loaded.config == model.config and loaded.config.attn_heads == [2]
    x = torch.rand(1, 3, 32, 48)
    w = model.style_weights_for(1)
    assert torch.equal(loaded(x, w), model(x, w))
    (tmp_path / "ckpt.json").unlink()  # the safetensors metadata alone still rebuilds it
    assert load_student(path).config == model.config


def test_onnx_file_and_checkpoint_resolve_without_a_card(tmp_path):
    model, card = tiny_bundle(tmp_path, model_id="m")
    onnx_only = resolve_model(tmp_path / "m.onnx")
    assert onnx_only.styles == model.config.style_names and "onnx_fp32" in onnx_only.files
    ckpt_only = resolve_model(tmp_path / "m.safetensors")
    assert ckpt_only.styles == model.config.style_names and "weights" in ckpt_only.files


def test_shipped_default_model_matches_its_card():
    from muon_ad_ros.core.checkpoint import sha256_file

    files = resolve_model("default")
    for role, entry in files.card["files"].items():
        assert sha256_file(files.files[role]) == entry["sha256"], role
    engine = create_engine(files, "onnxruntime")
    assert engine.num_styles == len(files.styles)
