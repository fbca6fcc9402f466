"""Engine cache: key naming, store/lookup, and every invalidation rule (no TensorRT needed)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging

import pytest

from joint_perception.runtime.engine_cache import EngineCache, EngineKey

SHA = hashlib.sha256(b"model.onnx bytes").hexdigest()
KEY = EngineKey(SHA, "10.7.0", "NVIDIA Orin", "8.7", "fp16", (1, 3, 240, 320))
ENGINE = bytes(range(256)) * 40  # 10 KiB stand-in for a serialised engine


def test_key_name_is_stable_and_hash_of_canonical_json():
    canon = json.dumps(KEY.to_dict(), sort_keys=True, separators=(",", ":"))
    digest = hashlib.sha256(canon.encode()).hexdigest()[:24]
    assert KEY.digest == digest
    assert KEY.filename == f"fp16-240x320-{digest}.engine"
    # equal keys (shape given as list) -> same name; any field changed -> another name
    same = EngineKey(SHA, "10.7.0", "NVIDIA Orin", "8.7", "fp16", [1, 3, 240, 320])
    assert same.filename == KEY.filename
    names = {KEY.filename}
    for field, value in [
        ("trt_version", "10.3.0"),
        ("gpu_name", "NVIDIA RTX 4090"),
        ("compute_capability", "8.9"),
        ("precision", "int8"),
        ("input_shape", (1, 3, 480, 640)),
        ("onnx_sha256", "0" * 64),
    ]:
        names.add(dataclasses.replace(KEY, **{field: value}).filename)
    assert len(names) == 7
    assert EngineKey.from_dict(json.loads(json.dumps(KEY.to_dict()))) == KEY


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"precision": "fp8"}, "precision"),
        ({"onnx_sha256": "abc"}, "onnx_sha256"),
        ({"input_shape": (1, 3, 0, 320)}, "input_shape"),
    ],
)
def test_key_rejects_bad_fields(kwargs, match):
    with pytest.raises(ValueError, match=match):
        dataclasses.replace(KEY, **kwargs)


def test_store_then_lookup_hits_with_recorded_size_and_hash(tmp_path):
    cache = EngineCache(tmp_path / "engines")
    assert cache.lookup(KEY).reason == "no engine"
    entry = cache.store(KEY, ENGINE, {"build_seconds": 12.5})
    found = cache.lookup(KEY)
    assert found.hit and found.reason == "hit"
    assert found.entry.read_bytes() == ENGINE
    side = json.loads(entry.sidecar_path.read_text())
    assert side["size"] == len(ENGINE)
    assert side["sha256"] == hashlib.sha256(ENGINE).hexdigest()
    assert side["key"]["trt_version"] == "10.7.0"
    assert side["metadata"] == {"build_seconds": 12.5}
    # atomic writes leave no temporary files behind
    assert sorted(p.name for p in (tmp_path / "engines").iterdir()) == sorted(
        [KEY.filename, KEY.filename.replace(".engine", ".json")]
    )
    assert [e.key for e in cache.entries()] == [KEY]


def test_stale_tensorrt_version_is_a_miss_naming_both_versions(tmp_path, caplog):
    cache = EngineCache(tmp_path)
    old = dataclasses.replace(KEY, trt_version="10.3.0")
    cache.store(old, ENGINE)
    with caplog.at_level(logging.INFO, logger="joint_perception.runtime.engine_cache"):
        found = cache.lookup(KEY)
    assert not found.hit
    assert "no engine" in found.reason
    assert "built for TensorRT 10.3.0 not 10.7.0" in found.reason
    assert "built for TensorRT 10.3.0 not 10.7.0" in caplog.text


def test_other_gpu_and_other_shape_are_misses(tmp_path):
    cache = EngineCache(tmp_path)
    cache.store(
        dataclasses.replace(KEY, gpu_name="NVIDIA GeForce RTX 3060", compute_capability="8.6"),
        ENGINE,
    )
    reason = cache.lookup(KEY).reason
    assert "GPU NVIDIA GeForce RTX 3060 (sm 8.6) not NVIDIA Orin (sm 8.7)" in reason
    cache2 = EngineCache(tmp_path / "b")
    cache2.store(dataclasses.replace(KEY, input_shape=(1, 3, 480, 640)), ENGINE)
    assert "input [1, 3, 480, 640] not [1, 3, 240, 320]" in cache2.lookup(KEY).reason


def test_truncated_engine_is_invalid(tmp_path):
    cache = EngineCache(tmp_path)
    entry = cache.store(KEY, ENGINE)
    entry.engine_path.write_bytes(ENGINE[:1000])
    found = cache.lookup(KEY)
    assert not found.hit
    assert found.reason == f"size mismatch: truncated (1000 bytes, expected {len(ENGINE)})"
    assert cache.entries() == []
    assert cache.invalid_files()[0][1].startswith("size mismatch")


def test_corrupt_engine_same_size_is_sha_mismatch(tmp_path):
    cache = EngineCache(tmp_path)
    entry = cache.store(KEY, ENGINE)
    data = bytearray(ENGINE)
    data[5000] ^= 0xFF
    entry.engine_path.write_bytes(bytes(data))
    assert cache.lookup(KEY).reason == "SHA mismatch: corrupt"


def test_sidecar_key_mismatch_and_missing_sidecar(tmp_path):
    cache = EngineCache(tmp_path)
    entry = cache.store(KEY, ENGINE)
    side = json.loads(entry.sidecar_path.read_text())
    side["key"]["precision"] = "fp32"  # sidecar edited / copied from another build
    entry.sidecar_path.write_text(json.dumps(side))
    assert cache.lookup(KEY).reason == "sidecar mismatch: built for fp32 not fp16"
    entry.sidecar_path.write_text("{not json")
    assert cache.lookup(KEY).reason.startswith("sidecar unreadable")
    entry.sidecar_path.unlink()
    assert cache.lookup(KEY).reason == "sidecar missing (interrupted store?)"


def test_invalidate_update_metadata_and_empty_engine(tmp_path):
    cache = EngineCache(tmp_path)
    cache.store(KEY, ENGINE, {"a": 1})
    assert cache.update_metadata(KEY, accuracy_gate={"passed": True}) == {
        "a": 1,
        "accuracy_gate": {"passed": True},
    }
    assert cache.lookup(KEY).entry.metadata["accuracy_gate"] == {"passed": True}
    assert cache.invalidate(KEY, "test") is True
    assert cache.invalidate(KEY) is False
    assert cache.lookup(KEY).reason == "no engine"
    with pytest.raises(KeyError, match="no valid cached engine"):
        cache.update_metadata(KEY, x=1)
    with pytest.raises(ValueError, match="empty engine"):
        cache.store(KEY, b"")
