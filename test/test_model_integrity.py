"""Model files are checked against their card before an engine opens them (issue 14 item 3):
flipped or missing bytes, and card paths that leave the card's folder, are one-line ModelErrors;
an unchanged file is hashed once, then remembered by size + mtime."""
import json
import os
import shutil

import pytest

from _core_helpers import tiny_bundle
from muon_ad_ros.core import integrity
from muon_ad_ros.core.errors import ModelError
from muon_ad_ros.core.model_store import load_card
from muon_ad_ros.core.stylizer import Stylizer


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MUON_AD_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return tiny_bundle(tmp_path_factory.mktemp("bundle"))[1].parent


def copy_bundle(bundle, tmp_path):
    dst = tmp_path / "copy"
    shutil.copytree(bundle, dst)
    return dst / "tiny.card.json"


def flip_byte(path, offset_fraction=0.6):
    data = bytearray(path.read_bytes())
    data[int(len(data) * offset_fraction)] ^= 0x01   # one bit of a weight, deep inside the file
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("backend, pattern", [("onnxruntime", "*.onnx"), ("torch", "*.safetensors")])
def test_a_flipped_bit_in_a_model_file_is_refused(bundle, tmp_path, backend, pattern):
    card = copy_bundle(bundle, tmp_path)
    Stylizer.from_model(card, backend=backend)                   # the intact copy loads
    for path in card.parent.glob(pattern):                       # whichever variant the engine opens
        flip_byte(path)
    with pytest.raises(ModelError, match="does not match the sha256 of its card") as info:
        Stylizer.from_model(card, backend=backend)
    assert "\n" not in str(info.value)


def test_a_truncated_file_is_refused_by_its_size(bundle, tmp_path):
    card = copy_bundle(bundle, tmp_path)
    for onnx in card.parent.glob("*.onnx"):
        onnx.write_bytes(onnx.read_bytes()[:-100])
    with pytest.raises(ModelError, match="bytes, its card says"):
        Stylizer.from_model(card)


def test_an_unchanged_file_is_hashed_once_then_remembered(bundle, tmp_path, monkeypatch):
    card = copy_bundle(bundle, tmp_path)
    hashed = []
    real = integrity.sha256_file
    monkeypatch.setattr(integrity, "sha256_file", lambda p: hashed.append(p) or real(p))
    load_card(card).file_for("onnx_fp32")
    load_card(card).file_for("onnx_fp32")
    assert len(hashed) == 1
    onnx = card.parent / "tiny.onnx"
    flip_byte(onnx)                                   # rewritten: a new mtime, so it is hashed again
    st = onnx.stat()
    os.utime(onnx, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    with pytest.raises(ModelError, match="sha256"):
        load_card(card).file_for("onnx_fp32")
    assert len(hashed) == 2


def test_an_unwritable_cache_only_costs_a_hash(bundle, tmp_path, monkeypatch):
    blocker = tmp_path / "not_a_dir"
    blocker.write_text("x")
    monkeypatch.setenv("MUON_AD_CACHE_DIR", str(blocker / "cache"))
    card = copy_bundle(bundle, tmp_path)
    assert load_card(card).file_for("onnx_fp32").is_file()


@pytest.mark.parametrize("path", ["/etc/passwd", "../tiny.onnx", "sub/../../x.onnx", "//host/share/x.onnx"])
def test_card_paths_must_stay_in_the_cards_folder(bundle, tmp_path, path):
    card = copy_bundle(bundle, tmp_path)
    data = json.loads(card.read_text())
    data["files"]["onnx_fp32"]["path"] = path
    card.write_text(json.dumps(data))
    with pytest.raises(ModelError, match="must be relative to the card's folder"):
        load_card(card)
