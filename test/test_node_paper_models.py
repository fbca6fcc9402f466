"""Each paper network runs in the real perception_node by changing only the ``model`` parameter.

Light configurations (ResNet-18 backbones, small widths) exported at 64x80: what is tested is
that the node publishes every output the model's tasks give, with the input header, not accuracy.
"""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.ros

rclpy = pytest.importorskip("rclpy")

from ros_node_harness import NodeHarness, camera_info_msg, image_msg, nyu_frame  # noqa: E402

from joint_perception.image_codec import decode_image  # noqa: E402

STAMP = 1_700_000_123_000_000_000

# name -> (build kwargs of a light variant, tasks)
PAPER_MODELS = {
    "pap": ({"backbone": "resnet18", "channels": 32}, ("depth", "segmentation", "normals")),
    "cinet": (
        {
            "backbone": "resnet18",
            "channels": 64,
            "key_channels": 16,
            "decoder_channels": (32, 32, 16),
        },
        ("depth", "segmentation"),
    ),
    "sosd": ({"backbone": "resnet18"}, ("depth", "segmentation")),
    "mscnn_crf": ({"crf_iterations": 2}, ("depth", "segmentation")),
}


@pytest.fixture(scope="module")
def frame(shared_data):
    return nyu_frame(shared_data, 1)


@pytest.mark.parametrize("name", sorted(PAPER_MODELS))
def test_paper_model_runs_in_the_node(name, frame, tmp_path):
    import torch

    from joint_perception.export.onnx_export import export_onnx
    from joint_perception.models import build_model

    kwargs, tasks = PAPER_MODELS[name]
    torch.manual_seed(0)
    model = build_model(name, **kwargs)
    _, meta = export_onnx(model, tmp_path, input_size=(64, 80))
    assert meta.architecture == name and tuple(meta.tasks) == tasks

    outputs = ["depth/image", "segmentation/labels", "points"]
    if "normals" in tasks:
        outputs.append("normals/image")
    rgb, K = frame
    h = NodeHarness(tmp_path, outputs=tuple(outputs))
    try:
        h.send(image_msg(rgb, STAMP), camera_info_msg(K, 480, 640, STAMP))
        out = h.wait_outputs(STAMP, timeout=60.0)
    finally:
        h.close()
    for topic, msg in out.items():
        assert (msg.header.stamp.sec, msg.header.stamp.nanosec) == divmod(STAMP, 10**9), topic
    depth_msg = out["depth/image"]
    depth = decode_image(
        depth_msg.encoding, depth_msg.height, depth_msg.width, depth_msg.step, depth_msg.data
    )
    assert depth_msg.encoding == "32FC1" and depth.shape == (480, 640)
    assert np.isfinite(depth).any()
    assert out["segmentation/labels"].encoding == "mono8"
    assert (out["points"].height, out["points"].width) == (480, 640)
    if "normals" in tasks:
        n = out["normals/image"]
        normals = decode_image(n.encoding, n.height, n.width, n.step, n.data)
        ok = np.isfinite(normals).all(axis=2)
        np.testing.assert_allclose(np.linalg.norm(normals[ok], axis=1), 1.0, atol=1e-3)
