"""Fault injection over real DDS: parameter values and messages that once killed or fooled
stylize_node (issue 14), and a fuzz run of >= 1,000 malformed Image and CompressedImage messages
interleaved with valid frames. The node must stay alive, serve every valid frame, publish nothing
for a malformed one and count each in /diagnostics.
"""
import os
import struct
import time
import zlib

import cv2
import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy", reason="rclpy (ROS 2) is not installed")

from _core_helpers import real_photos, tiny_bundle  # noqa: E402
from _ros_helpers import NodeProcess, RosTestNode, node_processes, random_domain_id, ros_env  # noqa: E402
from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.parameter_client import AsyncParameterClient  # noqa: E402
from rclpy.qos import QoSProfile, ReliabilityPolicy  # noqa: E402
from sensor_msgs.msg import CompressedImage, Image  # noqa: E402
from std_msgs.msg import Header  # noqa: E402

from muon_ad_ros.core.errors import ImageFormatError  # noqa: E402
from muon_ad_ros.core.stylizer import Stylizer  # noqa: E402
from muon_ad_ros.nodes.conversions import (byte_array, compressed_to_rgb, image_to_rgb,  # noqa: E402
                                           rgb_to_compressed, rgb_to_image, stamp_to_ns)

STYLIZE = "muon_ad_ros.nodes.stylize_node"
MAX_SIDE = 64
MAX_INPUT_PIXELS = 160 * 120      # the nodes' decoded-size limit here (a robot sets its camera's)
# malformed messages per transport (2,000 in all); MUON_AD_FUZZ_COUNT=10000 for a longer soak run
FUZZ_PER_TRANSPORT = int(os.environ.get("MUON_AD_FUZZ_COUNT", "1000"))
VALID_EVERY = 25                   # a valid frame after every 25 malformed ones
pytestmark = pytest.mark.timeout(300, method="thread")


@pytest.fixture(scope="module")
def card(tmp_path_factory):
    return tiny_bundle(tmp_path_factory.mktemp("bundle"))[1]


@pytest.fixture(scope="module")
def domain():
    return random_domain_id()


@pytest.fixture(scope="module")
def env(domain):
    return ros_env(domain)


@pytest.fixture(scope="module")
def nodes(env, card):
    # reliable input with a deep history: every message the fuzz sends reaches the node, so the
    # node's own counters must account for each one
    common = ["-p", f"model:={card}", "-p", f"max_side:={MAX_SIDE}", "-p", "diagnostics_period:=0.2",
              "-p", "qos_reliability:=reliable", "-p", "qos_depth:=100",
              "-p", f"max_input_pixels:={MAX_INPUT_PIXELS}"]
    specs = [(STYLIZE, ["-r", "__node:=fault_raw", "-r", "image_raw:=/fault/raw", "-r",
                        "image_stylized:=/fault/raw_out", *common]),
             (STYLIZE, ["-r", "__node:=fault_compressed", "-p", "input_transport:=compressed",
                        "-r", "image_raw:=/fault/cmp", "-r", "image_stylized:=/fault/cmp_out", *common])]
    with node_processes(*specs, env=env) as procs:
        yield procs


class Wire:
    def __init__(self, ros):
        n = ros.node
        self.ros = ros
        reliable = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
        self.pub = {"raw": n.create_publisher(Image, "/fault/raw", reliable),
                    "compressed": n.create_publisher(CompressedImage, "/fault/cmp/compressed", reliable)}
        self.out = {"raw": [], "compressed": []}
        n.create_subscription(Image, "/fault/raw_out", self.out["raw"].append, 100)
        n.create_subscription(Image, "/fault/cmp_out", self.out["compressed"].append, 100)
        self.diag = {}
        n.create_subscription(DiagnosticArray, "/diagnostics", self._on_diag, 50)
        self.params = AsyncParameterClient(n, "fault_raw")

    def _on_diag(self, msg):
        for status in msg.status:
            self.diag[status.name.split(":")[0]] = {kv.key: kv.value for kv in status.values}

    def counts(self, transport):
        values = self.diag.get("/fault_raw" if transport == "raw" else "/fault_compressed", {})
        return {k: int(values.get(k, 0)) for k in ("frames_in", "frames_out", "malformed", "errors", "dropped")}

    def header(self, frame_id):
        h = Header()
        h.stamp = self.ros.node.get_clock().now().to_msg()
        h.frame_id = frame_id
        return h

    def serve(self, transport, msg, timeout=20.0):
        """Publish a valid frame and wait for its output (reliable: once is enough)."""
        stamp = stamp_to_ns(msg.header.stamp)
        self.pub[transport].publish(msg)

        def match():
            return next((m for m in reversed(self.out[transport]) if stamp_to_ns(m.header.stamp) == stamp), None)
        assert self.ros.spin_until(lambda: match() is not None, timeout), f"valid frame not served ({transport})"
        return match()

    def set_atomically(self, **values):
        future = self.params.set_parameters_atomically([Parameter(k, value=v) for k, v in values.items()])
        return self.ros.wait_future(future).result

    def get(self, name):
        return self.ros.wait_future(self.params.get_parameters([name])).values[0]


@pytest.fixture(scope="module")
def wire(domain, nodes):
    ros = RosTestNode(domain, "fault_test")
    try:
        w = Wire(ros)
        ready = ros.spin_until(lambda: all(p.get_subscription_count() >= 1 for p in w.pub.values())
                               and len(w.diag) >= 2 and w.params.services_are_ready(), 60.0)
        assert ready, "nodes did not come up:\n" + "\n".join(p.log() for p in nodes)
        yield w
    finally:
        ros.close()


@pytest.fixture(scope="module")
def reference(card):
    return Stylizer.from_model(card, max_side=MAX_SIDE)


def photo(w=64, h=48, i=0):
    return real_photos((h, w))[i]


# -- parameters ----------------------------------------------------------------------------------

def test_a_superscript_digit_style_is_rejected_and_the_node_lives(wire, nodes, reference):
    result = wire.set_atomically(style="\u00b2")
    assert not result.successful and "unknown style" in result.reason
    assert nodes[0].alive()
    rgb = photo()
    out = wire.serve("raw", rgb_to_image(rgb, wire.header("after_superscript")))
    assert np.abs(image_to_rgb(out).astype(int) - reference.stylize(rgb, style=0).image).max() <= 3


def test_a_rejected_update_changes_nothing(wire, reference):
    rgb = photo()
    result = wire.set_atomically(strength=0.25, style="nope")
    assert not result.successful and "nope" in result.reason
    assert wire.get("strength").double_value == 1.0
    out = image_to_rgb(wire.serve("raw", rgb_to_image(rgb, wire.header("after_rejected"))))
    # the node still runs at strength 1.0, as its parameter says (it ran at 0.25 before the fix)
    assert np.abs(out.astype(int) - reference.stylize(rgb, strength=1.0).image).max() <= 3
    assert np.abs(out.astype(int) - reference.stylize(rgb, strength=0.25).image).max() > 10

    assert wire.set_atomically(strength=0.25, style="style2:0.5,style1:0.5").successful
    try:
        out = image_to_rgb(wire.serve("raw", rgb_to_image(rgb, wire.header("after_accepted"))))
        expected = reference.stylize(rgb, style="style1:0.5,style2:0.5", strength=0.25).image
        assert np.abs(out.astype(int) - expected).max() <= 3
    finally:
        assert wire.set_atomically(strength=1.0, style="").successful


def test_a_bad_style_at_start_up_is_one_line_and_exit_2(env, card):
    proc = NodeProcess(STYLIZE, ["-r", "__node:=bad_style", "-p", f"model:={card}", "-p", "style:=\u00b2"], env)
    try:
        code = proc.proc.wait(60)
        log = proc.log()
    finally:
        proc.stop()
        proc.cleanup()
    assert code == 2, log
    assert "unknown style" in log and "Traceback" not in log


# -- fuzz ----------------------------------------------------------------------------------------

def _jpeg_with_size(jpg, width, height):
    sof = jpg.index(b"\xff\xc0")
    return jpg[:sof + 5] + struct.pack(">HH", height, width) + jpg[sof + 9:]


def _png_with_size(png, width, height):
    ihdr = b"IHDR" + struct.pack(">II", width, height) + png[24:29]
    return png[:12] + ihdr + struct.pack(">I", zlib.crc32(ihdr)) + png[33:]


def _raw_kinds(rng, good, big):
    """Each kind of malformed Image (issue 14 and the earlier fault runs), varied by ``rng``."""
    h, w = good.shape[:2]
    data = good.tobytes()

    def image(**fields):
        m = rgb_to_image(good, Header())
        for k, v in fields.items():
            setattr(m, k, v)
        return m

    n = int(rng.integers(1, len(data)))
    return {
        "unknown encoding": image(encoding=rng.choice(["bayer_rggb99", "", "RGB8", "rgb8 ", "32FC1"])),
        "data shorter than step*height": image(data=byte_array(data[:n])),
        "step smaller than a row": image(step=int(rng.integers(0, w * 3))),
        "zero size": image(width=0, height=int(rng.integers(0, 10)), step=0, data=byte_array(b"")),
        "odd width yuv422": image(encoding=rng.choice(["yuv422", "yuyv"]), width=w - 1, step=2 * (w - 1)),
        "absurd size": image(width=int(rng.integers(20000, 2**31)), height=int(rng.integers(20000, 2**31)),
                             step=int(rng.integers(60000, 2**32 - 1))),
        "step * height overflows": image(step=2**32 - 1, height=2**31),
        "mono16 with an odd step": image(encoding="mono16", step=2 * w - 1, data=byte_array(data[:(2 * w - 1) * h])),
        "above max_input_pixels": rgb_to_image(big, Header()),
    }


def _compressed_kinds(rng, good, big):
    """Each kind of malformed CompressedImage, varied by ``rng``."""
    jpg = bytes(rgb_to_compressed(good, Header(), "jpeg").data)
    png = bytes(rgb_to_compressed(good, Header(), "png").data)
    h, w = good.shape[:2]
    sos = jpg.index(b"\xff\xda")
    cut = int(rng.integers(sos + 20, len(jpg) - 8))
    flipped = bytearray(jpg)
    for pos in rng.integers(sos + 20, len(jpg) - 4, size=8):
        flipped[pos] ^= int(rng.integers(1, 256))
    png_cut = int(rng.integers(40, len(png) - 12))
    png_flipped = bytearray(png)
    png_flipped[int(rng.integers(png.index(b"IDAT") + 4, len(png) - 16))] ^= 0xFF

    def msg(data, fmt="jpeg"):
        return CompressedImage(format=fmt, data=byte_array(bytes(data)))

    return {
        "garbage bytes": msg(rng.integers(0, 256, size=int(rng.integers(1, 2000)), dtype=np.uint8).tobytes()),
        "empty": msg(b""),
        "truncated jpeg": msg(jpg[:cut]),
        "truncated jpeg, EOI re-appended": msg(jpg[:cut] + b"\xff\xd9"),
        "jpeg header taller than its scan": msg(_jpeg_with_size(jpg, w, h + int(rng.integers(16, 64)))),
        "jpeg header shorter than its scan": msg(_jpeg_with_size(jpg, w, h - int(rng.integers(16, 40)))),
        "jpeg scan corrupted": msg(flipped),
        "unsupported codec": msg(jpg, rng.choice(["theora", "bmp", "h264"])),
        "compressedDepth": msg(png, "16UC1; compressedDepth png"),
        "truncated png": msg(png[:png_cut]),
        "truncated png, IEND re-appended": msg(png[:png_cut] + png[-12:], "png"),
        "png data corrupted": msg(png_flipped, "png"),
        "png bomb header": msg(_png_with_size(png, 30000, 20000), "png"),
        "above max_input_pixels": rgb_to_compressed(big, Header(), rng.choice(["jpeg", "png"])),
    }


def _fuzz_messages(transport, count, seed=0):
    """``count`` malformed messages cycling through every kind; each is checked here to be one the
    decoders reject (a random corruption that happens to decode cleanly is drawn again)."""
    rng = np.random.default_rng(seed)
    good = photo()
    big = cv2.resize(good, (176, 128))   # 22,528 px > MAX_INPUT_PIXELS
    make = _raw_kinds if transport == "raw" else _compressed_kinds
    kinds = list(make(rng, good, big))
    out = []
    while len(out) < count:
        kind = kinds[len(out) % len(kinds)]
        for _ in range(20):
            m = make(rng, good, big)[kind]
            try:
                (compressed_to_rgb if transport == "compressed" else image_to_rgb)(m, MAX_INPUT_PIXELS)
            except ImageFormatError:
                break
        else:
            raise AssertionError(f"{kind}: no variant the decoder rejects")
        out.append((kind, m))
    return kinds, out


def _rss_mib(proc):
    for line in open(f"/proc/{proc.proc.pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


@pytest.mark.parametrize("transport", ["raw", "compressed"])
def test_fuzz_malformed_messages_interleaved_with_valid_frames(wire, nodes, transport):
    proc = nodes[0] if transport == "raw" else nodes[1]
    good = photo()
    kinds, messages = _fuzz_messages(transport, FUZZ_PER_TRANSPORT)

    def valid(i):
        header = wire.header(f"valid {i}")
        return rgb_to_image(good, header) if transport == "raw" else \
            rgb_to_compressed(good, header, "jpeg" if i % 2 else "png")

    wire.serve(transport, valid(-1))                     # warm: the first inference allocates
    wire.ros.spin_for(0.6)                               # diagnostics (every 0.2 s) catch up
    before = wire.counts(transport)
    rss_before = _rss_mib(proc)
    served = 0
    t0 = time.monotonic()
    for i, (kind, msg) in enumerate(messages):
        msg.header = wire.header(f"bad {kind}")
        wire.pub[transport].publish(msg)
        time.sleep(0.003)                                # a fast camera's pace, not a flood: most are decoded
        if (i + 1) % VALID_EVERY == 0:
            wire.serve(transport, valid(i))
            served += 1
    sent = len(messages) + served + 1
    settled = wire.ros.spin_until(
        lambda: wire.counts(transport)["frames_in"] - before["frames_in"] >= sent - 1, 20.0)
    wire.ros.spin_for(0.5)
    after = wire.counts(transport)
    rss_after = _rss_mib(proc)
    delta = {k: after[k] - before[k] for k in after}
    print(f"\nfuzz {transport}: {len(messages)} malformed of {len(kinds)} kinds + {served} valid in "
          f"{time.monotonic() - t0:.1f} s; counted {delta}; RSS {rss_before:.0f} -> {rss_after:.0f} MiB")

    assert proc.alive(), proc.log()[-3000:]
    assert settled, (delta, sent)
    assert delta["frames_in"] == len(messages) + served    # reliable: every message reached the node
    assert delta["errors"] == 0 and delta["frames_out"] == served
    assert delta["malformed"] + delta["dropped"] == len(messages)
    assert delta["malformed"] >= 0.5 * len(messages)        # decoded and counted, not just dropped
    out = wire.out[transport]
    assert not any(m.header.frame_id.startswith("bad") for m in out)   # nothing malformed published
    assert rss_after - rss_before < 64, (rss_before, rss_after)
    assert "Traceback" not in proc.log()
