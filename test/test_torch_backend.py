"""Torch backend: CPU matches ONNX Runtime fp32; CUDA requested without CUDA -> BackendUnavailable."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from joint_perception.export.calibration import CalibrationFrames
from joint_perception.runtime.base import BackendUnavailable
from joint_perception.runtime.onnxruntime_backend import OnnxRuntimeBackend
from joint_perception.runtime.torch_backend import TorchBackend

SIZE = (64, 80)


@pytest.fixture(scope="module")
def frames(shared_data):
    return CalibrationFrames.from_bag(shared_data / "bags" / "nyuv2_test3_sqlite3", SIZE).images


def _assert_close(a, b, atol):
    np.testing.assert_allclose(a.depth, b.depth, atol=atol, rtol=0)
    np.testing.assert_allclose(a.confidence, b.confidence, atol=atol, rtol=0)
    np.testing.assert_allclose(a.normals, b.normals, atol=atol, rtol=0)


def test_cpu_matches_onnxruntime(tiny_model_dir, frames):
    backend = TorchBackend(tiny_model_dir, device="cpu")
    ort = OnnxRuntimeBackend(tiny_model_dir, providers=["CPUExecutionProvider"])
    assert backend.name == "torch" and backend.device == "cpu"
    assert "fp32" in backend.reason and "PyTorch" in backend.reason
    got, ref = backend.predict(frames), ort.predict(frames)
    assert got.depth.shape == (3, 64, 80) and got.normals.shape == (3, 64, 80, 3)
    assert got.labels.dtype == np.int32
    _assert_close(got, ref, atol=1e-4)
    assert (got.labels == ref.labels).mean() > 0.999  # argmax ties may flip a pixel
    np.testing.assert_allclose(np.linalg.norm(got.normals, axis=-1), 1.0, atol=1e-4)


def test_cpu_predict_is_thread_safe(tiny_model_dir, frames):
    backend = TorchBackend(tiny_model_dir, device="cpu", channels_last=False)
    expected = backend.predict(frames[:1]).depth
    results = []

    def work():
        results.append(backend.predict(frames[:1]).depth)

    threads = [threading.Thread(target=work) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 3
    for r in results:
        np.testing.assert_array_equal(r, expected)


@pytest.mark.skipif(
    torch.cuda.is_available(), reason="checks the no-CUDA fallback; CUDA is available"
)
def test_cuda_requested_without_cuda_is_unavailable_with_reason(tiny_model_dir):
    with pytest.raises(BackendUnavailable, match=r"torch backend on cuda: .*(no CUDA|has no CUDA)"):
        TorchBackend(tiny_model_dir, device="cuda")


def test_bad_arguments(tiny_model_dir, tmp_path):
    with pytest.raises(ValueError, match="fp16 autocast needs a CUDA device"):
        TorchBackend(tiny_model_dir, device="cpu", fp16=True)
    with pytest.raises(ValueError, match="device must be"):
        TorchBackend(tiny_model_dir, device="tpu")
    with pytest.raises(BackendUnavailable, match="cannot load model"):
        TorchBackend(tmp_path, device="cpu")
    backend = TorchBackend(tiny_model_dir, device="cpu")
    with pytest.raises(ValueError, match="model expects 64x80"):
        backend.predict(np.zeros((1, 3, 32, 32), np.float32))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_graphs_fp32_and_fp16_match_cpu(tiny_model_dir, frames):
    cpu = TorchBackend(tiny_model_dir, device="cpu").predict(frames[:1])
    fp32 = TorchBackend(tiny_model_dir, device="cuda", cuda_graphs=True)
    a = fp32.predict(frames[:1])
    b = fp32.predict(frames[:1])  # graph replay
    np.testing.assert_array_equal(a.depth, b.depth)
    _assert_close(a, cpu, atol=2e-3)  # TF32/cuDNN kernel differences
    eager = TorchBackend(tiny_model_dir, device="cuda", cuda_graphs=False).predict(frames[:1])
    _assert_close(eager, a, atol=1e-5)
    fp16 = TorchBackend(tiny_model_dir, device="cuda", fp16=True, cuda_graphs=True).predict(
        frames[:1]
    )
    assert np.isfinite(fp16.depth).all()
    rel = np.abs(fp16.depth - cpu.depth) / cpu.depth
    assert rel.mean() < 0.01
    # from another thread (rclpy executor thread): same result
    out = []
    t = threading.Thread(target=lambda: out.append(fp32.predict(frames[:1]).depth))
    t.start()
    t.join()
    np.testing.assert_array_equal(out[0], a.depth)


def test_factory_builds_torch_backend_on_cpu(tiny_model_dir, frames):
    from joint_perception.runtime.factory import create_backend

    backend = create_backend(tiny_model_dir, backend="torch", device="cpu", channels_last=False)
    assert isinstance(backend, TorchBackend)
    assert "PyTorch" in backend.reason and "fp32" in backend.reason
    assert backend.predict(frames[:1]).depth.shape == (1, 64, 80)
