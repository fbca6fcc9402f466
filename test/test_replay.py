"""replay end to end on the real 3-frame sqlite3 bag: output bag, summary, stamps, metrics."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytestmark = pytest.mark.ros
pytest.importorskip("rclpy")

from ros_node_harness import export_tiny_model  # noqa: E402

from joint_perception.evaluation.replay import header_from_cdr, load_input_frames, main  # noqa: E402


def test_header_from_cdr_reads_stamp_and_frame_id():
    from rclpy.serialization import serialize_message
    from sensor_msgs.msg import Image

    msg = Image()
    msg.header.stamp.sec, msg.header.stamp.nanosec = 12, 345
    msg.header.frame_id = "cam"
    assert header_from_cdr(serialize_message(msg)) == (12_000_000_345, "cam")
    with pytest.raises(ValueError, match="not a CDR buffer"):
        header_from_cdr(b"\x01\x02")


def test_replay_end_to_end(shared_data, tmp_path):
    bag = shared_data / "bags" / "nyuv2_test3_sqlite3"
    model = export_tiny_model(tmp_path / "model")
    frames, _ = load_input_frames(bag)
    assert len(frames) == 3 and all(f.info_cdr is not None for f in frames)
    out = tmp_path / "out"
    code = main(["--bag", str(bag), "--out", str(out), "--rate", "1", "--no-progress",
                 "--set", f"model:={model}", "--set", "backend:=onnxruntime"])
    assert code == 0
    s = json.loads((out / "summary.json").read_text())
    assert (s["frames_in"], s["frames_out"], s["frames_dropped"]) == (3, 3, 0)
    assert s["input_stamps_ns"] == sorted(f.stamp_ns for f in frames)
    assert set(s["outputs"]) == {"depth/image", "depth/camera_info", "segmentation/labels",
                                 "segmentation/color", "normals/image", "points"}
    for o in s["outputs"].values():
        assert o["count"] == 3 and o["stamps_match_input"]
        assert o["frame_ids"] == ["camera_color_optical_frame"]
    assert 0 < s["latency_ms"]["p50_ms"] <= s["latency_ms"]["max_ms"]
    assert {"inference", "preprocess", "postprocess", "decode", "publish"} <= set(
        s["stages_p50_ms"])
    m = s["depth_metrics"]
    assert m["frames"] == 3 and m["abs_rel"] > 0 and 0 <= m["delta1"] <= m["delta2"] <= 1
    assert (out / "summary.md").read_text().startswith("# Replay of")
    assert s["node_exit_code"] == 0

    from rosbags.highlevel import AnyReader

    with AnyReader([out / "output"]) as reader:
        topics = {c.topic for c in reader.connections}
        assert "/replay/depth/image" in topics and "/replay/points" in topics
        depth_conn = [c for c in reader.connections if c.topic == "/replay/depth/image"]
        stamps = []
        for conn, _, raw in reader.messages(connections=depth_conn):
            msg = reader.deserialize(raw, conn.msgtype)
            assert msg.encoding == "32FC1" and (msg.height, msg.width) == (480, 640)
            d = np.frombuffer(msg.data, np.float32)
            assert np.isfinite(d).any()
            stamps.append(msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec)
    assert sorted(stamps) == s["input_stamps_ns"]
