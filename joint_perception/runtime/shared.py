"""One inference backend shared by several users (cameras) in one process, with batching.

Several perception nodes in one process (``perception_node --cameras front,rear``) that ask
for the same model, backend, device and options get the *same* backend: one copy of the
weights in memory, one GPU context, one TensorRT engine. :class:`BackendPool` hands out
:class:`SharedBackend` handles (reference counted); the underlying backend is created on the
first :meth:`BackendPool.acquire` and closed when the last handle is closed.

Calls are serialised through one :class:`BatchRunner` per backend. When the backend runs
batches larger than one as a single network call (``Backend.max_batch_size``: None or > 1, as
the PyTorch backend does), requests that are waiting together — frames of different cameras
that arrived while the previous call ran — are concatenated into one batch and split again
afterwards. Nothing waits for a batch to fill: a lone frame runs at once. Backends with a
static batch of 1 (the ONNX export, a TensorRT engine built for batch 1) run one frame per
call, in arrival order.
"""

from __future__ import annotations

import os
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from joint_perception.runtime.base import Backend, Prediction

#: Largest batch the runner forms for a backend without a limit of its own.
DEFAULT_MAX_BATCH = 16


def split_prediction(pred: Prediction, sizes: list[int]) -> list[Prediction]:
    """Split a batched :class:`Prediction` along N into consecutive parts of ``sizes``."""
    parts, start = [], 0
    for n in sizes:
        parts.append(
            Prediction(
                **{
                    name: None if arr is None else arr[start : start + n]
                    for name, arr in vars(pred).items()
                }
            )
        )
        start += n
    return parts


class _Request:
    __slots__ = ("batch", "done", "result", "error")

    def __init__(self, batch: np.ndarray) -> None:
        self.batch = batch
        self.done = threading.Event()
        self.result: Prediction | None = None
        self.error: BaseException | None = None


@dataclass
class RunnerStats:
    """Network calls and frames run so far; ``largest_batch`` seen."""

    calls: int = 0
    frames: int = 0
    largest_batch: int = 0
    batch_sizes: dict[int, int] = field(default_factory=dict)

    @property
    def mean_batch(self) -> float:
        return self.frames / self.calls if self.calls else 0.0


class BatchRunner:
    """Runs ``backend.predict`` for several threads, batching what waits together.

    With ``max_batch == 1`` :meth:`predict` calls the backend directly under a lock (no extra
    thread); otherwise a worker thread takes every waiting request (up to ``max_batch``
    frames), runs them as one batch and hands each caller its part.

    Args:
        backend: the backend to run.
        max_batch: frames per network call; default from ``backend.max_batch_size`` (None ->
            :data:`DEFAULT_MAX_BATCH`).
    """

    def __init__(self, backend: Backend, max_batch: int | None = None) -> None:
        if max_batch is None:
            limit = getattr(backend, "max_batch_size", 1)
            max_batch = DEFAULT_MAX_BATCH if limit is None else int(limit)
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        self.backend = backend
        self.max_batch = max_batch
        self.stats = RunnerStats()
        self._lock = threading.Lock()
        self._cond = threading.Condition()
        self._pending: deque[_Request] = deque()
        self._closed = False
        self._thread: threading.Thread | None = None
        if max_batch > 1:
            self._thread = threading.Thread(target=self._loop, name="batch_runner", daemon=True)
            self._thread.start()

    def _count(self, n: int) -> None:
        s = self.stats
        s.calls += 1
        s.frames += n
        s.largest_batch = max(s.largest_batch, n)
        s.batch_sizes[n] = s.batch_sizes.get(n, 0) + 1

    def predict(self, batch: np.ndarray) -> Prediction:
        """Run ``batch`` (N, 3, H, W) and return its :class:`Prediction`; blocks until done.

        Raises:
            RuntimeError: the runner is closed.
            Exception: whatever the backend raised for the call this batch was part of.
        """
        if self._closed:
            raise RuntimeError("the shared backend is closed")
        if self._thread is None:
            with self._lock:
                pred = self.backend.predict(batch)
                self._count(batch.shape[0])
            return pred
        req = _Request(batch)
        with self._cond:
            if self._closed:
                raise RuntimeError("the shared backend is closed")
            self._pending.append(req)
            self._cond.notify()
        req.done.wait()
        if req.error is not None:
            raise req.error
        return req.result

    def _take(self) -> list[_Request] | None:
        with self._cond:
            self._cond.wait_for(lambda: self._pending or self._closed)
            if not self._pending:
                return None
            take, n = [], 0
            while self._pending and (not take or n + len(self._pending[0].batch) <= self.max_batch):
                req = self._pending.popleft()
                take.append(req)
                n += len(req.batch)
            return take

    def _loop(self) -> None:
        while True:
            take = self._take()
            if take is None:
                return
            try:
                sizes = [len(r.batch) for r in take]
                if len(take) == 1:
                    parts = [self.backend.predict(take[0].batch)]
                else:
                    joined = np.concatenate([r.batch for r in take])
                    parts = split_prediction(self.backend.predict(joined), sizes)
                self._count(sum(sizes))
                for req, part in zip(take, parts, strict=True):
                    req.result = part
            except BaseException as exc:  # noqa: BLE001 - handed to every caller of the batch
                for req in take:
                    req.error = exc
            finally:
                for req in take:
                    req.done.set()

    def close(self) -> None:
        """Fail waiting requests, stop the worker thread. Idempotent."""
        with self._cond:
            self._closed = True
            while self._pending:
                req = self._pending.popleft()
                req.error = RuntimeError("the shared backend was closed")
                req.done.set()
            self._cond.notify_all()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=10.0)


class _Entry:
    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.runner = BatchRunner(backend)
        self.users = 0


class SharedBackend(Backend):
    """A handle on a pooled backend; behaves as the backend itself.

    ``predict`` goes through the pool's :class:`BatchRunner`; ``close`` releases this handle
    (the backend closes with its last handle). ``inner`` is the shared backend object.
    """

    def __init__(self, pool: BackendPool, key: tuple, entry: _Entry) -> None:
        super().__init__(entry.backend.metadata)
        self._pool, self._key, self._entry = pool, key, entry
        self._closed = False
        inner = entry.backend
        self.inner = inner
        self.name = inner.name
        self.device = inner.device
        self.reason = inner.reason
        self.max_batch_size = entry.runner.max_batch

    @property
    def users(self) -> int:
        """Open handles on this backend (nodes sharing it)."""
        return self._entry.users

    @property
    def runner_stats(self) -> RunnerStats:
        return self._entry.runner.stats

    def predict(self, batch: np.ndarray) -> Prediction:
        """See :meth:`Backend.predict`; raises RuntimeError after :meth:`close`."""
        if self._closed:
            raise RuntimeError("this shared backend handle is closed")
        return self._entry.runner.predict(batch)

    def describe(self) -> str:
        return self.inner.describe()

    def close(self) -> None:
        """Release this handle (idempotent); the last one closes the backend."""
        if not self._closed:
            self._closed = True
            self._pool._release(self._key)


class BackendPool:
    """Process-wide backends keyed by (model path, backend, device, options).

    Args:
        create: ``create(model_path, backend=, device=, **options) -> Backend`` (default:
            :func:`joint_perception.runtime.factory.create_backend` with ``fallback=True``).
    """

    def __init__(self, create: Callable[..., Backend] | None = None) -> None:
        self._create = create
        self._lock = threading.Lock()
        self._entries: dict[tuple, _Entry] = {}

    @staticmethod
    def key(
        model_path: str | os.PathLike, backend: str, device: str | None, options: dict[str, Any]
    ) -> tuple:
        return (
            str(Path(model_path).expanduser().resolve()),
            backend,
            device or "",
            tuple(sorted((k, repr(v)) for k, v in options.items())),
        )

    def acquire(
        self,
        model_path: str | os.PathLike,
        backend: str = "auto",
        device: str | None = None,
        **options: Any,
    ) -> tuple[SharedBackend, bool]:
        """A handle on the backend for this key, creating it on first use.

        Returns:
            ``(handle, created)``: ``created`` is True when this call built the backend.

        Raises:
            whatever backend creation raises (nothing is pooled then).
        """
        key = self.key(model_path, backend, device, options)
        with self._lock:
            entry = self._entries.get(key)
            created = entry is None
            if created:
                create = self._create
                if create is None:
                    from joint_perception.runtime.factory import create_backend

                    def create(path, **kw):
                        return create_backend(path, fallback=True, **kw)

                entry = _Entry(create(model_path, backend=backend, device=device, **options))
                self._entries[key] = entry
            entry.users += 1
            return SharedBackend(self, key, entry), created

    def _release(self, key: tuple) -> None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return
            entry.users -= 1
            if entry.users > 0:
                return
            del self._entries[key]
        entry.runner.close()
        entry.backend.close()

    def backends(self) -> list[tuple[Backend, int]]:
        """``(backend, users)`` of every live backend (for diagnostics and tests)."""
        with self._lock:
            return [(e.backend, e.users) for e in self._entries.values()]


#: The pool of the process (every node uses it unless given another).
PROCESS_POOL = BackendPool()
