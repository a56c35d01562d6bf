"""Bad input that used to end in a traceback is a one-line error (issue 14 item 7): malformed
model cards, training configs (checkpoint_every: 0, log_every: 0, an extends cycle, a bad skimage
name), and ONNX Runtime running out of memory at inference."""
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from _core_helpers import tiny_bundle
from muon_ad_ros.core.errors import ConfigError, ModelError
from muon_ad_ros.core.model_store import load_card

REPO = Path(__file__).resolve().parents[1]


def assert_one_line(exc_info, fragment):
    text = str(exc_info.value)
    assert fragment in text and "\n" not in text, text


@pytest.fixture(scope="module")
def card(tmp_path_factory):
    return tiny_bundle(tmp_path_factory.mktemp("bundle"))[1]


@pytest.mark.parametrize("mutate, fragment", [
    (lambda c: c.update(files=["tiny.onnx"]), "'files' must map a role"),
    (lambda c: c["files"].update(onnx_fp32={"sha256": "0" * 64}), "files.onnx_fp32 needs a 'path'"),
    (lambda c: c["files"].update(onnx_fp32={"path": 7}), "files.onnx_fp32 needs a 'path'"),
    (lambda c: c["files"].update(onnx_fp32=None), "files.onnx_fp32 needs a 'path'"),
    (lambda c: c["files"]["onnx_fp32"].update(sha256=12), "sha256 must be 64 hex digits"),
    (lambda c: c["files"]["onnx_fp32"].update(bytes="big"), "bytes must be a byte count"),
    (lambda c: c.update(styles="style0"), "'styles' must be a list"),
    (lambda c: c.update(styles=[]), "'styles' must be a list"),
    (lambda c: c.update(styles=["a", "a", "b"]), "'styles' must be a list of distinct"),
    (lambda c: c.update(styles=[1, 2, 3]), "'styles' must be a list"),
    (lambda c: c.pop("files"), "needs 'styles' and 'files'"),
])
def test_malformed_cards_are_one_line_model_errors(card, tmp_path, mutate, fragment):
    data = json.loads(card.read_text())
    mutate(data)
    bad = tmp_path / "bad.card.json"
    bad.write_text(json.dumps(data))
    with pytest.raises(ModelError) as info:
        load_card(bad)
    assert_one_line(info, fragment)


def test_a_card_that_is_not_utf8_json(tmp_path):
    bad = tmp_path / "bad.card.json"
    bad.write_bytes(b"\xff\xfe{not json")
    with pytest.raises(ModelError) as info:
        load_card(bad)
    assert_one_line(info, "unreadable model card")


# -- training configs ------------------------------------------------------------------------------

train_config = pytest.importorskip("muon_ad_training.train_config", reason="the training package is not installed")


def write(path, text):
    path.write_text(textwrap.dedent(text))
    return path


@pytest.mark.parametrize("logging", [{"checkpoint_every": 0}, {"log_every": 0}, {"image_every": -5},
                                     {"keep_checkpoints": -1}])
def test_zero_or_odd_intervals_are_config_errors(logging):
    smoke = REPO / "config" / "train" / "smoke.yaml"
    with pytest.raises(ConfigError) as info:
        train_config.load_config(smoke, {"logging": logging})
    assert_one_line(info, f"logging.{next(iter(logging))} must be")


def test_an_extends_cycle_is_a_config_error(tmp_path):
    write(tmp_path / "a.yaml", "extends: b.yaml\nseed: 1\n")
    write(tmp_path / "b.yaml", "extends: c.yaml\n")
    write(tmp_path / "c.yaml", "extends: a.yaml\n")
    write(tmp_path / "self.yaml", "extends: self.yaml\n")
    with pytest.raises(ConfigError) as info:
        train_config.read_yaml(tmp_path / "a.yaml")
    assert_one_line(info, "cycle (a.yaml -> b.yaml -> c.yaml -> a.yaml)")
    with pytest.raises(ConfigError) as info:
        train_config.read_yaml(tmp_path / "self.yaml")
    assert_one_line(info, "cycle")
    write(tmp_path / "list.yaml", "extends: [a.yaml]\n")
    with pytest.raises(ConfigError) as info:
        train_config.read_yaml(tmp_path / "list.yaml")
    assert_one_line(info, "'extends' must name one YAML file")


@pytest.mark.parametrize("name", ["no_such_image", "download_all", "file_hash", "data_dir", "stereo_motorcycle",
                                  "lbp_frontal_face_cascade_filename", "__loader__"])
def test_a_bad_skimage_name_is_a_config_error(name):
    pytest.importorskip("skimage", reason="scikit-image is not installed")
    from muon_ad_training.data import skimage_image

    with pytest.raises(ConfigError) as info:
        skimage_image(name)
    assert "\n" not in str(info.value) and name in str(info.value)


# -- ONNX Runtime out of memory ------------------------------------------------------------------------

OOM_SCRIPT = """
import resource, sys
import numpy as np
sys.path.insert(0, {test_dir!r})
from muon_ad_ros.core.errors import MuonAdError
from muon_ad_ros.core.stylizer import Stylizer
stylizer = Stylizer.from_model({card!r}, threads=1, max_side=0)
frame = np.zeros((2048, 2048, 3), np.uint8)
stylizer.stylize(frame[:64, :64])
vm = [int(l.split()[1]) * 1024 for l in open("/proc/self/status") if l.startswith("VmSize")][0]
resource.setrlimit(resource.RLIMIT_AS, (vm + 300 * 2**20, resource.getrlimit(resource.RLIMIT_AS)[1]))
try:
    stylizer.stylize(frame)          # a 2048x2048 network input needs GBs: more than the limit
except MuonAdError as exc:
    print("ERROR:", type(exc).__name__, exc)
"""


def test_onnxruntime_out_of_memory_is_one_line(card):
    script = OOM_SCRIPT.format(test_dir=str(REPO / "test"), card=str(card))
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("ERROR:")]
    assert proc.returncode == 0 and len(lines) == 1, (proc.stdout, proc.stderr[-2000:])
    assert "EngineError onnxruntime ran out of memory at 2048x2048" in lines[0]
    assert "Traceback" not in proc.stderr
