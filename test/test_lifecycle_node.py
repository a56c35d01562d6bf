"""stylize_lifecycle_node over DDS: the managed variant of stylize_node, driven through the
standard lifecycle services (what `ros2 lifecycle set` and launch_ros's LifecycleNode call)."""
import pytest

from _ros_helpers import NodeProcess, RosTestNode, random_domain_id, ros_env

pytest.importorskip("rclpy", reason="rclpy (ROS 2) is not installed")
pytestmark = pytest.mark.timeout(240, method="thread")


class Lifecycle:
    """The standard lifecycle services of one node, called so that a lost *response* cannot fail a
    test: ``service_is_ready()`` only sees the request direction matched, and a server that answers
    before its response writer has matched the client's reader drops the answer (a DDS discovery
    race that shows up now and then on a loaded machine). The node's state tells what happened."""

    TARGET = {"configure": "inactive", "activate": "active", "deactivate": "inactive", "cleanup": "unconfigured"}

    def __init__(self, ros: RosTestNode, node: str):
        from lifecycle_msgs.srv import ChangeState, GetState

        self.ros = ros
        self.get = ros.node.create_client(GetState, f"{node}/get_state")
        self.change = ros.node.create_client(ChangeState, f"{node}/change_state")

    def ready(self) -> bool:
        return self.get.service_is_ready() and self.change.service_is_ready()

    def _call(self, client, request, timeout: float):
        future = client.call_async(request)
        self.ros.executor.spin_until_future_complete(future, timeout_sec=timeout)
        return future.result() if future.done() else None

    def state(self, attempts: int = 6) -> str:
        from lifecycle_msgs.srv import GetState

        for _ in range(attempts):  # get_state is idempotent: ask again when an answer is lost
            answer = self._call(self.get, GetState.Request(), 10)
            if answer is not None:
                return answer.current_state.label
        raise AssertionError(f"no get_state answer in {attempts} tries")

    def set(self, transition: str, attempts: int = 4) -> bool:
        from lifecycle_msgs.msg import Transition
        from lifecycle_msgs.srv import ChangeState

        ids = {"configure": Transition.TRANSITION_CONFIGURE, "activate": Transition.TRANSITION_ACTIVATE,
               "deactivate": Transition.TRANSITION_DEACTIVATE, "cleanup": Transition.TRANSITION_CLEANUP}
        request = ChangeState.Request(transition=Transition(id=ids[transition]))
        start = self.state()
        for _ in range(attempts):
            answer = self._call(self.change, request, 30)
            if answer is not None:
                return answer.success
            now = self.state()  # the answer was lost: did the transition happen?
            if now == self.TARGET[transition] and now != start:
                return True
            assert now == start, f"{transition}: no answer, and the node went from {start} to {now}"
        raise AssertionError(f"no change_state answer in {attempts} tries")


def frames_during(ros, got, seconds):
    before = len(got)
    ros.spin_for(seconds)
    return len(got) - before


def test_configure_loads_activate_subscribes_deactivate_stops():
    from sensor_msgs.msg import Image

    domain = random_domain_id()
    env = ros_env(domain)
    source = NodeProcess("muon_ad_ros.nodes.image_source_node",
                         ["-p", "rate:=10.0", "-p", "width:=160", "-p", "height:=120"], env)
    node = NodeProcess("muon_ad_ros.nodes.stylize_lifecycle_node", [], env)
    bad = NodeProcess("muon_ad_ros.nodes.stylize_lifecycle_node",
                      ["-r", "__node:=bad_stylize", "-r", "image_stylized:=bad_out", "-p", "model:=no_such_model"], env)
    ros = RosTestNode(domain, "lifecycle_check")
    try:
        got = []
        ros.node.create_subscription(Image, "image_stylized", got.append, 10)
        life, bad_life = Lifecycle(ros, "/stylize_node"), Lifecycle(ros, "/bad_stylize")
        assert ros.spin_until(lambda: life.ready() and bad_life.ready(), 60), node.log() + bad.log()
        assert life.state() == "unconfigured"
        assert ros.node.count_publishers("image_stylized") == 0       # nothing before configure

        # a missing model: configure fails with one line, the node stays unconfigured and alive
        assert not bad_life.set("configure")
        assert bad_life.state() == "unconfigured" and bad.alive()
        assert "configure failed" in bad.log() and "Traceback" not in bad.log(), bad.log()

        assert life.set("configure") and life.state() == "inactive"
        assert ros.spin_until(lambda: ros.node.count_publishers("image_stylized") == 1, 10)
        assert frames_during(ros, got, 2.0) == 0                       # configured, not subscribed

        assert life.set("activate") and life.state() == "active"
        assert ros.spin_until(lambda: len(got) >= 3, 60), node.log()
        assert (got[-1].width, got[-1].height) == (160, 120)

        assert life.set("deactivate") and life.state() == "inactive"
        ros.spin_for(1.0)                                              # a frame in flight may still land
        assert frames_during(ros, got, 2.0) == 0
        assert life.set("cleanup") and life.state() == "unconfigured"
        assert ros.spin_until(lambda: ros.node.count_publishers("image_stylized") == 0, 10)
        assert life.set("configure") and life.set("activate")          # configurable again after cleanup
        assert ros.spin_until(lambda: frames_during(ros, got, 0.5) > 0, 60), node.log()
    finally:
        ros.close()
        codes = [p.stop() for p in (node, bad, source)]
        log = node.log()
        for p in (node, bad, source):
            p.cleanup()
    assert codes == [0, 0, 0] and "Traceback" not in log, log
