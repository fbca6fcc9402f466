"""Accuracy gate: hand-computed metrics, Q/DQ INT8 passes, an FP16-overflowing graph fails.

Also covers :mod:`joint_perception.export.quantize` (the ONNX Runtime Q/DQ fallback runs here).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import logging

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from joint_perception.export.accuracy_gate import (
    EngineRefused,
    GateConfig,
    GateThresholds,
    compare,
    enforce,
    reference_backend,
    run_gate,
)
from joint_perception.export.calibration import CalibrationFrames
from joint_perception.export.quantize import count_qdq, quantize_qdq
from joint_perception.io_utils import usual_file_mode
from joint_perception.metadata import ModelMetadata, load_metadata
from joint_perception.runtime.base import Backend, Prediction
from joint_perception.runtime.onnxruntime_backend import OnnxRuntimeBackend

SIZE = (64, 80)


@pytest.fixture(scope="module")
def frames(shared_data):
    return CalibrationFrames.from_bag(
        shared_data / "bags" / "nyuv2_test10_mcap", SIZE, max_frames=10
    )


def _unhashed(meta: ModelMetadata) -> ModelMetadata:
    """Metadata for a derived graph (Q/DQ, edited) whose hash differs from the exported one."""
    return dataclasses.replace(meta, onnx_sha256="")


class FixedBackend(Backend):
    """Returns a fixed prediction: a backend with known outputs for hand-computed metrics."""

    name = "fixed"

    def __init__(self, pred: Prediction):
        super().__init__(
            ModelMetadata(
                "realtime", ["depth", "segmentation", "normals"], 1, 2, class_names=["a", "b", "c"]
            )
        )
        self.pred = pred

    def predict(self, batch):
        return self.pred


def test_metrics_hand_computed():
    ref = Prediction(
        depth=np.array([[[1.0, 2.0]]], np.float32),
        labels=np.array([[[1, 2]]], np.int32),
        confidence=np.array([[[0.5, 0.5]]], np.float32),
        normals=np.array([[[[0, 0, -1], [0, 0, -1]]]], np.float32),
    )
    cand = Prediction(
        depth=np.array([[[1.1, 2.0]]], np.float32),
        labels=np.array([[[1, 3]]], np.int32),
        confidence=np.array([[[0.5, 0.5]]], np.float32),
        normals=np.array([[[[0, 0, -1], [1, 0, 0]]]], np.float32),
    )
    frames = np.zeros((2, 3, 1, 2), np.float32)
    res = compare(
        FixedBackend(cand), FixedBackend(ref), frames, GateThresholds(0.1, 0.4, 50.0, 0.0)
    )
    assert res.metrics["depth_abs_rel"] == pytest.approx((0.1 / 1.0 + 0.0) / 2, abs=1e-6)
    assert res.metrics["label_agreement"] == pytest.approx(0.5)
    assert res.metrics["normal_angle_deg"] == pytest.approx(45.0)  # 0 and 90 degrees
    assert res.metrics["nonfinite_fraction"] == 0.0
    assert res.metrics["frames"] == 2.0
    assert res.passed and res.failures == []
    strict = compare(
        FixedBackend(cand), FixedBackend(ref), frames, GateThresholds(0.01, 0.9, 1.0, 0.0)
    )
    assert not strict.passed
    assert strict.failures == [
        "depth_abs_rel 0.05 > 0.01",
        "label_agreement 0.5 < 0.9",
        "normal_angle_deg 45 > 1",
    ]


def test_nan_output_fails_even_with_loose_thresholds():
    ref = Prediction(depth=np.ones((1, 2, 2), np.float32))
    cand = Prediction(depth=np.array([[[1.0, np.nan], [np.inf, 1.0]]], np.float32))
    res = compare(
        FixedBackend(cand),
        FixedBackend(ref),
        np.zeros((1, 3, 1, 2), np.float32),
        GateThresholds(1.0, 0.0, 180.0, 0.0),
    )
    assert res.metrics["nonfinite_fraction"] == 0.5
    assert res.metrics["depth_abs_rel"] == 0.0  # over the finite pixels
    assert not res.passed
    assert any("non-finite" in f for f in res.failures)
    json.dumps(res.to_dict(), allow_nan=False)


def test_qdq_int8_model_runs_in_ort_and_passes_int8_gate(tiny_model_dir, frames, tmp_path, caplog):
    meta = load_metadata(tiny_model_dir)
    src = tmp_path / "src"
    src.mkdir()
    (src / "model.onnx").write_bytes((tiny_model_dir / "model.onnx").read_bytes())
    # ONNX Runtime, given a path, writes "<stem>-inferred.onnx" beside the model: a directory
    # in that place makes any such write fail, so passing means nothing is written there
    (src / "model-inferred.onnx").mkdir()
    with caplog.at_level(logging.WARNING):
        qdq = quantize_qdq(src / "model.onnx", tmp_path / "model.qdq.onnx", frames)
        logging.warning("a root warning after quantising")
    assert sorted(p.name for p in src.iterdir()) == ["model-inferred.onnx", "model.onnx"]
    assert qdq.stat().st_mode & 0o777 == usual_file_mode()  # not mkstemp's 0600
    # ONNX Runtime's pre-processing advice (root logger, every call) is dropped; the filter
    # is gone afterwards
    messages = [r.getMessage() for r in caplog.records]
    assert not any(m.startswith("Please consider") for m in messages)
    assert "a root warning after quantising" in messages
    q, dq = count_qdq(qdq)
    assert q > 10 and dq > q  # weights have DQ only; activations Q and DQ
    model = onnx.load(str(qdq))
    zero_points = [init for init in model.graph.initializer if init.name.endswith("_zero_point")]
    assert zero_points and all(
        not onnx.numpy_helper.to_array(z).any() for z in zero_points
    )  # symmetric
    cand = OnnxRuntimeBackend(qdq, metadata=_unhashed(meta))
    res = run_gate(
        cand, tiny_model_dir / "model.onnx", frames.images, GateConfig.for_precision("int8")
    )
    assert res.passed, res.failures
    assert 0 < res.metrics["depth_abs_rel"] < 0.05  # really quantised, and close
    assert res.metrics["normal_angle_deg"] > 0
    assert res.metrics["frames"] == 10.0


def _overflow_in_fp16(src, dst):
    """Edit the graph: depth -> *1e5 -> cast fp16 -> cast fp32 -> /1e5 (inf where depth > 0.65 m).

    Exactly what happens when an engine runs a layer with large activations in FP16.
    """
    model = onnx.load(str(src))
    g = model.graph
    for node in g.node:
        node.output[:] = ["depth_raw" if o == "depth" else o for o in node.output]
    g.initializer.append(helper.make_tensor("big", TensorProto.FLOAT, [], [1e5]))
    g.node.extend(
        [
            helper.make_node("Mul", ["depth_raw", "big"], ["depth_scaled"]),
            helper.make_node("Cast", ["depth_scaled"], ["depth_h"], to=TensorProto.FLOAT16),
            helper.make_node("Cast", ["depth_h"], ["depth_f"], to=TensorProto.FLOAT),
            helper.make_node("Div", ["depth_f", "big"], ["depth"]),
        ]
    )
    onnx.checker.check_model(model)
    onnx.save(model, str(dst))
    return dst


def test_fp16_overflow_graph_fails_and_refuse_policy_raises(
    tiny_model_dir, frames, tmp_path, caplog
):
    meta = load_metadata(tiny_model_dir)
    broken = _overflow_in_fp16(tiny_model_dir / "model.onnx", tmp_path / "broken.onnx")
    ref = reference_backend(tiny_model_dir / "model.onnx")
    res = run_gate(
        OnnxRuntimeBackend(broken, metadata=_unhashed(meta)),
        ref,
        frames.images[:3],
        GateConfig.for_precision("fp16"),
    )
    assert not res.passed
    assert res.metrics["nonfinite_fraction"] > 0
    assert res.metrics["label_agreement"] == 1.0  # labels untouched: only depth overflowed
    with pytest.raises(EngineRefused, match="non-finite") as info:
        enforce(res, "refuse", what="fp16 engine")
    assert info.value.result is res
    with caplog.at_level(logging.WARNING):
        enforce(res, "warn")
    assert "accuracy gate (policy warn)" in caplog.text
    record = res.to_dict()
    json.dumps(record, allow_nan=False)
    assert record["passed"] is False


def test_same_model_passes_fp32_gate_and_config_validation(tiny_model_dir, frames):
    cand = OnnxRuntimeBackend(tiny_model_dir)
    res = run_gate(
        cand, tiny_model_dir / "model.onnx", frames.images[:2], GateConfig.for_precision("fp32")
    )
    assert res.passed
    assert res.metrics["depth_abs_rel"] == 0.0 and res.metrics["label_agreement"] == 1.0
    enforce(res, "refuse")  # no exception
    with pytest.raises(ValueError, match="policy"):
        GateConfig(policy="ignore")
    with pytest.raises(ValueError, match="precision"):
        GateConfig.for_precision("fp8")
    with pytest.raises(ValueError, match="gate frames"):
        compare(cand, cand, np.zeros((0, 3, 64, 80), np.float32), GateThresholds())


def test_quantize_refuses_wrong_size_and_logs_random(tiny_model_dir, tmp_path, caplog):
    with pytest.raises(ValueError, match="expects 64x80 input"):
        quantize_qdq(
            tiny_model_dir / "model.onnx",
            tmp_path / "q.onnx",
            CalibrationFrames.random((32, 32), n=2, allow_random=True),
        )
    assert not (tmp_path / "q.onnx").exists()
    if importlib.util.find_spec("modelopt") is None:  # method="modelopt" must not fall back
        with pytest.raises(ImportError):
            quantize_qdq(
                tiny_model_dir / "model.onnx",
                tmp_path / "q.onnx",
                CalibrationFrames.random(SIZE, n=2, allow_random=True),
                method="modelopt",
            )
        assert "RANDOM calibration data" in caplog.text
    assert list(tmp_path.iterdir()) == []  # no temporary files left
