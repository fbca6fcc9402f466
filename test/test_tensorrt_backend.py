"""TensorRT backend: clear BackendUnavailable without TensorRT/CUDA; on a GPU, cache + run + rebuild."""

from __future__ import annotations

import importlib.util
import time

import numpy as np
import pytest
import torch

from joint_perception.runtime.base import BackendUnavailable

HAVE_TRT = importlib.util.find_spec("tensorrt") is not None
SIZE = (64, 80)


@pytest.mark.skipif(
    HAVE_TRT, reason="checks the fallback without TensorRT; tensorrt is installed here"
)
def test_unavailable_with_reason_and_no_cache_written(tiny_model_dir, tmp_path):
    from joint_perception.runtime.tensorrt_backend import TensorRTBackend

    with pytest.raises(BackendUnavailable, match="tensorrt: TensorRT is not installed") as info:
        TensorRTBackend(tiny_model_dir, precision="fp16", cache_dir=tmp_path / "engines")
    assert "onnxruntime/torch" in str(info.value)  # says what to use instead
    assert not (tmp_path / "engines").exists()


def test_unknown_precision_is_refused_before_anything_else(tiny_model_dir, tmp_path):
    from joint_perception.runtime.factory import create_backend
    from joint_perception.runtime.tensorrt_backend import TensorRTBackend

    with pytest.raises(ValueError, match="precision must be one of"):
        TensorRTBackend(tiny_model_dir, precision="bf16", cache_dir=tmp_path)
    with pytest.raises(ValueError, match="unknown backend option"):
        create_backend(tiny_model_dir, backend="onnxruntime", precison="fp16")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.perf
@pytest.mark.skipif(
    HAVE_TRT, reason="checks the fallback without TensorRT; tensorrt is installed here"
)
def test_unavailable_within_2_s(tiny_model_dir, tmp_path):
    from joint_perception.runtime.tensorrt_backend import TensorRTBackend

    t0 = time.monotonic()
    with pytest.raises(BackendUnavailable):
        TensorRTBackend(tiny_model_dir, precision="fp16", cache_dir=tmp_path / "engines")
    assert time.monotonic() - t0 < 2.0


# ------------------------------------------------------------ needs TensorRT 10 and a CUDA GPU


@pytest.fixture
def trt_gpu():
    pytest.importorskip("tensorrt", reason="TensorRT is not installed here")
    if not torch.cuda.is_available():
        pytest.skip("TensorRT is installed but no CUDA GPU is visible")


def test_build_on_miss_then_cache_hit_matches_onnxruntime(trt_gpu, tiny_model_dir, tmp_path):
    from joint_perception.runtime.onnxruntime_backend import OnnxRuntimeBackend
    from joint_perception.runtime.tensorrt_backend import TensorRTBackend

    x = np.random.default_rng(0).random((2, 3, *SIZE), dtype=np.float32)
    first = TensorRTBackend(tiny_model_dir, precision="fp32", cache_dir=tmp_path)
    assert "built now: no engine" in first.reason
    got = first.predict(x)
    ref = OnnxRuntimeBackend(tiny_model_dir, providers=["CPUExecutionProvider"]).predict(x)
    np.testing.assert_allclose(got.depth, ref.depth, rtol=1e-2, atol=1e-3)
    assert (got.labels == ref.labels).mean() > 0.99
    second = TensorRTBackend(tiny_model_dir, precision="fp32", cache_dir=tmp_path)
    assert second.reason.endswith(f"(cached {first.key.filename})")
    np.testing.assert_array_equal(second.predict(x).depth, got.depth)


def test_corrupt_engine_is_rebuilt_and_int8_needs_calibration(trt_gpu, tiny_model_dir, tmp_path):
    from joint_perception.runtime.engine_cache import EngineCache
    from joint_perception.runtime.tensorrt_backend import TensorRTBackend

    b = TensorRTBackend(tiny_model_dir, precision="fp16", cache_dir=tmp_path)
    path = EngineCache(tmp_path).paths(b.key)[0]
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    rebuilt = TensorRTBackend(tiny_model_dir, precision="fp16", cache_dir=tmp_path)
    assert "built now: SHA mismatch: corrupt" in rebuilt.reason
    with pytest.raises(BackendUnavailable, match="INT8 needs calibration frames"):
        TensorRTBackend(tiny_model_dir, precision="int8", cache_dir=tmp_path)
    with pytest.raises(BackendUnavailable, match="building is disabled"):
        TensorRTBackend(
            tiny_model_dir, precision="fp32", cache_dir=tmp_path / "empty", build_on_miss=False
        )


@pytest.mark.skipif(
    HAVE_TRT and torch.cuda.is_available(), reason="checks the fallback chain without TensorRT/CUDA"
)
def test_factory_falls_back_from_tensorrt_with_reason(tiny_model_dir, tmp_path):
    from joint_perception.runtime.factory import create_backend

    backend = create_backend(
        tiny_model_dir,
        backend="tensorrt",
        fallback=True,
        precision="best",
        latency_target_ms=8.0,
        cache_dir=str(tmp_path),
    )
    assert backend.name in ("torch", "onnxruntime")
    assert backend.reason.startswith("backend=tensorrt: tensorrt")
    with pytest.raises(BackendUnavailable, match="backend 'tensorrt' unavailable"):
        create_backend(tiny_model_dir, backend="tensorrt", fallback=False)
    assert not any(tmp_path.iterdir())
