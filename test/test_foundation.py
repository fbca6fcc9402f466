"""Tests for the small shared foundations: atomic writes, metadata, loopback DDS env."""

import json
import os

import pytest

from joint_perception.io_utils import atomic_write_json, atomic_write_text, sha256_file
from joint_perception.metadata import ModelMetadata, load_metadata, verify_onnx_hash
from joint_perception.ros.local_dds import loopback_environment, profile_path


def test_atomic_write_leaves_old_file_on_error(tmp_path):
    p = tmp_path / "a.json"
    atomic_write_json(p, {"x": 1})
    with pytest.raises(ValueError):
        atomic_write_json(p, {"x": float("nan")})  # NaN refused mid-write
    assert json.loads(p.read_text()) == {"x": 1}
    assert [f.name for f in tmp_path.iterdir()] == ["a.json"]  # no temp files left


def test_metadata_roundtrip_and_validation(tmp_path):
    m = ModelMetadata(
        "realtime", ["depth", "segmentation"], 240, 320, class_names=["wall", "floor"]
    )
    m.save(tmp_path / "metadata.json")
    back = load_metadata(tmp_path)
    assert back == m and back.num_classes == 2
    with pytest.raises(ValueError, match="class_names"):
        ModelMetadata("x", ["segmentation"], 10, 10)
    with pytest.raises(ValueError, match="unknown task"):
        ModelMetadata("x", ["flow"], 10, 10)
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "metadata.json").write_text("{")
    with pytest.raises(ValueError, match="bad/metadata.json"):
        load_metadata(tmp_path / "bad")


def test_onnx_hash_mismatch_is_refused(tmp_path):
    f = tmp_path / "model.onnx"
    atomic_write_text(f, "graph")
    m = ModelMetadata("x", ["depth"], 4, 4, onnx_sha256=sha256_file(f))
    assert verify_onnx_hash(m, f) == m.onnx_sha256
    atomic_write_text(f, "other graph")
    with pytest.raises(ValueError, match="does not match"):
        verify_onnx_hash(m, f)


def test_loopback_environment_keeps_library_path():
    env = loopback_environment(domain_id=123, base={"LD_LIBRARY_PATH": "/x", "PATH": "/bin"})
    assert env["ROS_DOMAIN_ID"] == "123"
    assert env["ROS_AUTOMATIC_DISCOVERY_RANGE"] == "LOCALHOST"
    assert env["LD_LIBRARY_PATH"] == "/x"
    xml = profile_path().read_text()
    assert "<useBuiltinTransports>false</useBuiltinTransports>" in xml
    assert "127.0.0.1" in xml and "SHM" in xml
    assert os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] == "LOCALHOST"  # conftest applied it


def test_atomic_write_uses_normal_file_mode(tmp_path):
    old = os.umask(0o022)
    try:
        p = atomic_write_text(tmp_path / "m.txt", "x")
    finally:
        os.umask(old)
    assert p.stat().st_mode & 0o777 == 0o644
