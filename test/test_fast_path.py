"""The node's fast path (issue 16): a torch-free runtime, uint8 graphs, robot session options.

* Importing the nodes / the Stylizer / the ORT and TensorRT engines, and running ``muon-ad
  stylize`` on onnxruntime, leaves torch out of sys.modules (a fresh interpreter each, as
  test_core_no_rclpy does for rclpy).
* The uint8 variant of each exported file (core/uint8_io.py) gives the float path's output to
  within one level, for frames that are resized and frames that fit, with strength blending.
"""
import dataclasses
import json
import platform
import subprocess
import sys

import numpy as np
import pytest

from _core_helpers import real_photos, tiny_bundle
from muon_ad_ros.core.engines import create_engine
from muon_ad_ros.core.engines.onnx_engine import SessionConfig, physical_cores
from muon_ad_ros.core.errors import ConfigError, ModelError
from muon_ad_ros.core.model_store import resolve_model
from muon_ad_ros.core.stylizer import Stylizer
from muon_ad_ros.core.uint8_io import write_uint8_variant

RUNTIME_MODULES = ["muon_ad_ros.nodes.stylize_node", "muon_ad_ros.nodes.stereo_stylize_node",
                   "muon_ad_ros.core.stylizer", "muon_ad_ros.core.engines.onnx_engine",
                   "muon_ad_ros.core.engines.tensorrt_engine", "muon_ad_ros.evaluation.eval_bag_cli",
                   "muon_ad_ros.cli"]


def modules_after(script: str) -> dict:
    """Run ``script`` in a fresh interpreter; the torch modules it left loaded."""
    script += ("\nimport json, sys\nprint(json.dumps(sorted(m for m in sys.modules "
               "if m == 'torch' or m.startswith('torch.'))))\n")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    """A tiny seeded model with FP32 + FP16 files and their uint8 variants, as an export writes."""
    from muon_ad_ros.core.quantize import convert_fp16

    root = tmp_path_factory.mktemp("fast")
    _, card_path = tiny_bundle(root)
    card = json.loads(card_path.read_text())
    fp16 = convert_fp16(root / "tiny.onnx", root / "tiny.fp16.onnx")
    u8 = write_uint8_variant(fp16)
    for role, path in (("onnx_fp16", fp16), ("onnx_fp16_u8", u8)):  # no sha256: a hand-made card
        card["files"][role] = {"path": path.name}
    card_path.write_text(json.dumps(card))
    return card_path


def test_importing_the_runtime_loads_no_torch():
    loaded = modules_after("\n".join(f"import {m}" for m in RUNTIME_MODULES))
    assert loaded == [], f"the runtime imported {loaded[:5]}"


def test_muon_ad_stylize_on_onnxruntime_loads_no_torch(bundle, tmp_path):
    import cv2

    src, dst = tmp_path / "in.png", tmp_path / "out.png"
    cv2.imwrite(str(src), real_photos((96, 128))[0])
    loaded = modules_after(f"from muon_ad_ros.cli import main\nassert main(['stylize', {str(src)!r}, {str(dst)!r}, "
                           f"'--model', {str(bundle)!r}, '--backend', 'onnxruntime']) == 0")
    assert loaded == [] and cv2.imread(str(dst)).shape == (96, 128, 3)


def test_eval_bag_on_onnxruntime_loads_no_torch(bundle, tmp_path):
    import _bag_helpers as H

    bag = H.write_bag(tmp_path / "cam", H.camera_frames(3), "mcap")
    loaded = modules_after("from muon_ad_ros.evaluation import eval_bag_cli\n"
                           f"assert eval_bag_cli.main([{str(bag)!r}, '--topic', '/camera/image_raw', '--out', "
                           f"{str(tmp_path / 'out')!r}, '--model', {str(bundle)!r}, '--no-progress']) == 0")
    assert loaded == [] and (tmp_path / "out").exists()


def test_the_checks_would_see_torch():
    assert modules_after("import muon_ad_ros.core.engines.torch_engine") != []


def test_bundle_lists_uint8_variants_with_their_io(bundle):
    card = json.loads(bundle.read_text())
    assert card["files"]["onnx_fp32_u8"]["path"] == "tiny.u8.onnx"
    assert "image_rgb8" in card["io"]["onnx_fp32_u8"]["inputs"] and "image" in card["io"]["onnx_fp32"]["inputs"]
    files = resolve_model(bundle)
    files.file_for("onnx_fp32_u8")  # sha256 of the card matches
    assert create_engine(files, io="auto").io == "uint8"
    assert create_engine(files).io == "float"  # Engine.run callers keep the float contract by default


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
@pytest.mark.parametrize("hw, max_side, strength", [((96, 128), 128, 1.0), ((100, 150), 128, 1.0),
                                                    ((96, 128), 128, 0.6)])
def test_uint8_path_matches_the_float_path_within_one_level(bundle, precision, hw, max_side, strength):
    files = resolve_model(bundle)
    fast = Stylizer.from_model(files, precision=precision, max_side=max_side, style="style1", strength=strength)
    ref = Stylizer.from_model(files, precision=precision, max_side=max_side, style="style1", strength=strength,
                              io="float")
    assert fast.engine.io == "uint8" and ref.engine.io == "float"
    for frame in real_photos(hw):
        a, b = fast.stylize(frame), ref.stylize(frame)
        assert a.image.shape == frame.shape and a.image.dtype == np.uint8
        diff = np.abs(a.image.astype(int) - b.image.astype(int))
        if precision == "fp32":  # the default: the same float32 arithmetic, in the graph
            assert diff.max() <= 1, (hw, diff.max())
        else:  # FP16 on the CPU EP: ORT inserts and then elides fp16<->fp32 casts differently in the
            # two graphs, so a few pixels round differently (the FP16 tolerance is 0.03 = 7.6 levels)
            assert diff.max() <= 2 and (diff > 1).mean() < 1e-3, (hw, diff.max(), (diff > 1).mean())
        assert a.image.std() > 5  # a real picture came out, not a constant


def test_uint8_engine_keeps_the_float_interface(bundle):
    files = resolve_model(bundle)
    fast, ref = create_engine(files, io="uint8"), create_engine(files, io="float")
    frame = real_photos((96, 128))[1]
    x = frame.transpose(2, 0, 1)[None].astype(np.float32) / 255.0
    w = np.array([0.0, 1.0, 0.0], np.float32)
    assert np.abs(fast.run(x, w) - ref.run(x, w)).max() <= 1.0 / 255.0 + 1e-6
    rgb = fast.run_rgb8(frame[None], w)
    assert rgb.shape == (1, 96, 128, 3) and rgb.dtype == np.uint8


def test_uint8_variant_needs_a_float_contract_model(bundle, tmp_path):
    with pytest.raises(ModelError, match="expected a float model"):
        write_uint8_variant(bundle.parent / "tiny.u8.onnx", tmp_path / "twice.onnx")
    (tmp_path / "bad.onnx").write_bytes(b"not onnx")
    with pytest.raises(ModelError, match="not a readable ONNX model"):
        write_uint8_variant(tmp_path / "bad.onnx")
    assert not list(tmp_path.glob(".*tmp*"))


def test_io_uint8_without_a_variant_is_a_model_error(bundle):
    files = resolve_model(bundle.parent / "tiny.onnx")  # a lone float file: no variant known
    assert create_engine(files, io="auto").io == "float"
    with pytest.raises(ModelError, match="no onnx_fp32_u8 file"):
        create_engine(files, io="uint8")
    with pytest.raises(ConfigError, match="unknown model io"):
        create_engine(files, io="nhwc")


def test_session_options_for_a_robot(bundle):
    files = resolve_model(bundle)
    engine = create_engine(files, io="auto", session=SessionConfig(graph_optimization="basic", cpu_arena=False,
                                                                   mem_pattern=True))
    options = engine.session.get_session_options()
    assert options.intra_op_num_threads == physical_cores() >= 1
    assert not options.enable_cpu_mem_arena and options.enable_mem_pattern
    assert not create_engine(files).session.get_session_options().enable_mem_pattern  # the default: less RSS
    assert create_engine(files, threads=1).session.get_session_options().intra_op_num_threads == 1
    with pytest.raises(ConfigError, match="graph_optimization"):
        SessionConfig(graph_optimization="max")


@dataclasses.dataclass(frozen=True)
class _DumpingSessionConfig(SessionConfig):
    """SessionConfig that also writes the graph as optimised by ORT (to see which transformers ran)."""
    dump: str = ""

    def options(self):
        options = super().options()
        options.optimized_model_filepath = self.dump
        return options


@pytest.mark.skipif(platform.machine().lower() not in ("x86_64", "amd64"),
                    reason="ORT's NCHWc blocked layout exists on x86 CPUs only")
def test_blocked_layout_only_when_asked(tmp_path):
    import onnx

    files = resolve_model("default")  # the shipped student: channel counts the blocked layout takes
    domains = {}
    for blocked in (False, True):
        config = _DumpingSessionConfig(blocked_layout=blocked, dump=str(tmp_path / f"blocked_{blocked}.onnx"))
        create_engine(files, io="uint8", session=config)
        domains[blocked] = {node.domain for node in onnx.load(config.dump).graph.node}
    assert "com.microsoft.nchwc" in domains[True]
    assert "com.microsoft.nchwc" not in domains[False]  # the default
    assert not SessionConfig().blocked_layout
