"""The managed perception node driven through its lifecycle services (what ``ros2 lifecycle set``
calls): configure loads the model (FAILURE with the reason on a bad one), activate subscribes
the camera while an output has a subscriber, deactivate unsubscribes, cleanup releases the
model; parameters read by configure can change only while unconfigured."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.ros

rclpy = pytest.importorskip("rclpy")

import numpy as np  # noqa: E402
from lifecycle_msgs.msg import State, Transition  # noqa: E402
from lifecycle_msgs.srv import ChangeState, GetState  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from ros_node_harness import NodeHarness, camera_info_msg, export_tiny_model, image_msg  # noqa: E402

from joint_perception.ros.diagnostics import status_values  # noqa: E402

K = np.array([[100.0, 0, 79.5], [0, 100.0, 59.5], [0, 0, 1]])
RGB = np.random.default_rng(0).integers(0, 256, (120, 160, 3), dtype=np.uint8)
STAMP = 1_700_000_000_000_000_000


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return export_tiny_model(tmp_path_factory.mktemp("model"))


class LifecycleClient:
    """``ros2 lifecycle`` in a few lines: ChangeState / GetState service calls."""

    def __init__(self, h: NodeHarness):
        fqn = h.node.get_fully_qualified_name()
        self.h = h
        self.change = h.client.create_client(ChangeState, f"{fqn}/change_state")
        self.get = h.client.create_client(GetState, f"{fqn}/get_state")
        assert self.change.wait_for_service(10) and self.get.wait_for_service(10)

    def _call(self, client, request):
        future = client.call_async(request)
        self.h.wait_for(future.done, 60.0, f"{client.srv_name} reply")
        return future.result()

    def set(self, transition_id: int) -> bool:
        req = ChangeState.Request(transition=Transition(id=transition_id))
        return self._call(self.change, req).success

    def state(self) -> int:
        return self._call(self.get, GetState.Request()).current_state.id


def _diag(h, predicate, what):
    h.wait_for(lambda: any(predicate(d.status[0]) for d in list(h.diagnostics)[-3:]), 10.0, what)


def test_configure_activate_deactivate_cleanup(model_dir):
    h = NodeHarness(model_dir, {"autostart": False}, outputs=("depth/image",), autostart=False)
    try:
        lc = LifecycleClient(h)
        assert lc.state() == State.PRIMARY_STATE_UNCONFIGURED
        assert h.node.backend is None and h.node.publishers_by_topic == {}
        _diag(h, lambda s: s.level == b"\x00" and "unconfigured" in s.message, "unconfigured OK")

        assert lc.set(Transition.TRANSITION_CONFIGURE)
        assert lc.state() == State.PRIMARY_STATE_INACTIVE
        inner = h.node.backend.inner
        assert inner.session is not None and "depth/image" in h.node.publishers_by_topic
        h.wait_for(lambda: h.subs[0].get_publisher_count() > 0, 5.0, "output topic exists")
        assert not h.node.camera_subscribed  # inactive: the camera stays unsubscribed

        assert lc.set(Transition.TRANSITION_ACTIVATE)
        assert lc.state() == State.PRIMARY_STATE_ACTIVE
        h.wait_for(lambda: h.pub_image.get_subscription_count() > 0, 5.0, "camera subscribed")
        h.send(image_msg(RGB, STAMP), camera_info_msg(K, 120, 160, STAMP))
        h.wait_outputs(STAMP)

        assert lc.set(Transition.TRANSITION_DEACTIVATE)
        assert lc.state() == State.PRIMARY_STATE_INACTIVE
        h.wait_for(lambda: h.pub_image.get_subscription_count() == 0, 5.0, "camera unsubscribed")
        assert h.node._worker is None

        assert lc.set(Transition.TRANSITION_CLEANUP)
        assert lc.state() == State.PRIMARY_STATE_UNCONFIGURED
        assert h.node.backend is None and inner.session is None  # the model is released
        h.wait_for(lambda: h.subs[0].get_publisher_count() == 0, 5.0, "outputs destroyed")

        # and it comes back
        assert lc.set(Transition.TRANSITION_CONFIGURE) and lc.set(Transition.TRANSITION_ACTIVATE)
        h.send(image_msg(RGB, STAMP + 1), camera_info_msg(K, 120, 160, STAMP + 1))
        h.wait_outputs(STAMP + 1)
    finally:
        h.close()


def test_configure_fails_with_the_reason_and_succeeds_after_the_fix(model_dir, tmp_path):
    missing = tmp_path / "no_such_model"
    h = NodeHarness(missing, {"autostart": False}, outputs=("depth/image",), autostart=False)
    try:
        lc = LifecycleClient(h)
        assert not lc.set(Transition.TRANSITION_CONFIGURE)  # FAILURE
        assert lc.state() == State.PRIMARY_STATE_UNCONFIGURED
        assert "no_such_model" in h.node.configure_error and h.node.backend is None
        _diag(
            h,
            lambda s: s.level == b"\x02" and "configure failed" in s.message,
            "ERROR diagnostics naming the failure",
        )
        # a parameter read by configure can be set while unconfigured ...
        assert h.node.set_parameters([Parameter("model", value=str(model_dir))])[0].successful
        assert lc.set(Transition.TRANSITION_CONFIGURE)
        assert h.node.configure_error == ""
        # ... and not while configured
        result = h.node.set_parameters([Parameter("model", value=str(missing))])[0]
        assert not result.successful and "fixed while the node is inactive" in result.reason
        # run-time parameters still change
        assert h.node.set_parameters([Parameter("points_decimation", value=2)])[0].successful
        assert lc.set(Transition.TRANSITION_ACTIVATE)
        _diag(
            h,
            lambda s: status_values(s).get("lifecycle_state") == "active",
            "diagnostics of the active node",
        )
    finally:
        h.close()


def test_invalid_parameter_values_fail_configure_not_the_process(model_dir):
    h = NodeHarness(
        model_dir,
        {"autostart": False, "min_depth": 5.0, "max_depth": 2.0},
        outputs=("depth/image",),
        autostart=False,
    )
    try:
        assert h.node.autostart() is False
        assert "min_depth: 5.0 must be smaller than max_depth 2.0" in h.node.configure_error
        assert h.node.lifecycle_state == "unconfigured"
    finally:
        h.close()
