"""ONNX FP16 / INT8 export, parity to FP32 on real photos, the model card and `muon-ad export`."""
import argparse
import json

import numpy as np
import onnx
import pytest
import torch

from muon_ad_ros.core.checkpoint import save_student, sha256_file
from muon_ad_ros.core.engines.onnx_engine import OnnxRuntimeEngine
from muon_ad_ros.core.errors import ModelError
from muon_ad_ros.core.export import export_onnx, read_onnx_metadata
from muon_ad_ros.core.model_store import resolve_model
from muon_ad_ros.core.quantize import (Int8Config, check_tolerance, convert_fp16, first_and_last_convs,
                                       measure_parity, preprocess,
                                       quantize_int8)
from muon_ad_ros.core.student import StudentConfig, StudentNet
from muon_ad_ros.core.stylizer import Stylizer
from muon_ad_training import export as export_mod
from muon_ad_training.export import (SKIMAGE_CALIBRATION, SKIMAGE_PARITY, TOLERANCES, export_bundle,
                                     skimage_images)

SMALL = 128  # longer side of the real photos in these tests


@pytest.fixture(scope="module")
def photos():
    return skimage_images(list(SKIMAGE_PARITY))


@pytest.fixture(scope="module")
def calibration():
    return skimage_images(list(SKIMAGE_CALIBRATION))


def tiny_model(seed=0, masked=False) -> StudentNet:
    torch.manual_seed(seed)
    model = StudentNet(StudentConfig.tiny()).eval()
    if masked:
        model.attention_modules()[0].head_mask[1] = 0.0
    return model


def torch_output(model, rgb, max_side, style=0):
    x = torch.from_numpy(preprocess(rgb, max_side=max_side))
    with torch.no_grad():
        return model(x, model.style_weights_for(style)).numpy()


def test_preprocess_matches_the_stylizer_policy(photos):
    x = preprocess(photos["chelsea"], max_side=SMALL)  # 300x451 -> longer side 128, multiples of 16
    assert x.dtype == np.float32 and x.shape == (1, 3, 80, 128)
    assert 0.0 <= x.min() and x.max() <= 1.0
    assert preprocess(photos["astronaut"], hw=(64, 96)).shape == (1, 3, 64, 96)


def test_fp16_model_takes_float16_and_matches_fp32_and_pytorch(tmp_path, photos):
    model = tiny_model()
    fp32 = export_onnx(model, tmp_path / "m.onnx", sample_hw=(64, 64), metadata={"precision": "fp32"})
    fp16 = convert_fp16(fp32, tmp_path / "m.fp16.onnx")
    proto = onnx.load(str(fp16))
    assert [i.type.tensor_type.elem_type for i in proto.graph.input] == [onnx.TensorProto.FLOAT16] * 2
    meta = read_onnx_metadata(fp16)
    assert meta["precision"] == "fp16" and meta["styles"] == model.config.style_names
    parity = measure_parity(fp32, fp16, photos.values(), max_side=SMALL)
    assert parity.samples == len(photos) * model.config.num_styles
    assert not check_tolerance(parity, TOLERANCES["fp16"]), parity.to_dict()
    # The runtime engine feeds float32 frames and returns float32, converting at the boundary.
    engine = OnnxRuntimeEngine(fp16, model.config.num_styles, precision="fp16")
    x = preprocess(photos["coffee"], max_side=SMALL)
    got = engine.run(x, model.style_weights_for(1).numpy())
    assert got.dtype == np.float32
    ref = torch_output(model, photos["coffee"], SMALL, style=1)
    assert np.abs(got - ref).max() < TOLERANCES["fp16"]["max_abs"]


def test_int8_is_qdq_with_int8_weights_and_stays_within_tolerance(tmp_path, photos, calibration):
    model = tiny_model()
    fp32 = export_onnx(model, tmp_path / "m.onnx", sample_hw=(64, 64))
    int8 = quantize_int8(fp32, tmp_path / "m.int8.onnx", list(calibration.values()),
                         Int8Config(calibration_max_side=SMALL))
    proto = onnx.load(str(int8))
    ops = [n.op_type for n in proto.graph.node]
    assert ops.count("QuantizeLinear") > 0 and ops.count("DequantizeLinear") > ops.count("QuantizeLinear")
    int8_weights = [t for t in proto.graph.initializer
                    if t.data_type == onnx.TensorProto.INT8 and len(t.dims) == 4]
    # every conv weight is stored as int8 except the stem and the output head (kept float on purpose)
    assert len(int8_weights) == ops.count("Conv") - len(first_and_last_convs(proto)) == ops.count("Conv") - 3
    # Sensitive ops stay float: the softmax probabilities and the sigmoid output are never quantized.
    produced_by = {o: n.op_type for n in proto.graph.node for o in n.output}
    q_inputs = [produced_by.get(n.input[0]) for n in proto.graph.node if n.op_type == "QuantizeLinear"]
    assert "Sigmoid" not in q_inputs and "Softmax" not in q_inputs
    assert ops.count("Softmax") == 1 and ops.count("InstanceNormalization") > 0
    assert read_onnx_metadata(int8)["precision"] == "int8"
    parity = measure_parity(fp32, int8, photos.values(), max_side=SMALL)
    assert not check_tolerance(parity, TOLERANCES["int8"]), parity.to_dict()
    assert parity.mean_abs > 0  # it really is quantized
    with pytest.raises(Exception):
        quantize_int8(fp32, tmp_path / "x.onnx", [])


def test_int8_parity_of_the_default_size_student_at_256(tmp_path, photos, calibration):
    torch.manual_seed(0)
    model = StudentNet(StudentConfig()).eval()
    fp32 = export_onnx(model, tmp_path / "m.onnx", sample_hw=(64, 64))
    int8 = quantize_int8(fp32, tmp_path / "m.int8.onnx", list(calibration.values()),
                         Int8Config(calibration_max_side=256))
    parity = measure_parity(fp32, int8, photos.values(), max_side=256, styles=[0, 3])
    assert not check_tolerance(parity, TOLERANCES["int8"]), parity.to_dict()


def test_export_bundle_prunes_writes_every_precision_and_a_truthful_card(tmp_path, photos, calibration):
    model = tiny_model(masked=True)
    parity_imgs = {k: v[:SMALL, :SMALL] for k, v in photos.items()}
    card_path = export_bundle(model, tmp_path, "tiny_v1", calibration_images=calibration,
                              parity_images=parity_imgs, parity_max_side=SMALL, latency_runs=0,
                              card_extra={"training": {"steps": 3},
                                          "data": [{"name": "x", "licence": "CC0"}]})
    card = json.loads(card_path.read_text())
    float_roles = {"onnx_fp32", "onnx_fp16", "onnx_int8"}
    assert set(card["files"]) == {"weights"} | float_roles | {r + "_u8" for r in float_roles}
    assert set(card["io"]) == float_roles | {r + "_u8" for r in float_roles}
    assert "image_rgb8" in card["io"]["onnx_int8_u8"]["inputs"] and "image" in card["io"]["onnx_fp16"]["inputs"]
    for entry in card["files"].values():
        assert sha256_file(tmp_path / entry["path"]) == entry["sha256"]
    assert card["pruning"]["heads_before"] == [2] and card["pruning"]["heads_after"] == [1]
    assert card["pruning"]["macs_after"] < card["pruning"]["macs_before"]
    assert card["student_config"]["attn_heads"] == [1]
    assert card["metrics"]["cost"]["params"] < card["metrics"]["cost"]["params_before_pruning"]
    assert set(card["metrics"]["parity"]) == {"fp32", "fp16", "int8"} and card["metrics"]["tolerances_met"]
    assert card["tolerances"]["int8"]["psnr_min"] == TOLERANCES["int8"]["psnr_min"]
    assert card["training"] == {"steps": 3} and card["data"][0] == {"name": "x", "licence": "CC0"}
    assert {d["use"] for d in card["data"][1:]} == {"int8_calibration", "parity"}
    assert model.attention_modules()[0].num_heads == 2  # the caller's model is untouched
    # The exported FP32 model matches the masked PyTorch model (pruning is exact) within tolerance.
    files = resolve_model(card_path)
    for precision in ("fp32", "fp16", "int8"):
        stylizer = Stylizer.from_model(files, precision=precision, max_side=SMALL)
        out = stylizer.stylize(photos["astronaut"][:SMALL, :SMALL]).image
        assert out.shape == (SMALL, SMALL, 3)
    engine = OnnxRuntimeEngine(files.file_for("onnx_fp32"), 2)
    x = preprocess(photos["coffee"], max_side=SMALL)
    assert np.abs(engine.run(x, np.array([[0.0, 1.0]], np.float32)) -
                  torch_output(model, photos["coffee"], SMALL, style=1)).max() < TOLERANCES["fp32"]["max_abs"]


def test_export_refuses_a_model_that_misses_its_tolerance(tmp_path, photos, calibration, monkeypatch):
    monkeypatch.setitem(export_mod.TOLERANCES, "int8", {"psnr_min": 200.0, "vs": "onnx_fp32"})
    with pytest.raises(ModelError, match="int8: psnr_min"):
        export_bundle(tiny_model(), tmp_path, "bad", calibration_images=calibration,
                      parity_images={"coffee": photos["coffee"]}, parity_max_side=64, latency_runs=0)
    assert not list(tmp_path.glob("*.onnx")) and not (tmp_path / "bad.card.json").exists()


def export_parser():
    from muon_ad_ros import export_cli

    parser = argparse.ArgumentParser(prog="muon-ad")
    export_cli.register(parser.add_subparsers(dest="command"))
    return parser


def test_cli_exports_a_checkpoint(tmp_path, capsys):
    import cv2

    weights = save_student(tiny_model(), tmp_path / "ckpt", extra={"step": 7})
    calib = tmp_path / "calib"
    calib.mkdir()
    for name, rgb in skimage_images(["rocket", "coffee"]).items():
        cv2.imwrite(str(calib / f"{name}.png"), cv2.cvtColor(rgb[:96, :128], cv2.COLOR_RGB2BGR))
    args = export_parser().parse_args(["export", str(weights), "--out", str(tmp_path / "out"), "--id", "cli",
                                       "--precisions", "fp32,int8", "--calibration", str(calib),
                                       "--parity", str(calib / "coffee.png"), "--latency-runs", "0"])
    assert args.func(args) == 0
    card = json.loads((tmp_path / "out" / "cli.card.json").read_text())
    assert set(card["files"]) == {"weights", "onnx_fp32", "onnx_int8", "onnx_fp32_u8", "onnx_int8_u8"}
    assert card["training"] == {"step": 7} and card["source_checkpoint"] == "ckpt.safetensors"
    assert "int8" in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["missing.safetensors"], "checkpoint not found"),
    (["{ckpt}", "--precisions", "fp32,int4"], "precisions"),
    (["{ckpt}", "--precisions", "fp16"], "precisions must include fp32"),
    (["{ckpt}", "--calibration", "/nonexistent/dir"], "calibration image or folder not found"),
    (["{ckpt}", "--id", "../escape"], "invalid model id"),
])
def test_cli_user_errors_are_one_line_and_exit_2(tmp_path, capsys, argv, message):
    weights = save_student(tiny_model(), tmp_path / "ckpt")
    argv = [a.replace("{ckpt}", str(weights)) for a in argv]
    args = export_parser().parse_args(["export", *argv, "--out", str(tmp_path / "o"), "--latency-runs", "0"])
    assert args.func(args) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err and err.startswith("muon-ad export: error:")
