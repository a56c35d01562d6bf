"""The nodes end to end over real DDS: node processes on one side, this test process on the other.

Two stylize_node processes run for the whole module: one with a raw input and a compressed copy of
its output, one with a compressed input, a namespaced layout and a smaller output size (so the
CameraInfo must be rescaled). Then the source and recorder nodes, and the demo runner.
"""
import json
import signal
import time

import cv2
import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy", reason="rclpy (ROS 2) is not installed")

from _ros_helpers import (ROOT, NodeProcess, RosTestNode, node_processes, random_domain_id,  # noqa: E402
                          ros_env)
from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.parameter_client import AsyncParameterClient  # noqa: E402
from rclpy.qos import qos_profile_sensor_data  # noqa: E402
from sensor_msgs.msg import CameraInfo, CompressedImage, Image  # noqa: E402
from std_msgs.msg import Header  # noqa: E402

from muon_ad_ros.core.image_codec import decode_compressed  # noqa: E402
from muon_ad_ros.core.stylizer import Stylizer  # noqa: E402
from muon_ad_ros.nodes.conversions import (byte_array, image_to_rgb, rgb_to_compressed,  # noqa: E402
                                           rgb_to_image, stamp_to_ns)

STYLIZE = "muon_ad_ros.nodes.stylize_node"
MAX_SIDE = 64
# thread method: a hang inside DDS (C code) still ends the run, with every thread's stack printed
pytestmark = pytest.mark.timeout(240, method="thread")


def photo(width, height, name="astronaut"):
    from skimage import data

    return cv2.resize(getattr(data, name)(), (width, height), interpolation=cv2.INTER_AREA)


@pytest.fixture(scope="module")
def domain():
    return random_domain_id()


@pytest.fixture(scope="module")
def env(domain):
    return ros_env(domain)


@pytest.fixture(scope="module")
def styled_model(tmp_path_factory):
    """A tiny student whose styles really differ (the seeded default model's style tables start
    equal, so switching its styles changes nothing), exported to ONNX as a user's model would be."""
    import torch

    from muon_ad_ros.core.export import export_onnx
    from muon_ad_ros.core.student import ConditionalInstanceNorm, StudentConfig, StudentNet

    torch.manual_seed(0)
    config = StudentConfig.tiny(num_styles=3)
    config.style_names = ["ink", "pastel", "neon"]
    model = StudentNet(config)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, ConditionalInstanceNorm):
                module.style_scale.normal_(1.0, 0.5)
                module.style_shift.normal_(0.0, 0.5)
    return export_onnx(model, tmp_path_factory.mktemp("model") / "styled.onnx", sample_hw=(48, 64))


@pytest.fixture(scope="module")
def nodes(env, styled_model):
    fast_diag = ["-p", "diagnostics_period:=0.25", "-p", f"max_side:={MAX_SIDE}"]
    specs = [
        (STYLIZE, ["-p", f"model:={styled_model}", "-p", "publish_compressed:=true", *fast_diag]),
        (STYLIZE, ["-r", "__node:=stylize_compressed", "-p", "input_transport:=compressed",
                   "-p", "input_topic:=/cam2/image_raw", "-p", "output_topic:=/cam2/stylized/image",
                   "-p", "output_width:=32", "-p", "output_height:=24", *fast_diag]),
    ]
    with node_processes(*specs, env=env) as procs:
        yield procs


class Wire:
    """The test side of both nodes: publishers, subscriptions and what arrived."""

    def __init__(self, ros: RosTestNode):
        n = ros.node
        self.ros = ros
        self.got = {}
        self.pub = n.create_publisher(Image, "/image_raw", qos_profile_sensor_data)
        self.pub_info = n.create_publisher(CameraInfo, "/camera_info", 10)
        self.pub2 = n.create_publisher(CompressedImage, "/cam2/image_raw/compressed", qos_profile_sensor_data)
        self.pub2_info = n.create_publisher(CameraInfo, "/cam2/camera_info", 10)
        for topic, kind in (("/image_stylized", Image), ("/image_stylized/compressed", CompressedImage),
                            ("/image_stylized/camera_info", CameraInfo), ("/cam2/stylized/image", Image),
                            ("/cam2/stylized/camera_info", CameraInfo), ("/diagnostics", DiagnosticArray)):
            self.got[topic] = []
            n.create_subscription(kind, topic, lambda m, t=topic: self.got[t].append(m), 50)
        self.params = AsyncParameterClient(n, "stylize_node")

    def header(self, frame_id="cam_test") -> Header:
        h = Header()
        h.stamp = self.ros.node.get_clock().now().to_msg()
        h.frame_id = frame_id
        return h

    def serve(self, pub, msg, out_topic, timeout=20.0):
        """Publish ``msg`` (again every 0.5 s: the input is best effort) until the output with its
        stamp arrives; returns that output."""
        stamp = stamp_to_ns(msg.header.stamp)

        def match():
            return next((m for m in self.got[out_topic] if stamp_to_ns(m.header.stamp) == stamp), None)

        end = time.monotonic() + timeout
        while time.monotonic() < end:
            pub.publish(msg)
            if self.ros.spin_until(lambda: match() is not None, 0.5):
                return match()
        raise AssertionError(f"no output on {out_topic} for the frame stamped {stamp}")

    def diagnostics(self, node_name="/stylize_node"):
        for msg in reversed(self.got["/diagnostics"]):
            for status in msg.status:
                if status.name == f"{node_name}: stylization":
                    return status, {kv.key: kv.value for kv in status.values}
        return None, {}

    def set_params(self, **values):
        future = self.params.set_parameters([Parameter(k, value=v) for k, v in values.items()])
        return self.ros.wait_future(future).results


@pytest.fixture(scope="module")
def wire(domain, nodes):
    ros = RosTestNode(domain)
    try:
        w = Wire(ros)
        ready = ros.spin_until(lambda: w.pub.get_subscription_count() >= 1
                               and w.pub2.get_subscription_count() >= 1
                               and len(w.got["/diagnostics"]) > 0, 60.0)
        assert ready, "stylize nodes did not come up:\n" + "\n".join(p.log() for p in nodes)
        yield w
    finally:
        ros.close()


@pytest.fixture(scope="module")
def reference(styled_model):
    """The first node's model in this process: what that node must produce."""
    return Stylizer.from_model(styled_model, max_side=MAX_SIDE)


@pytest.fixture(scope="module")
def default_reference():
    """The default model (the second node's)."""
    return Stylizer.from_model("default", max_side=MAX_SIDE)


def assert_close(a, b):
    diff = np.abs(a.astype(int) - b.astype(int))
    assert diff.mean() < 0.5 and diff.max() <= 3, f"mean {diff.mean():.2f}, max {diff.max()}"


# ------------------------------------------------------------------------------------------------


def test_frames_in_stylized_frames_out(wire, reference):
    rgb = photo(64, 48)
    sent = []
    for k in range(4):
        frame = np.roll(rgb, 8 * k, axis=1)
        header = wire.header(frame_id=f"cam_{k}")
        out = wire.serve(wire.pub, rgb_to_image(frame, header), "/image_stylized")
        sent.append(header)
        assert (out.header.frame_id, out.width, out.height, out.encoding) == (f"cam_{k}", 64, 48, "rgb8")
        assert stamp_to_ns(out.header.stamp) == stamp_to_ns(header.stamp)
        assert_close(image_to_rgb(out), reference.stylize(frame, style=0).image)
    # the compressed copy carries the same header and decodes to the same picture (JPEG-close)
    last = stamp_to_ns(sent[-1].stamp)
    assert wire.ros.spin_until(lambda: any(stamp_to_ns(m.header.stamp) == last
                                           for m in wire.got["/image_stylized/compressed"]), 5.0)
    comp = next(m for m in wire.got["/image_stylized/compressed"] if stamp_to_ns(m.header.stamp) == last)
    raw = next(m for m in wire.got["/image_stylized"] if stamp_to_ns(m.header.stamp) == last)
    decoded = decode_compressed(comp.format, comp.data)
    assert decoded.shape == (48, 64, 3)

    def luma(x):  # JPEG keeps luminance; its chroma is subsampled (and this output is mostly chroma noise)
        return cv2.cvtColor(x, cv2.COLOR_RGB2GRAY).astype(int)

    assert np.abs(luma(decoded) - luma(image_to_rgb(raw))).mean() < 6


def test_other_encodings_are_converted(wire, reference):
    rgb = photo(64, 48, "coffee")
    for encoding in ("bgr8", "rgba8", "mono8"):
        msg = rgb_to_image(rgb, wire.header(), encoding)
        out = wire.serve(wire.pub, msg, "/image_stylized")
        expected_input = image_to_rgb(msg)                       # what the encoding keeps (mono: grey)
        assert_close(image_to_rgb(out), reference.stylize(expected_input, style=0).image)


def test_one_vga_frame_over_large_data(wire, reference):
    rgb = photo(640, 480, "chelsea")
    out = wire.serve(wire.pub, rgb_to_image(rgb, wire.header()), "/image_stylized")
    assert (out.width, out.height) == (640, 480)
    assert_close(image_to_rgb(out), reference.stylize(rgb, style=0).image)


def test_camera_info_republished_with_the_frame_header(wire):
    header = wire.header(frame_id="cam_info_test")
    info = CameraInfo(header=header, width=64, height=48, distortion_model="plumb_bob")
    info.k = [50.0, 0.0, 31.5, 0.0, 50.0, 23.5, 0.0, 0.0, 1.0]
    info.p = [50.0, 0.0, 31.5, 0.0, 0.0, 50.0, 23.5, 0.0, 0.0, 0.0, 1.0, 0.0]
    info.d = [0.1, -0.05, 0.0, 0.0, 0.0]
    wire.pub_info.publish(info)
    wire.ros.spin_for(0.3)
    wire.serve(wire.pub, rgb_to_image(photo(64, 48), header), "/image_stylized")
    stamp = stamp_to_ns(header.stamp)
    assert wire.ros.spin_until(lambda: any(stamp_to_ns(m.header.stamp) == stamp
                                           for m in wire.got["/image_stylized/camera_info"]), 5.0)
    out = next(m for m in wire.got["/image_stylized/camera_info"] if stamp_to_ns(m.header.stamp) == stamp)
    assert out.header.frame_id == "cam_info_test" and (out.width, out.height) == (64, 48)
    assert list(out.k) == list(info.k) and list(out.d) == list(info.d)      # same size: unchanged


def test_compressed_input_resized_output_and_scaled_camera_info(wire, default_reference):
    rgb = photo(64, 48, "rocket")
    header = wire.header(frame_id="cam2")
    info = CameraInfo(header=header, width=64, height=48)
    info.k = [60.0, 0.0, 32.0, 0.0, 60.0, 24.0, 0.0, 0.0, 1.0]
    info.p = [60.0, 0.0, 32.0, -6.0, 0.0, 60.0, 24.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    wire.pub2_info.publish(info)
    wire.ros.spin_for(0.3)
    msg = rgb_to_compressed(rgb, header, "png")                   # lossless, so the content is known
    out = wire.serve(wire.pub2, msg, "/cam2/stylized/image")
    assert (out.width, out.height, out.header.frame_id) == (32, 24, "cam2")
    expected = cv2.resize(default_reference.stylize(rgb, style=0).image, (32, 24),
                          interpolation=cv2.INTER_AREA)
    assert_close(image_to_rgb(out), expected)
    stamp = stamp_to_ns(header.stamp)
    assert wire.ros.spin_until(lambda: any(stamp_to_ns(m.header.stamp) == stamp
                                           for m in wire.got["/cam2/stylized/camera_info"]), 5.0)
    scaled = next(m for m in wire.got["/cam2/stylized/camera_info"] if stamp_to_ns(m.header.stamp) == stamp)
    assert (scaled.width, scaled.height) == (32, 24)
    assert list(scaled.k) == [30.0, 0.0, 16.0, 0.0, 30.0, 12.0, 0.0, 0.0, 1.0]
    assert list(scaled.p)[:4] == [30.0, 0.0, 16.0, -3.0]


def test_style_and_strength_change_at_run_time(wire, reference):
    styles = reference.styles
    assert len(styles) >= 2
    rgb = photo(64, 48)
    try:
        assert wire.set_params(style=styles[1])[0].successful
        out = wire.serve(wire.pub, rgb_to_image(rgb, wire.header()), "/image_stylized")
        assert_close(image_to_rgb(out), reference.stylize(rgb, style=1).image)
        assert np.abs(image_to_rgb(out).astype(int) - reference.stylize(rgb, style=0).image).mean() > 2

        assert wire.set_params(style=2)[0].successful                  # an index, as `ros2 param set` sends it
        out = wire.serve(wire.pub, rgb_to_image(rgb, wire.header()), "/image_stylized")
        assert_close(image_to_rgb(out), reference.stylize(rgb, style=2).image)
        assert not wire.set_params(style=7)[0].successful              # no such index
        assert wire.set_params(style=styles[1])[0].successful

        assert wire.set_params(strength=0.0)[0].successful            # strength 0: the input itself
        out = wire.serve(wire.pub, rgb_to_image(rgb, wire.header()), "/image_stylized")
        assert_close(image_to_rgb(out), rgb)

        bad = wire.set_params(style="no_such_style")[0]
        assert not bad.successful and styles[0] in bad.reason                # names the real styles
        assert not wire.set_params(strength=1.5)[0].successful               # out of range
        assert not wire.set_params(model="other")[0].successful              # read-only at run time
        status_ok = wire.ros.spin_until(lambda: wire.diagnostics()[1].get("style") == styles[1], 3.0)
        assert status_ok, "diagnostics should report the style in use"
    finally:
        wire.set_params(style=styles[0], strength=1.0)
    out = wire.serve(wire.pub, rgb_to_image(rgb, wire.header()), "/image_stylized")
    assert_close(image_to_rgb(out), reference.stylize(rgb, style=0).image)


def _bad_images(good):
    """Each kind of malformed Image the node must survive, built from a good one."""
    def variant(**fields):
        m = rgb_to_image(good, Header())
        for k, v in fields.items():
            setattr(m, k, v)
        return m

    return {
        "unknown encoding": variant(encoding="bayer_rggb99"),
        "data shorter than step*height": variant(data=byte_array(bytes(100))),
        "step smaller than a row": variant(step=10),
        "zero size": variant(width=0, height=0, step=0, data=byte_array(b"")),
        "odd width yuv422": variant(encoding="yuv422", width=63, step=126),
        "absurd size": variant(width=100000, height=100000, step=300000),
    }


def _bad_compressed(good):
    jpeg = rgb_to_compressed(good, Header(), "jpeg")
    return {
        "garbage bytes": CompressedImage(format="jpeg", data=byte_array(b"\x00not an image" * 10)),
        "truncated jpeg": CompressedImage(format="jpeg",
                                          data=byte_array(bytes(jpeg.data[: len(jpeg.data) // 2]))),
        "unsupported codec": CompressedImage(format="theora", data=jpeg.data),
        "empty": CompressedImage(format="jpeg", data=byte_array(b"")),
    }


def _malformed_count(wire, node_name):
    return int(wire.diagnostics(node_name)[1].get("malformed", "0"))


@pytest.mark.parametrize("transport", ["raw", "compressed"])
def test_each_bad_message_is_skipped_and_the_next_good_one_served(wire, nodes, transport):
    good = photo(64, 48, "chelsea")
    if transport == "raw":
        bad, pub, out_topic, node_name, proc = (_bad_images(good), wire.pub, "/image_stylized",
                                                "/stylize_node", nodes[0])
    else:
        bad, pub, out_topic, node_name, proc = (_bad_compressed(good), wire.pub2, "/cam2/stylized/image",
                                                "/stylize_compressed", nodes[1])
    for kind, msg in bad.items():
        before = _malformed_count(wire, node_name)
        msg.header = wire.header(frame_id="bad")
        deadline = time.monotonic() + 10
        while _malformed_count(wire, node_name) <= before and time.monotonic() < deadline:
            pub.publish(msg)                                   # best effort: resend until counted
            wire.ros.spin_until(lambda: _malformed_count(wire, node_name) > before, 0.6)
        assert _malformed_count(wire, node_name) > before, f"{kind}: not counted as malformed"
        header = wire.header(frame_id=f"after {kind}")
        good_msg = (rgb_to_image(good, header) if transport == "raw"
                    else rgb_to_compressed(good, header, "png"))
        out = wire.serve(pub, good_msg, out_topic)
        assert out.header.frame_id == f"after {kind}"
    assert proc.alive()
    assert all(m.header.frame_id != "bad" for m in wire.got[out_topic])
    status, values = wire.diagnostics(node_name)
    assert int(values["malformed"]) >= len(bad) and values["last_problem"].startswith("malformed")
    # one throttled error, not one line per bad message
    errors = [line for line in proc.log().splitlines() if "[ERROR]" in line and "malformed" in line]
    assert 1 <= len(errors) < len(bad), errors


def test_diagnostics_report_rates_drops_and_latency(wire):
    rgb = photo(64, 48)
    end = time.monotonic() + 2.0
    while time.monotonic() < end:                             # a burst faster than inference
        wire.pub.publish(rgb_to_image(rgb, wire.header()))
        wire.ros.spin_for(0.005)
    wire.ros.spin_for(0.6)
    status, values = wire.diagnostics()
    assert status is not None and status.hardware_id == "styled"           # the model's id (ONNX stem)
    assert float(values["input_rate_hz"]) > 0 and int(values["frames_out"]) > 0
    assert int(values["frames_in"]) >= int(values["frames_out"]) + int(values["dropped"])
    for stage in ("decode", "preprocess", "inference", "postprocess", "publish", "stamp_to_publish",
                  "stamp_to_receive"):
        p50, p95 = float(values[f"{stage}_p50_ms"]), float(values[f"{stage}_p95_ms"])
        assert 0 <= p50 <= p95, (stage, p50, p95)
    assert float(values["stamp_to_publish_p50_ms"]) >= float(values["inference_p50_ms"])
    # per frame stamp->publish = stamp->receive + receive->publish, so the medians cannot cross
    assert float(values["stamp_to_receive_p50_ms"]) <= float(values["stamp_to_publish_p50_ms"])
    assert 0 <= float(values["beyond_inference_p50_ms"]) <= float(values["stamp_to_publish_p50_ms"])
    assert values["untrained"] in ("true", "false")
    # process start -> first published frame: after the interpreter and the model load, once
    assert 0 < float(values["startup_to_ready_s"]) <= float(values["startup_to_first_frame_s"]) < 600


# ------------------------------------------------------------------------------------------------
# bad start-up configuration


def test_invalid_parameters_stop_the_node_with_a_clear_message(env):
    proc = NodeProcess(STYLIZE, ["-p", "backend:=nope", "-p", "strength:=2.0", "-p", "qos_depth:=0"], env)
    try:
        code = proc.proc.wait(60)
        log = proc.log()
    finally:
        proc.stop()
        proc.cleanup()
    assert code == 2, log
    assert "backend must be one of" in log and "strength" in log and "qos_depth" in log
    assert "Traceback" not in log


# ------------------------------------------------------------------------------------------------
# source -> recorder


def test_source_folder_to_recorder_files(tmp_path, wire, env):
    from skimage import data

    frames_dir = tmp_path / "frames"
    frames_dir.mkdir()
    for k, name in enumerate(("astronaut", "coffee", "chelsea")):
        rgb = cv2.resize(getattr(data, name)(), (64, 48))
        cv2.imwrite(str(frames_dir / f"{k}.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    out_dir = tmp_path / "rec"
    ros = wire.ros
    got, infos = [], []
    ros.node.create_subscription(Image, "/src/image_raw", got.append, 50)
    ros.node.create_subscription(CameraInfo, "/src/camera_info", infos.append, 50)
    specs = [
        ("muon_ad_ros.nodes.recorder_node", ["-p", f"output_dir:={out_dir}",
                                             "-p", "input_topic:=/src/image_raw", "-p", "max_frames:=8",
                                             "-p", "label_node:=''", "-p", "video_fps:=10.0"]),
        ("muon_ad_ros.nodes.image_source_node", ["-p", f"source:={frames_dir}", "-p", "rate:=10",
                                                 "-p", "output_topic:=/src/image_raw",
                                                 "-p", "frame_id:=folder_cam"]),
    ]
    with node_processes(*specs, env=env) as (recorder, source):
        # the source loops on, so this process also sees frames however late it discovers it
        ok = ros.spin_until(lambda: not recorder.alive() and len(got) >= 6 and infos, 60.0)
        assert ok, f"recorder alive: {recorder.alive()}, frames seen here: {len(got)}\n" \
            + recorder.log() + source.log()
        assert recorder.proc.returncode == 0, recorder.log()
    summary = json.loads((out_dir / "summary.json").read_text())
    assert summary["frames"] == 8 and summary["topic"] == "/src/image_raw"
    cap = cv2.VideoCapture(str(out_dir / "stylized.mp4"))
    count = 0
    while cap.read()[0]:
        count += 1
    assert count == 8
    assert cv2.imread(str(out_dir / "contact_sheet.png")) is not None
    # the source: folder order, loops, its frame_id, and a CameraInfo beside the image
    assert {m.header.frame_id for m in got} == {"folder_cam"} and (got[0].width, got[0].height) == (64, 48)
    means = [image_to_rgb(m).mean() for m in got[:6]]
    assert len(set(np.round(means, 3))) == 3                 # three distinct photos, repeating
    assert infos and infos[0].k[0] > 0 and (infos[0].width, infos[0].height) == (64, 48)


# ------------------------------------------------------------------------------------------------
# the demo runner: three processes, a style cycle, outputs


def test_demo_runs_end_to_end(tmp_path, domain):
    import subprocess
    import sys

    # a domain of its own: the module's nodes (one also called stylize_node) are still running
    demo_domain = 100 + (domain - 100 + 50) % 100
    env = ros_env(demo_domain)
    out_dir = tmp_path / "demo"
    cmd = [sys.executable, "-m", "muon_ad_ros.demo", "--output-dir", str(out_dir),
           "--seconds-per-style", "1.5", "--size", "160x120", "--domain-id", str(demo_domain)]
    demo = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    try:
        stdout, _ = demo.communicate(timeout=150)
    finally:
        if demo.poll() is None:             # SIGINT: the demo stops its three nodes, then exits
            demo.send_signal(signal.SIGINT)
            try:
                demo.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                demo.kill()
                demo.communicate()
    assert demo.returncode == 0, stdout
    from muon_ad_ros.core.model_store import resolve_model

    model = resolve_model("default")
    summary = json.loads((out_dir / "summary.json").read_text())
    assert summary["frames"] > 0 and (out_dir / "stylized.mp4").stat().st_size > 0
    sheet = cv2.imread(str(out_dir / "contact_sheet.png"))
    assert sheet is not None and sheet.shape[1] > 160
    assert summary["labels"][-len(model.styles):] == model.styles          # every style was shown
    assert "FPS" in stdout and "p50" in stdout and "p95" in stdout
    assert ("UNTRAINED" in stdout) == bool(model.card.get("untrained"))


def test_demo_exits_non_zero_when_no_frame_comes_through(tmp_path, domain):
    """A stylizer that cannot start (TensorRT is not installed here, or no GPU) means no frame:
    the demo says why, shows the node's log and exits 1 instead of waiting forever."""
    import importlib.util
    import subprocess
    import sys

    if importlib.util.find_spec("tensorrt") is not None:
        pytest.skip("tensorrt is installed here, so the tensorrt backend may well start")
    demo_domain = 100 + (domain - 100 + 25) % 100
    cmd = [sys.executable, "-m", "muon_ad_ros.demo", "--output-dir", str(tmp_path / "demo"), "--backend",
           "tensorrt", "--size", "160x120", "--domain-id", str(demo_domain), "--startup-timeout", "60"]
    run = subprocess.run(cmd, cwd=ROOT, env=ros_env(demo_domain), capture_output=True, text=True, timeout=120)
    assert run.returncode == 1, run.stdout + run.stderr
    assert "FAILED" in run.stderr and "stylize_node exited" in run.stderr
    assert "tensorrt" in run.stderr.lower()                        # the node's own reason, from its log
