"""runtime/shared.py: one backend per (model, backend, device, options) in a process, shared by
reference-counted handles, with frames that wait together run as one batch."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from joint_perception.metadata import ModelMetadata
from joint_perception.runtime.base import Backend, Prediction
from joint_perception.runtime.shared import BackendPool, BatchRunner, split_prediction

H, W = 4, 5


class FakeBackend(Backend):
    """depth = mean of the input channels; records the batch size of every call. The first
    call blocks until ``release`` is set (so the test controls what waits together)."""

    name = "fake"

    def __init__(self, max_batch_size=None, block_first=False, fail=False):
        super().__init__(ModelMetadata("fake", ["depth"], input_height=H, input_width=W))
        self.max_batch_size = max_batch_size
        self.calls: list[int] = []
        self.closed = 0
        self.release = threading.Event()
        self.entered = threading.Event()
        if not block_first:
            self.release.set()
        self.fail = fail

    def predict(self, batch):
        self.check_batch(batch)
        self.entered.set()
        self.release.wait(10)
        self.calls.append(batch.shape[0])
        if self.fail:
            raise ValueError("boom")
        return Prediction(depth=batch.mean(axis=1), labels=np.zeros((len(batch), H, W), np.int32))

    def close(self):
        self.closed += 1


def frame(value: float) -> np.ndarray:
    return np.full((1, 3, H, W), value, np.float32)


def test_pool_shares_one_backend_per_key_and_closes_it_with_the_last_handle(tmp_path):
    made = []

    def create(path, backend, device, **options):
        made.append((path, backend, device, options))
        return FakeBackend()

    pool = BackendPool(create)
    a, created_a = pool.acquire(tmp_path, backend="onnxruntime")
    b, created_b = pool.acquire(tmp_path / ".", backend="onnxruntime")  # same resolved path
    c, created_c = pool.acquire(tmp_path, backend="torch")
    assert (created_a, created_b, created_c) == (True, False, True)
    assert len(made) == 2 and a.inner is b.inner and c.inner is not a.inner
    assert a.users == b.users == 2 and c.users == 1
    inner = a.inner
    a.close()
    a.close()  # idempotent: one handle releases once
    assert inner.closed == 0 and b.users == 1
    b.close()
    assert inner.closed == 1
    assert [users for _, users in pool.backends()] == [1]
    with pytest.raises(RuntimeError, match="closed"):
        b.predict(frame(1.0))
    c.close()
    assert pool.backends() == []


def test_waiting_frames_run_as_one_batch_and_each_caller_gets_its_own_part():
    fake = FakeBackend(max_batch_size=None, block_first=True)
    runner = BatchRunner(fake)
    assert runner.max_batch > 1
    results: dict[float, Prediction] = {}

    def call(v):
        results[v] = runner.predict(frame(v))

    first = threading.Thread(target=call, args=(1.0,))
    first.start()
    assert fake.entered.wait(5)  # the first frame is inside the backend
    others = [threading.Thread(target=call, args=(v,)) for v in (2.0, 3.0, 4.0)]
    for t in others:
        t.start()
    deadline = time.monotonic() + 5
    while len(runner._pending) < 3 and time.monotonic() < deadline:
        time.sleep(0.005)
    fake.release.set()
    for t in [first, *others]:
        t.join(5)
    runner.close()
    assert fake.calls == [1, 3]  # the three that waited together went in one call
    assert runner.stats.calls == 2 and runner.stats.frames == 4 and runner.stats.mean_batch == 2.0
    for v, pred in results.items():
        assert pred.depth.shape == (1, H, W)
        np.testing.assert_array_equal(pred.depth, np.full((1, H, W), v, np.float32))


def test_static_batch_backend_runs_one_frame_per_call_without_a_thread():
    fake = FakeBackend(max_batch_size=1)
    runner = BatchRunner(fake)
    assert runner.max_batch == 1 and runner._thread is None
    threads = [threading.Thread(target=runner.predict, args=(frame(v),)) for v in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(5)
    assert fake.calls == [1, 1, 1, 1]


def test_backend_errors_reach_every_caller_of_the_batch():
    runner = BatchRunner(FakeBackend(max_batch_size=4, fail=True))
    with pytest.raises(ValueError, match="boom"):
        runner.predict(frame(1.0))
    runner.close()
    with pytest.raises(RuntimeError, match="closed"):
        runner.predict(frame(1.0))


def test_split_prediction_keeps_missing_outputs_missing():
    pred = Prediction(depth=np.arange(3 * H * W, dtype=np.float32).reshape(3, H, W))
    a, b = split_prediction(pred, [1, 2])
    assert a.depth.shape == (1, H, W) and b.depth.shape == (2, H, W) and a.normals is None
    np.testing.assert_array_equal(b.depth, pred.depth[1:])


@pytest.mark.usefixtures("single_torch_thread")
def test_torch_backend_batches_match_single_frames(tiny_model_dir):
    """The PyTorch backend takes batches > 1 (the ONNX export is static batch 1): a batch of two
    frames through the shared runner gives what each frame gives alone."""
    from joint_perception.runtime.onnxruntime_backend import OnnxRuntimeBackend
    from joint_perception.runtime.torch_backend import TorchBackend

    torch_backend = TorchBackend(tiny_model_dir, device="cpu")
    assert torch_backend.max_batch_size is None
    assert OnnxRuntimeBackend(tiny_model_dir).max_batch_size == 1
    m = torch_backend.metadata
    rng = np.random.default_rng(0)
    x = rng.random((2, 3, m.input_height, m.input_width), dtype=np.float32)
    runner = BatchRunner(torch_backend)
    batched = split_prediction(torch_backend.predict(x), [1, 1])
    for i in range(2):
        alone = runner.predict(x[i : i + 1])
        np.testing.assert_allclose(batched[i].depth, alone.depth, rtol=1e-4, atol=1e-5)
        assert (batched[i].labels == alone.labels).mean() > 0.999
    runner.close()
