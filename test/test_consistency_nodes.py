"""stereo_stylize_node and stylize_node's temporal option end to end over real DDS.

Node processes on one side, this test process on the other: pairs in, pairs out with the input
headers; frames without a partner dropped and counted; malformed messages cost their pair only;
consistent mode paints the two eyes of the real motorcycle pair (scikit-image) alike; the temporal
parameter switches live and its stage shows in the diagnostics.
"""
import time

import cv2
import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy", reason="rclpy (ROS 2) is not installed")

from _core_helpers import tiny_bundle  # noqa: E402
from _ros_helpers import RosTestNode, node_processes, random_domain_id, ros_env  # noqa: E402
from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.parameter_client import AsyncParameterClient  # noqa: E402
from sensor_msgs.msg import CameraInfo, Image  # noqa: E402
from std_msgs.msg import Header  # noqa: E402

from muon_ad_ros.evaluation.metrics import stereo_difference  # noqa: E402
from muon_ad_ros.nodes.conversions import image_to_rgb, rgb_to_image, stamp_to_ns  # noqa: E402

pytestmark = pytest.mark.timeout(300, method="thread")
STEREO = "muon_ad_ros.nodes.stereo_stylize_node"
STYLIZE = "muon_ad_ros.nodes.stylize_node"


@pytest.fixture(scope="module")
def pair():
    """The motorcycle pair at a third of its size, with its ground-truth disparity."""
    from skimage import data

    left, right, disp = data.stereo_motorcycle()
    w, h = left.shape[1] // 3, left.shape[0] // 3
    small = [cv2.resize(x, (w, h), interpolation=cv2.INTER_AREA) for x in (left, right)]
    d = cv2.resize(np.where(np.isfinite(disp), disp, np.nan), (w, h), interpolation=cv2.INTER_NEAREST) / 3.0
    return small[0], small[1], d.astype(np.float32)


@pytest.fixture(scope="module")
def domain():
    return random_domain_id()


@pytest.fixture(scope="module")
def nodes(domain, tmp_path_factory):
    card = tiny_bundle(tmp_path_factory.mktemp("bundle"))[1]
    common = ["-p", f"model:={card}", "-p", "diagnostics_period:=0.25", "-p", "qos_reliability:=reliable"]
    specs = [(STEREO, [*common, "-p", "publish_side_by_side:=true", "-p", "slop:=0.01"]),
             (STYLIZE, [*common, "-p", "max_side:=64"])]
    with node_processes(*specs, env=ros_env(domain)) as procs:
        yield procs


class Wire:
    def __init__(self, ros):
        n = ros.node
        self.ros = ros
        self.pubs = [n.create_publisher(Image, f"/{eye}/image_raw", 10) for eye in ("left", "right")]
        self.pub_info = n.create_publisher(CameraInfo, "/left/camera_info", 10)
        self.pub_mono = n.create_publisher(Image, "/image_raw", 10)
        self.got = {}
        for topic, kind in (("/left/image_stylized", Image), ("/right/image_stylized", Image),
                            ("/side_by_side/image_stylized", Image), ("/left/image_stylized/camera_info", CameraInfo),
                            ("/image_stylized", Image), ("/diagnostics", DiagnosticArray)):
            self.got[topic] = []
            n.create_subscription(kind, topic, lambda m, t=topic: self.got[t].append(m), 50)
        self.stereo_params = AsyncParameterClient(n, "stereo_stylize_node")
        self.mono_params = AsyncParameterClient(n, "stylize_node")
        self._t = time.time_ns()

    def header(self, frame_id, offset_ns=0, advance=True):
        if advance:
            self._t += 100_000_000  # 10 Hz camera clock
        h = Header()
        h.stamp.sec, h.stamp.nanosec = divmod(self._t + offset_ns, 1_000_000_000)
        h.frame_id = frame_id
        return h

    def outputs(self, topic, stamp_ns):
        return [m for m in self.got[topic] if stamp_to_ns(m.header.stamp) == stamp_ns]

    def send_pair(self, left, right, expect=True, timeout=30.0, right_offset_ns=3_000_000):
        hl = self.header("left_cam")
        hr = self.header("right_cam", right_offset_ns, advance=False)
        ml = left if isinstance(left, Image) else rgb_to_image(left, hl)
        mr = rgb_to_image(right, hr)
        ml.header = hl
        self.pubs[0].publish(ml)
        self.pubs[1].publish(mr)
        if not expect:
            return hl, hr
        ok = self.ros.spin_until(lambda: self.outputs("/right/image_stylized", stamp_to_ns(hr.stamp))
                                 and self.outputs("/left/image_stylized", stamp_to_ns(hl.stamp)), timeout)
        assert ok, "no stylized pair came back"
        return hl, hr

    def diag(self, name):
        for msg in reversed(self.got["/diagnostics"]):
            for status in msg.status:
                if status.name.startswith(f"/{name}:"):
                    return {kv.key: kv.value for kv in status.values}
        return {}

    def set(self, client, **values):
        future = client.set_parameters([Parameter(k, value=v) for k, v in values.items()])
        return self.ros.wait_future(future).results


@pytest.fixture(scope="module")
def wire(domain, nodes):
    ros = RosTestNode(domain)
    try:
        w = Wire(ros)
        ready = ros.spin_until(lambda: all(p.get_subscription_count() >= 1 for p in w.pubs)
                               and w.pub_mono.get_subscription_count() >= 1
                               and w.diag("stereo_stylize_node") and w.diag("stylize_node"), 180.0)
        assert ready, "nodes did not come up:\n" + "\n".join(p.log() for p in nodes)
        yield w
    finally:
        ros.close()


def test_pairs_in_pairs_out_with_input_headers(wire, pair):
    left, right, _ = pair
    for _ in range(3):
        hl, hr = wire.send_pair(left, right)
        out_l = wire.outputs("/left/image_stylized", stamp_to_ns(hl.stamp))[0]
        out_r = wire.outputs("/right/image_stylized", stamp_to_ns(hr.stamp))[0]
        assert (out_l.header.frame_id, out_r.header.frame_id) == ("left_cam", "right_cam")
        assert (out_l.width, out_l.height) == (left.shape[1], left.shape[0]) == (out_r.width, out_r.height)
    assert wire.ros.spin_until(lambda: wire.outputs("/side_by_side/image_stylized", stamp_to_ns(hl.stamp)), 5.0)
    sbs = image_to_rgb(wire.outputs("/side_by_side/image_stylized", stamp_to_ns(hl.stamp))[0])
    assert np.array_equal(sbs, np.concatenate([image_to_rgb(out_l), image_to_rgb(out_r)], axis=1))


def test_consistent_mode_paints_both_eyes_alike(wire, pair):
    left, right, gt = pair
    diffs = {}
    for mode in ("independent", "consistent"):
        assert wire.set(wire.stereo_params, mode=mode)[0].successful
        hl, hr = wire.send_pair(left, right)
        out_l = image_to_rgb(wire.outputs("/left/image_stylized", stamp_to_ns(hl.stamp))[0])
        out_r = image_to_rgb(wire.outputs("/right/image_stylized", stamp_to_ns(hr.stamp))[0])
        diffs[mode] = stereo_difference(out_l, out_r, gt)[0]
    assert diffs["consistent"] <= 0.6 * diffs["independent"], diffs
    assert not wire.set(wire.stereo_params, mode="anaglyph")[0].successful


def test_unmatched_frames_are_dropped_and_counted(wire, pair):
    left, right, _ = pair
    before = int(wire.diag("stereo_stylize_node").get("unmatched_left", "0"))
    for _ in range(3):  # left frames whose right partner never comes
        wire.pubs[0].publish(rgb_to_image(left, wire.header("left_cam")))
    hl, hr = wire.send_pair(left, right, right_offset_ns=50_000_000, expect=False)  # beyond slop: no pair
    wire.ros.spin_for(1.0)
    assert not wire.outputs("/right/image_stylized", stamp_to_ns(hr.stamp))
    wire.send_pair(left, right)  # a good pair: everything older is dead and counted
    assert wire.ros.spin_until(
        lambda: int(wire.diag("stereo_stylize_node").get("unmatched_left", "0")) >= before + 4
        and int(wire.diag("stereo_stylize_node").get("unmatched_right", "0")) >= 1, 10.0), \
        wire.diag("stereo_stylize_node")


def test_bad_messages_cost_their_pair_only(wire, pair):
    left, right, _ = pair

    def malformed():
        return int(wire.diag("stereo_stylize_node").get("malformed", "0"))

    bad = rgb_to_image(left, Header())
    bad.data = bad.data[: len(bad.data) // 2]  # truncated
    odd = rgb_to_image(left, Header())
    odd.encoding = "weird"
    for msg in (bad, odd, left[:-8]):  # the last: the two eyes differ in size
        before = malformed()
        wire.send_pair(msg, right, expect=False)
        assert wire.ros.spin_until(lambda: malformed() == before + 1, 10.0), wire.diag("stereo_stylize_node")
    wire.send_pair(left, right)  # still alive


def test_temporal_switches_live_and_its_cost_is_reported(wire):
    from skimage import data

    photo = cv2.resize(data.astronaut(), (256, 256), interpolation=cv2.INTER_AREA)
    assert wire.diag("stylize_node")["temporal"] == "off"
    assert wire.set(wire.mono_params, temporal=True)[0].successful
    assert not wire.set(wire.mono_params, temporal="yes")[0].successful
    for k in range(6):
        h = wire.header("cam")
        wire.pub_mono.publish(rgb_to_image(np.ascontiguousarray(photo[k * 2:k * 2 + 96, k * 3:k * 3 + 128]), h))
        assert wire.ros.spin_until(lambda: wire.outputs("/image_stylized", stamp_to_ns(h.stamp)), 20.0)
    assert wire.ros.spin_until(lambda: wire.diag("stylize_node").get("temporal") == "on"
                               and wire.diag("stylize_node").get("temporal_p50_ms", "nan") != "nan", 5.0)
    assert float(wire.diag("stylize_node")["temporal_p50_ms"]) > 0
