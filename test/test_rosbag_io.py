"""rosbag2 reading/writing: exact round trips on both storages, the real NYUv2 bags."""

from __future__ import annotations

import json

import numpy as np
import pytest

from joint_perception.data.rosbag_io import (
    CAMERA_INFO,
    IMAGE,
    POINTCLOUD2,
    BagTopics,
    BagWriter,
    bag_info,
    bag_sha256,
    camera_info_msg,
    image_msg,
    iter_frames,
    pointcloud2_msg,
)
from joint_perception.data.synthetic_bag import main, make_synthetic_bag

K = np.array([[50.0, 0.0, 15.5], [0.0, 51.0, 11.5], [0.0, 0.0, 1.0]])
T0 = 1_700_000_000_000_000_000


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_write_read_round_trip_exact(tmp_path, storage):
    rng = np.random.default_rng(0)
    rgbs = [rng.integers(0, 256, (24, 32, 3), dtype=np.uint8) for _ in range(3)]
    mm = rng.integers(0, 5000, (24, 32), dtype=np.uint16)
    mm[0, 0] = 0
    metres = np.full((24, 32), 1.25, dtype=np.float32)
    metres[1, 1] = np.nan
    t = BagTopics()
    out = tmp_path / "bag"
    with BagWriter(out, storage=storage) as w:
        for i, rgb in enumerate(rgbs):
            s = T0 + i * 500_000_000
            # colour before its camera_info, depth last: pairing must wait for both
            w.write(t.color, IMAGE, image_msg(s, "cam", rgb, "rgb8"), s)
            w.write(t.color_info, CAMERA_INFO, camera_info_msg(s, "cam", K, 24, 32), s)
            if i == 0:
                w.write(t.depth, IMAGE, image_msg(s, "cam", mm, "16UC1"), s + 1)
            elif i == 1:
                w.write(t.depth, IMAGE, image_msg(s, "cam", metres, "32FC1"), s + 1)
        assert not out.exists()  # atomic: nothing at the destination until the end
    frames = list(iter_frames(out))
    assert [f.stamp_ns for f in frames] == [T0, T0 + 500_000_000, T0 + 1_000_000_000]
    for f, rgb in zip(frames, rgbs):
        np.testing.assert_array_equal(f.rgb, rgb)
        np.testing.assert_array_equal(f.K, K)
        assert f.frame_id == "cam" and f.distortion_model == "plumb_bob"
    expected = mm.astype(np.float32) / 1000
    expected[0, 0] = np.nan
    np.testing.assert_array_equal(frames[0].depth, expected)
    assert frames[0].depth[0, 1] == np.float32(mm[0, 1]) / 1000
    np.testing.assert_array_equal(frames[1].depth, metres)
    assert frames[2].depth is None
    info = bag_info(out)
    assert info["storage"] == storage and info["message_count"] == 8
    assert info["topics"][t.color] == {"type": IMAGE, "count": 3}
    assert info["duration_s"] == pytest.approx(1.0, abs=1e-6)


def test_writer_refuses_and_cleans_up(tmp_path):
    out = tmp_path / "bag"
    with pytest.raises(RuntimeError, match="boom"), BagWriter(out) as w:
        w.write("/x", IMAGE, image_msg(T0, "c", np.zeros((2, 2), np.uint16), "16UC1"), T0)
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []  # no bag, no temporary left over
    with BagWriter(out) as w:
        w.write("/x", IMAGE, image_msg(T0, "c", np.zeros((2, 2), np.uint16), "16UC1"), T0)
        with pytest.raises(ValueError, match="has type"):
            w.write("/x", CAMERA_INFO, camera_info_msg(T0, "c", K, 2, 2), T0)
    with pytest.raises(FileExistsError):
        BagWriter(out).__enter__()
    with pytest.raises(ValueError, match="storage"):
        BagWriter(tmp_path / "b2", storage="db3")


def test_pointcloud_message_round_trip(tmp_path):
    pts = np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4)  # x, y, z, label-as-float
    fields = [("x", 0, 7, 1), ("y", 4, 7, 1), ("z", 8, 7, 1), ("label", 12, 7, 1)]
    msg = pointcloud2_msg(T0, "cam", 2, 3, fields, 16, pts.tobytes())
    with BagWriter(tmp_path / "pc", storage="sqlite3") as w:
        w.write("/points", POINTCLOUD2, msg, T0)
    from rosbags.rosbag2 import Reader

    from joint_perception.data.rosbag_io import typestore

    with Reader(tmp_path / "pc") as r:
        ((conn, _, raw),) = list(r.messages())
        back = typestore().deserialize_cdr(raw, conn.msgtype)
    assert back.row_step == 48 and [f.name for f in back.fields] == ["x", "y", "z", "label"]
    np.testing.assert_array_equal(np.frombuffer(back.data, np.float32).reshape(2, 3, 4), pts)
    with pytest.raises(ValueError, match="expected point_step"):
        pointcloud2_msg(T0, "cam", 2, 3, fields, 16, b"\0" * 10)


def test_bad_bag_paths(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope"):
        list(iter_frames(tmp_path / "nope"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="metadata.yaml"):
        bag_info(tmp_path / "empty")
    out = tmp_path / "bag"
    with BagWriter(out) as w:
        w.write("/other", IMAGE, image_msg(T0, "c", np.zeros((2, 2), np.uint16), "16UC1"), T0)
    with pytest.raises(ValueError, match="/camera/color/image_raw not in the bag"):
        list(iter_frames(out))


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_synthetic_bag_round_trip(tmp_path, storage):
    out = make_synthetic_bag(tmp_path / "syn", frames=2, height=48, width=64, storage=storage)
    info = bag_info(out)
    assert info["storage"] == storage and len(info["topics"]) == 5
    assert all(v["count"] == 2 for v in info["topics"].values())
    raw = list(iter_frames(out))
    jpg = list(iter_frames(out, use_compressed=True))
    assert [f.stamp_ns for f in raw] == [T0, T0 + 500_000_000]
    from joint_perception.data.synthetic import SyntheticScenes

    s = SyntheticScenes(2, 48, 64, seed=0)[1]
    np.testing.assert_array_equal(raw[1].rgb, s["rgb"])
    np.testing.assert_array_equal(raw[1].K, s["K"])
    np.testing.assert_allclose(raw[1].depth, s["depth"], atol=0.0005 + 1e-6)
    assert raw[1].frame_id == "camera_color_optical_frame"
    assert np.abs(jpg[1].rgb.astype(int) - s["rgb"]).mean() < 8  # JPEG q90
    assert bag_sha256(out) == bag_sha256(out) and len(bag_sha256(out)) == 64


def test_make_synthetic_bag_cli(tmp_path, capsys):
    assert main(["--out", str(tmp_path / "b"), "--frames", "1", "--height", "24", "--width", "32",
                 "--storage", "sqlite3"]) == 0  # fmt: skip
    assert "wrote 1 frames" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["--out", str(tmp_path / "b"), "--frames", "1"])  # exists


def _png(path):
    import cv2

    return cv2.imread(str(path), cv2.IMREAD_UNCHANGED)


@pytest.mark.parametrize(("bag", "n"), [("nyuv2_test3_sqlite3", 3), ("nyuv2_test10_mcap", 10)])
def test_real_nyuv2_bags(shared_data, bag, n):
    from joint_perception.nyuv2_classes import NYU_K

    manifest = json.loads((shared_data / "nyuv2_test/manifest.json").read_text())
    indices = [f["index1449"] for f in manifest["frames"]]
    if n == 3:
        indices = [1, 433, 464]
    frames = list(iter_frames(shared_data / "bags" / bag))
    assert len(frames) == n
    for f, idx in zip(frames, indices):
        assert f.rgb.shape == (480, 640, 3) and f.frame_id == "camera_color_optical_frame"
        np.testing.assert_allclose(f.K, NYU_K)
        mm = _png(shared_data / f"nyuv2_test/depth_mm/{idx:04d}.png")
        expected = np.where(mm > 0, mm.astype(np.float32) / 1000, np.float32(np.nan))
        np.testing.assert_array_equal(f.depth, expected)
        rgb = _png(shared_data / f"nyuv2_test/rgb/{idx:04d}.png")[..., ::-1]
        np.testing.assert_array_equal(f.rgb, rgb)
    assert bag_info(shared_data / "bags" / bag)["topics"]["/camera/color/image_raw"]["count"] == n
