"""muon-ad add-style: a new style row trained into a copy of a model; the old styles stay bit-identical.

One short add-style run on a tiny seeded student (module fixture, a few steps) serves the bundle
tests; the bad-input tests fail before any training starts.
"""
from __future__ import annotations

import importlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from _training_helpers import SMOKE, need_teacher

BASE_STYLES = ["style0", "style1"]


def _write_png(path: Path, rgb: np.ndarray) -> Path:
    import cv2

    cv2.imwrite(str(path), cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGR))
    return path


@pytest.fixture(scope="module")
def base_bundle(tmp_path_factory):
    """A tiny seeded student whose two styles differ, exported FP32/FP16/INT8 with a card that holds
    the smoke recipe as its training config (what add-style reads the loss weights from)."""
    need_teacher()
    from muon_ad_ros.core.student import StudentConfig, StudentNet
    from muon_ad_training.export import export_bundle
    from muon_ad_training.train_config import read_yaml

    torch.manual_seed(0)
    model = StudentNet(StudentConfig.tiny(2))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "style_" in name:
                p.add_(0.3 * torch.randn_like(p))
    out = tmp_path_factory.mktemp("base")
    card = export_bundle(model, out, "tiny", latency_runs=0,
                         card_extra={"training": {"config": read_yaml(SMOKE)}})
    return card


@pytest.fixture(scope="module")
def style_image(tmp_path_factory):
    import skimage.data

    brick = skimage.data.brick()  # grey 512x512
    rgb = np.stack([brick, (brick * 0.6).astype(np.uint8), (brick * 0.3).astype(np.uint8)], axis=-1)
    return _write_png(tmp_path_factory.mktemp("style") / "brick.png", rgb)


@pytest.fixture(scope="module")
def added(base_bundle, style_image, tmp_path_factory):
    from muon_ad_training import add_style
    from muon_ad_training.add_style import AddStyleConfig

    out = tmp_path_factory.mktemp("added") / "bundle"
    card = add_style(style_image, "brick", out, model=str(base_bundle),
                     config=AddStyleConfig(max_steps=4, progress=False), provenance="skimage brick (CC0)")
    return card


def _outputs(path: Path, num_styles: int, style: int, image: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    dtype = np.float16 if sess.get_inputs()[0].type == "tensor(float16)" else np.float32
    w = np.zeros((1, num_styles), dtype)
    w[0, style] = 1.0
    return sess.run(["stylized"], {"image": image.astype(dtype), "style_weights": w})[0]


def _outputs_u8(path: Path, num_styles: int, style: int, image_rgb8: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    w = np.zeros((1, num_styles), np.float32)
    w[0, style] = 1.0
    return sess.run(None, {sess.get_inputs()[0].name: image_rgb8, "style_weights": w})[0]


def test_old_styles_are_bit_identical_in_every_precision(base_bundle, added):
    import skimage.data

    from muon_ad_ros.core.model_store import load_card
    from muon_ad_ros.core.quantize import preprocess

    base, new = load_card(base_bundle), load_card(added)
    assert new.styles == BASE_STYLES + ["brick"]
    x = preprocess(skimage.data.astronaut(), max_side=128)
    for role in ("onnx_fp32", "onnx_fp16", "onnx_int8"):
        for s in range(len(BASE_STYLES)):
            u8 = role + "_u8"
            if u8 in base.files:  # the uint8-I/O wrappers too
                xb = np.ascontiguousarray((x[0].transpose(1, 2, 0) * 255).astype(np.uint8))[None]
                assert np.array_equal(_outputs_u8(base.file_for(u8), 2, s, xb), _outputs_u8(new.file_for(u8), 3, s, xb))
            a = _outputs(base.file_for(role), 2, s, x)
            b = _outputs(new.file_for(role), 3, s, x)
            assert np.array_equal(a, b), f"{role} style {s} changed"
        fresh = _outputs(new.file_for(role), 3, 2, x)
        for s in range(len(BASE_STYLES)):  # the new style is a style of its own
            assert np.abs(fresh.astype(np.float32) - _outputs(new.file_for(role), 3, s, x)).mean() > 1e-3


def test_only_the_new_rows_differ_from_the_base(base_bundle, added):
    from muon_ad_ros.core.checkpoint import load_student
    from muon_ad_ros.core.model_store import load_card
    from muon_ad_training.style_tables import row_init, table_keys

    base = load_student(load_card(base_bundle).file_for("weights"))
    new = load_student(load_card(added).file_for("weights"))
    b, n = base.state_dict(), new.state_dict()
    tables = set(table_keys(base))
    assert tables and set(b) == set(n)
    for key in b:
        if key in tables:
            assert torch.equal(n[key][:2], b[key]) and n[key].shape[0] == 3
        else:
            assert torch.equal(n[key], b[key]), key
    # the new rows trained away from every starting point add-style could have copied
    starts = [row_init(base, s) for s in (0, 1, "mean")]
    assert all(any(not torch.equal(n[k][2], start[k]) for k in tables) for start in starts)
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():  # PyTorch too: one-hot over one more style adds exact zeros
        assert torch.equal(base(x, base.style_weights_for(1)), new(x, new.style_weights_for(1)))


def test_card_records_the_style_image_and_the_base(base_bundle, style_image, added):
    from muon_ad_ros.core.checkpoint import sha256_file
    from muon_ad_ros.core.model_store import load_card

    card = json.loads(added.read_text())
    entry = card["added_styles"][-1]
    assert entry["name"] == "brick" and entry["index"] == 2
    assert entry["reference"]["sha256"] == sha256_file(style_image)
    assert entry["reference"]["provenance"] == "skimage brick (CC0)"
    assert entry["base_model"]["id"] == "tiny" == card["base_model"]
    assert entry["base_model"]["weights_sha256"] == sha256_file(load_card(base_bundle).file_for("weights"))
    assert entry["training"]["steps"] == 4 and entry["training"]["loss_weights"]["ad"] > 0
    assert sorted(card["precisions"]) == ["fp16", "fp32", "int8"]
    assert set(card["files"]) == set(load_card(base_bundle).files)  # every file the base has (uint8 I/O too)
    assert set(card.get("io", {})) == set(json.loads(base_bundle.read_text()).get("io", {}))
    for role, f in card["files"].items():
        assert sha256_file(added.parent / f["path"]) == f["sha256"], role
    assert not [p for p in added.parent.parent.iterdir() if p.name.startswith(".")]  # no temporary left


def test_added_style_is_usable_by_name_and_in_mixtures(added):
    import skimage.data

    from muon_ad_ros.core.stylizer import Stylizer

    stylizer = Stylizer.from_model(str(added), max_side=64)
    photo = skimage.data.chelsea()
    only_new = stylizer.stylize(photo, style="brick").image
    only_old = stylizer.stylize(photo, style="style0").image
    mixed = stylizer.stylize(photo, style="style0:0.5,brick:0.5").image
    assert not np.array_equal(mixed, only_new) and not np.array_equal(mixed, only_old)
    assert np.allclose(stylizer.style_weights("style0:0.5,brick:0.5"), [0.5, 0, 0.5])


def test_cli_add_style_writes_a_bundle_the_cli_can_stylize_with(base_bundle, style_image, tmp_path, monkeypatch):
    from muon_ad_ros import cli

    module = importlib.import_module("muon_ad_training.add_style")
    real = module.AddStyleConfig
    monkeypatch.setattr(module, "AddStyleConfig", lambda **kw: real(**kw, max_steps=1, progress=False))
    out = tmp_path / "cli_bundle"
    assert cli.main(["add-style", str(style_image), "--name", "bricks", "--out", str(out),
                     "--model", str(base_bundle), "--minutes", "1"]) == 0
    card = next(out.glob("*.card.json"))
    assert cli.main(["stylize", str(style_image), str(tmp_path / "o.png"), "--model", str(card),
                     "--style", "bricks"]) == 0
    assert (tmp_path / "o.png").is_file()


# ----------------------------------------------------------------------------- bad inputs


def _bad(tmp_path, base_bundle, image, name="fresh", out=None):
    from muon_ad_ros.core.errors import MuonAdError
    from muon_ad_training.add_style import add_style

    out = out or tmp_path / "out"
    before = sorted(out.iterdir()) if out.is_dir() else None
    with pytest.raises(MuonAdError) as err:
        add_style(image, name, out, model=str(base_bundle))
    message = str(err.value)
    assert "\n" not in message
    assert (sorted(out.iterdir()) == before) if before is not None else not out.exists()
    if out.parent.is_dir():
        assert not [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.partial")]
    return message


def test_unreadable_image_is_one_line_error(tmp_path, base_bundle):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not a png at all")
    assert "cannot read style image" in _bad(tmp_path, base_bundle, bad)
    assert "not found" in _bad(tmp_path, base_bundle, tmp_path / "missing.png")


def test_tiny_image_is_one_line_error(tmp_path, base_bundle):
    small = _write_png(tmp_path / "small.png", np.full((40, 300, 3), 128, np.uint8))
    assert "at least 64 px" in _bad(tmp_path, base_bundle, small)


def test_name_clash_and_bad_names_are_one_line_errors(tmp_path, base_bundle, style_image):
    assert "already has a style named 'style1'" in _bad(tmp_path, base_bundle, style_image, name="style1")
    for name in ("2", "a:b", "x,y", ""):
        assert "must start with a letter" in _bad(tmp_path, base_bundle, style_image, name=name)


def test_unwritable_or_occupied_out_is_one_line_error(tmp_path, base_bundle, style_image):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    assert "cannot write there" in _bad(tmp_path, base_bundle, style_image, out=blocker / "bundle")
    full = tmp_path / "full"
    full.mkdir()
    (full / "keep.txt").write_text("user data")
    assert "not an empty folder" in _bad(tmp_path, base_bundle, style_image, out=full)
    assert (full / "keep.txt").read_text() == "user data"


def test_cli_bad_input_exits_2_with_one_line(tmp_path, base_bundle, style_image, capsys):
    from muon_ad_ros import cli

    code = cli.main(["add-style", str(style_image), "--name", "style0", "--out", str(tmp_path / "o"),
                     "--model", str(base_bundle)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0 and err.startswith("muon-ad add-style: error:")


def test_failure_during_training_leaves_nothing(tmp_path, base_bundle, style_image, monkeypatch):
    module = importlib.import_module("muon_ad_training.add_style")

    def boom(*args, **kwargs):
        raise FloatingPointError("simulated divergence")

    monkeypatch.setattr(module, "train_new_rows", boom)
    out = tmp_path / "never"
    with pytest.raises(FloatingPointError):
        module.add_style(style_image, "fresh", out, model=str(base_bundle),
                         config=module.AddStyleConfig(progress=False))
    assert list(tmp_path.iterdir()) == []


def test_too_few_minutes_is_one_line_error_and_leaves_nothing(tmp_path, base_bundle, style_image):
    from muon_ad_ros.core.errors import ConfigError
    from muon_ad_training.add_style import AddStyleConfig, add_style

    with pytest.raises(ConfigError, match="leaves no time to train"):
        add_style(style_image, "fresh", tmp_path / "out", model=str(base_bundle),
                  config=AddStyleConfig(minutes=0.01, progress=False))
    assert list(tmp_path.iterdir()) == []


def test_int8_table_growth_refuses_tables_it_cannot_find(tmp_path, base_bundle):
    from muon_ad_ros.core.errors import ModelError
    from muon_ad_ros.core.model_store import load_card
    from muon_ad_training.style_onnx import add_style_rows

    base = load_card(base_bundle)
    with pytest.raises(ModelError, match="do not match"):
        add_style_rows(base.file_for("onnx_int8"), tmp_path / "x.onnx", {"nope.style_scale": np.zeros(8)},
                       BASE_STYLES + ["x"], base.card["student_config"], "x")
    assert not (tmp_path / "x.onnx").exists()
