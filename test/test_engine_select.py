"""``precision: best``: the most precise cached engine that passed the gate and meets the
latency target, read from real cache directories (no TensorRT needed)."""

from __future__ import annotations

import dataclasses
import hashlib

import pytest

from joint_perception.export.accuracy_gate import GateResult
from joint_perception.metadata import ModelMetadata
from joint_perception.runtime.engine_cache import EngineCache, EngineKey
from joint_perception.runtime.engine_select import (
    BEST_FALLBACK,
    DEFAULT_LATENCY_TARGET_MS,
    PRECISION_CHOICES,
    choose_precision,
    latency_target_ms,
)

SHA = hashlib.sha256(b"model.onnx").hexdigest()


def key_for(precision: str, trt_version: str = "10.3.0") -> EngineKey:
    return EngineKey(SHA, trt_version, "NVIDIA Orin", "8.7", precision, (1, 3, 120, 160))


def store(cache, precision, gate=None, latency_ms=None, trt_version="10.3.0"):
    """An engine as export_engine leaves it: gate result and latency in the sidecar."""
    meta = {}
    if gate is not None:
        meta["accuracy_gate"] = (
            {"skipped": "no validation frames"}
            if gate == "skipped"
            else GateResult(gate, {"depth_abs_rel": 0.001}, {}, []).to_dict()
        )
    if latency_ms is not None:
        meta["latency"] = {"median_ms": latency_ms, "p90_ms": latency_ms, "frames": 10}
    return cache.store(key_for(precision, trt_version), precision.encode() * 100, meta)


@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_a_named_precision_is_taken_as_it_is(tmp_path, precision):
    cache = EngineCache(tmp_path)
    store(cache, "fp32", gate=True, latency_ms=1.0)  # ignored: only best looks at the cache
    choice = choose_precision(precision, cache, key_for, 20.0)
    assert (choice.precision, choice.reason, choice.entry) == (
        precision,
        f"precision {precision}",
        None,
    )


def test_best_takes_the_most_precise_gated_engine_within_the_target(tmp_path):
    cache = EngineCache(tmp_path)
    store(cache, "fp32", gate=True, latency_ms=31.2)
    fp16 = store(cache, "fp16", gate=True, latency_ms=6.5)
    store(cache, "int8", gate=True, latency_ms=3.9)
    choice = choose_precision("best", cache, key_for, 20.0)
    assert choice.precision == "fp16" and choice.entry.engine_path == fp16.engine_path
    assert choice.reason == "best: fp16 (gated, 6.50 ms <= 20 ms); fp32: 31.20 ms > 20 ms"
    assert choose_precision("best", cache, key_for, 40.0).precision == "fp32"
    assert choose_precision("best", cache, key_for, 5.0).precision == "int8"


def test_best_skips_engines_without_a_passed_gate_or_a_latency(tmp_path):
    cache = EngineCache(tmp_path)
    store(cache, "fp32", gate=False, latency_ms=2.0)
    store(cache, "fp16", gate="skipped")
    store(cache, "int8", gate=True, latency_ms=1.5)
    choice = choose_precision("best", cache, key_for, 20.0)
    assert choice.precision == "int8"
    assert "fp32: accuracy gate failed" in choice.reason
    assert "fp16: accuracy gate skipped (no validation frames)" in choice.reason
    store(cache, "int8", gate=True)  # re-stored without a measured latency
    assert "int8: no measured latency" in choose_precision("best", cache, key_for, 20.0).reason


def test_best_takes_the_fastest_gated_engine_when_none_meets_the_target(tmp_path):
    cache = EngineCache(tmp_path)
    store(cache, "fp32", gate=True, latency_ms=48.0)
    store(cache, "fp16", gate=True, latency_ms=25.0)
    choice = choose_precision("best", cache, key_for, 20.0)
    assert choice.precision == "fp16" and choice.entry is not None
    assert choice.reason.startswith("best: fp16 (gated; the fastest, none is within 20 ms)")


def test_best_falls_back_to_fp16_without_gated_engines_for_this_tensorrt(tmp_path):
    cache = EngineCache(tmp_path)
    assert choose_precision("best", cache, key_for, 20.0).precision == BEST_FALLBACK == "fp16"
    # gated engines of another TensorRT (JetPack upgraded) are stale, not candidates
    store(cache, "fp32", gate=True, latency_ms=2.0, trt_version="10.13.3")
    choice = choose_precision("best", cache, key_for, 20.0)
    assert choice.precision == "fp16" and choice.entry is None
    assert "no cached engine is gated and timed" in choice.reason
    assert "built for TensorRT 10.13.3 not 10.3.0" in choice.reason
    assert "export_engine --precision best" in choice.reason


def test_choices_and_bad_arguments(tmp_path):
    assert PRECISION_CHOICES == ("fp32", "fp16", "int8", "best")
    with pytest.raises(ValueError, match="precision must be one of"):
        choose_precision("bf16", EngineCache(tmp_path), key_for, 20.0)
    with pytest.raises(ValueError, match="latency target"):
        choose_precision("best", EngineCache(tmp_path), key_for, 0.0)


def test_latency_target_override_then_model_then_default():
    meta = ModelMetadata("realtime", ["depth"], 120, 160)
    assert latency_target_ms(meta) == DEFAULT_LATENCY_TARGET_MS == 20.0
    tuned = dataclasses.replace(meta, extra={"latency_target_ms": 8})
    assert latency_target_ms(tuned) == 8.0
    assert latency_target_ms(tuned, 12.5) == 12.5
    assert latency_target_ms(dataclasses.replace(meta, extra={"latency_target_ms": "8"})) == 20.0
