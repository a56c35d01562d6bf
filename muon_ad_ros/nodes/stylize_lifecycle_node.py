"""stylize_lifecycle_node: stylize_node as a managed (lifecycle) node.

Same parameters, topics and behaviour as stylize_node (the same class and methods), started in
the *unconfigured* state so a system manager decides when the model is loaded and when frames flow:

    configure   check the parameters, load the model, create the publishers, start the worker
    activate    subscribe to the camera: frames flow
    deactivate  unsubscribe (publishers and model stay: activating again is immediate)
    cleanup     stop the worker, drop the publishers and the model (back to unconfigured)
    shutdown    both, from any state

A configure that fails (a bad parameter, a missing or corrupt model) logs one line and returns
FAILURE: the node stays unconfigured and alive, and can be reconfigured after a parameter change.

    stylize_lifecycle_node --ros-args --params-file config/stylize.yaml
    ros2 lifecycle set /stylize_node configure && ros2 lifecycle set /stylize_node activate
"""
from __future__ import annotations

import sys

from rclpy.lifecycle import LifecycleNodeMixin, LifecycleState, TransitionCallbackReturn

from muon_ad_ros.core.errors import MuonAdError
from muon_ad_ros.nodes.shutdown import spin_main
from muon_ad_ros.nodes.stylize_node import PARAMS, StylizeNode


class StylizeLifecycleNode(LifecycleNodeMixin, StylizeNode):
    """StylizeNode whose configure / activate steps run from lifecycle transitions."""

    def __init__(self, **node_kwargs):
        StylizeNode.__init__(self, managed=True, **node_kwargs)
        LifecycleNodeMixin.__init__(self, enable_communication_interface=True)

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            self.configure_stylizer()
        except MuonAdError as exc:
            self.get_logger().error(f"configure failed: {exc}")
            self.release_stylizer()
            return TransitionCallbackReturn.FAILURE
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.start_input()
        return super().on_activate(state)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.stop_input()
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.release_stylizer()
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.release_stylizer()
        return TransitionCallbackReturn.SUCCESS


def main(args=None):
    return spin_main("stylize_lifecycle_node", StylizeLifecycleNode, __doc__, PARAMS, args)


if __name__ == "__main__":
    sys.exit(main())
