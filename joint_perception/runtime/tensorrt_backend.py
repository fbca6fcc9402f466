"""TensorRT backend: cached engine -> named-tensor I/O -> ``execute_async_v3`` on one stream.

Loading (never half-loads):

1. Precision: ``fp32``/``fp16``/``int8`` as asked, or for ``best`` the most precise cached
   engine that passed the accuracy gate and meets the latency target
   (:func:`~joint_perception.runtime.engine_select.choose_precision`; fp16 when none does).
2. Key = (ONNX SHA-256, ``tensorrt.__version__``, GPU name, compute capability, precision,
   input shape, build recipe) -> :class:`~joint_perception.runtime.engine_cache.EngineCache`
   lookup. A miss logs why (no engine, other TensorRT/GPU, corrupt...).
3. Miss -> a strongly typed build from the precision's ONNX graph (FP32: the model; FP16: its
   FP16 conversion, written next to the engines) with progress logs -> stored in the cache.
   An INT8 engine needs real calibration frames, so it is built by ``export_engine
   --precision int8 --calib-bag ...`` and only loaded here.
4. ``Runtime.deserialize_cuda_engine``; a cached engine that does not deserialise is
   invalidated and rebuilt once; if the rebuild fails too, :class:`BackendUnavailable` is raised
   and the factory falls back per configuration.

Running: every I/O tensor gets a device buffer (torch CUDA tensor) allocated once and bound
with ``context.set_tensor_address``; the input is staged through a pinned host buffer and the
outputs come back into pinned host buffers; one CUDA stream; per frame only the
host->device copy, ``execute_async_v3(stream)``, device->host copies and one synchronise.

CUDA context and threads: the backend uses the CUDA runtime's *primary context* of its device
(the one PyTorch uses), never a private driver-API context as ``pycuda.autoinit`` creates. The
primary context is current in a thread once that thread selects the device, so ``predict``
enters ``torch.cuda.device(self.device_index)`` and ``torch.cuda.stream(self.stream)`` first.
It can therefore be called from any rclpy executor thread (MultiThreadedExecutor callbacks) or
worker thread; a lock serialises calls because one execution context is not re-entrant.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from joint_perception.metadata import ModelMetadata, load_metadata, verify_onnx_hash
from joint_perception.runtime.base import (
    Backend,
    BackendUnavailable,
    Prediction,
    prediction_from_outputs,
)

if TYPE_CHECKING:
    import tensorrt

    from joint_perception.runtime.engine_cache import EngineCache, EngineKey
    from joint_perception.runtime.engine_select import Choice

LOG = logging.getLogger(__name__)


def _torch_dtype(trt, torch, dtype):
    table = {
        trt.float32: torch.float32,
        trt.float16: torch.float16,
        trt.int32: torch.int32,
        trt.int8: torch.int8,
        trt.bool: torch.bool,
        trt.uint8: torch.uint8,
    }
    if hasattr(trt, "int64"):
        table[trt.int64] = torch.int64
    if hasattr(trt, "bfloat16"):
        table[trt.bfloat16] = torch.bfloat16
    if dtype not in table:
        raise BackendUnavailable(f"TensorRT tensor dtype {dtype} has no torch equivalent")
    return table[dtype]


def choose_engine(
    onnx_sha256: str,
    input_shape: tuple[int, ...],
    precision: str,
    cache: EngineCache,
    target_ms: float,
    device_index: int = 0,
) -> tuple[Choice, EngineKey]:
    """The engine the backend loads or builds: (:class:`~joint_perception.runtime.
    engine_select.Choice`, its :class:`~joint_perception.runtime.engine_cache.EngineKey`).

    ``export_engine --precision best`` reports its result with this function too, so the
    command and the node agree on the engine.

    Args:
        onnx_sha256: hash of the exported FP32 model.
        input_shape: (N, 3, H, W).
        precision: ``"fp32"``, ``"fp16"``, ``"int8"`` or ``"best"``.
        cache: the :class:`~joint_perception.runtime.engine_cache.EngineCache`.
        target_ms: latency target of ``best`` (ms).
        device_index: CUDA device (its name and compute capability are in the key).

    Raises:
        TensorRTUnavailable: no TensorRT / GPU (the key needs both).
        ValueError: unknown precision.
    """
    from joint_perception.runtime import engine_select, tensorrt_engine

    def key_for(p: str):
        return tensorrt_engine.engine_key(onnx_sha256, p, input_shape, device_index)

    choice = engine_select.choose_precision(precision, cache, key_for, target_ms)
    return choice, key_for(choice.precision)


class TensorRTBackend(Backend):
    """Run a TensorRT engine built (and cached) from the model's ONNX file.

    Args:
        model_dir_or_onnx: exported model directory or its ``.onnx`` file.
        metadata: model metadata (default: read next to the ONNX file).
        precision: ``"fp32"``, ``"fp16"``, ``"int8"`` (must already be cached) or ``"best"``
            (see :mod:`joint_perception.runtime.engine_select`).
        latency_target_ms: latency target of ``best`` in ms; 0 = the model's
            (:func:`~joint_perception.runtime.engine_select.latency_target_ms`).
        cache_dir: engine cache directory (default ``~/.cache/joint_perception/engines``).
        build_options: :class:`~joint_perception.runtime.tensorrt_engine.BuildOptions` for a
            build on a cache miss (precision is taken from the chosen precision).
        device_index: CUDA device.
        batch_size: engine batch size (N of the input shape).
        build_on_miss: build when nothing valid is cached (else BackendUnavailable).

    Attributes:
        precision: the precision of the loaded engine (``best`` resolved).
        key: its cache key.

    Raises:
        ValueError: unknown ``precision``.
        BackendUnavailable: TensorRT or CUDA missing, or no engine could be built/loaded
            (the message says which, for /diagnostics).
    """

    name = "tensorrt"
    engine: tensorrt.ICudaEngine
    context: tensorrt.IExecutionContext
    _runtime: tensorrt.Runtime

    def __init__(
        self,
        model_dir_or_onnx: str | os.PathLike,
        metadata: ModelMetadata | None = None,
        precision: str = "best",
        latency_target_ms: float = 0.0,
        cache_dir: str | os.PathLike | None = None,
        build_options=None,
        device_index: int = 0,
        batch_size: int = 1,
        build_on_miss: bool = True,
    ):
        from joint_perception.runtime import engine_select, tensorrt_engine
        from joint_perception.runtime.engine_cache import DEFAULT_CACHE_DIR, EngineCache

        if precision not in engine_select.PRECISION_CHOICES:
            raise ValueError(
                f"precision must be one of {engine_select.PRECISION_CHOICES}, got {precision!r}"
            )
        try:
            trt = tensorrt_engine.import_tensorrt()  # fast failure: no module / no GPU
        except tensorrt_engine.TensorRTUnavailable as exc:
            raise BackendUnavailable(f"tensorrt: {exc}") from exc
        import torch

        self._trt, self._torch = trt, torch
        src = Path(model_dir_or_onnx).expanduser()
        meta = metadata or load_metadata(src)
        super().__init__(meta)
        onnx_path = src if src.suffix == ".onnx" else src / meta.onnx_file
        if not onnx_path.is_file():
            raise BackendUnavailable(f"tensorrt: ONNX model not found: {onnx_path}")
        try:
            sha = verify_onnx_hash(meta, onnx_path)
        except ValueError as exc:
            raise BackendUnavailable(f"tensorrt: {exc}") from exc
        shape = (int(batch_size), 3, meta.input_height, meta.input_width)
        self.device_index = int(device_index)
        self.cache = EngineCache(cache_dir or DEFAULT_CACHE_DIR)
        target = engine_select.latency_target_ms(meta, latency_target_ms)
        choice, self.key = choose_engine(sha, shape, precision, self.cache, target, device_index)
        self.precision = choice.precision
        opts = build_options or tensorrt_engine.BuildOptions(precision=self.precision)
        if opts.precision != self.precision:
            opts = tensorrt_engine.BuildOptions(**{**opts.to_dict(), "precision": self.precision})
        self._lock = threading.Lock()
        with torch.cuda.device(self.device_index):
            self.engine, how = self._load_or_build(onnx_path, opts, build_on_miss, tensorrt_engine)
            try:
                self._setup_io(shape)
            except (RuntimeError, ValueError) as exc:  # CUDA OOM, shape errors
                if isinstance(exc, BackendUnavailable):
                    raise
                self.close()
                raise BackendUnavailable(
                    f"tensorrt: engine loaded but I/O setup failed: {exc}"
                ) from exc
        name = torch.cuda.get_device_name(self.device_index)
        self.device = f"cuda:{self.device_index} {name}"
        chosen = f", {choice.reason}" if precision == "best" else ""
        self.reason = f"TensorRT {trt.__version__} {self.precision} engine ({how}{chosen})"
        LOG.info("tensorrt backend ready: %s, %s", self.device, self.reason)

    # ------------------------------------------------------------------------------- loading

    def _deserialize(self, blob: bytes, version_compatible: bool):
        """Engine or None (TensorRT logs why); the runtime is kept alive as long as the engine."""
        from joint_perception.runtime.tensorrt_engine import trt_logger

        if not hasattr(self, "_runtime"):
            self._runtime = self._trt.Runtime(trt_logger(self._trt))
        if version_compatible:
            self._runtime.engine_host_code_allowed = True
        try:
            return self._runtime.deserialize_cuda_engine(blob)
        except Exception as exc:  # some versions raise instead of returning None
            LOG.warning("tensorrt: deserialize_cuda_engine failed: %s", exc)
            return None

    def _load_or_build(self, onnx_path: Path, opts, build_on_miss: bool, tensorrt_engine):
        found = self.cache.lookup(self.key)
        if found.hit:
            vc = bool(found.entry.metadata.get("build_options", {}).get("version_compatible"))
            engine = self._deserialize(found.entry.read_bytes(), vc)
            if engine is not None:
                return engine, f"cached {found.entry.engine_path.name}"
            LOG.warning(
                "cached engine %s does not deserialise: rebuilding", found.entry.engine_path
            )
            self.cache.invalidate(self.key, "does not deserialise")
            reason = "cached engine did not deserialise"
        else:
            reason = found.reason
        if not build_on_miss:
            raise BackendUnavailable(
                f"tensorrt: no usable engine ({reason}) and building is disabled"
            )
        if self.precision == "int8":
            raise BackendUnavailable(
                f"tensorrt: no usable INT8 engine ({reason}); INT8 needs calibration frames: run "
                "`export_engine --model <dir> --precision int8 --calib-bag <bag>` first"
            )
        LOG.info("tensorrt: building engine (%s); progress follows", reason)
        try:
            entry = tensorrt_engine.build_and_cache(onnx_path, self.key, opts, self.cache)
            engine = self._deserialize(entry.read_bytes(), opts.version_compatible)
        except (
            tensorrt_engine.EngineBuildError,
            RuntimeError,
            OSError,
            ValueError,
            ImportError,
        ) as exc:
            raise BackendUnavailable(f"tensorrt: engine build failed ({reason}): {exc}") from exc
        if engine is None:
            self.cache.invalidate(self.key, "fresh build does not deserialise")
            raise BackendUnavailable("tensorrt: freshly built engine does not deserialise")
        return engine, f"built now: {reason}"

    def _setup_io(self, shape: tuple[int, ...]) -> None:
        """Allocate device + pinned host buffers once and bind them to the context."""
        trt, torch = self._trt, self._torch
        engine = self.engine
        self.context = engine.create_execution_context()
        if self.context is None:
            raise BackendUnavailable(
                "tensorrt: could not create an execution context (GPU memory?)"
            )
        self.stream = torch.cuda.Stream(device=self.device_index)
        self._inputs: dict[str, tuple] = {}
        self._outputs: dict[str, tuple] = {}
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        for name in names:  # inputs first: output shapes depend on them for dynamic profiles
            is_input = engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT
            if is_input and any(d < 0 for d in engine.get_tensor_shape(name)):
                self.context.set_input_shape(name, shape)
        for name in names:
            dims = tuple(self.context.get_tensor_shape(name))
            if any(d < 0 for d in dims):
                raise BackendUnavailable(
                    f"tensorrt: tensor {name!r} still has dynamic shape {dims}"
                )
            dtype = _torch_dtype(trt, torch, engine.get_tensor_dtype(name))
            dev = torch.empty(dims, dtype=dtype, device=f"cuda:{self.device_index}")
            host = torch.empty(dims, dtype=dtype).pin_memory()
            self.context.set_tensor_address(name, dev.data_ptr())
            if engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT:
                self._inputs[name] = (dev, host)
            else:
                self._outputs[name] = (dev, host)
        if len(self._inputs) != 1:
            raise BackendUnavailable(
                f"tensorrt: expected one input tensor, engine has {list(self._inputs)}"
            )
        self._in_name = next(iter(self._inputs))
        self._batch = int(self._inputs[self._in_name][0].shape[0])

    # ------------------------------------------------------------------------------- running

    def predict(self, batch: np.ndarray) -> Prediction:
        """See :meth:`Backend.predict`; a batch larger than the engine's runs in chunks."""
        self.check_batch(batch)
        if batch.shape[0] != self._batch:
            if self._batch != 1:
                raise ValueError(f"engine takes batches of {self._batch}, got {batch.shape[0]}")
            parts = [self._execute(batch[i : i + 1]) for i in range(batch.shape[0])]
            return prediction_from_outputs(
                {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
            )
        return prediction_from_outputs(self._execute(batch))

    def _execute(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        torch = self._torch
        with self._lock, torch.cuda.device(self.device_index), torch.cuda.stream(self.stream):
            dev_in, host_in = self._inputs[self._in_name]
            host_in.numpy()[...] = batch
            dev_in.copy_(host_in, non_blocking=True)
            if not self.context.execute_async_v3(self.stream.cuda_stream):
                raise RuntimeError("tensorrt: execute_async_v3 failed (see TensorRT log)")
            for dev, host in self._outputs.values():
                host.copy_(dev, non_blocking=True)
            self.stream.synchronize()
            # Copy out of the pinned buffers: they are reused by the next frame.
            return {
                name: host.numpy().astype(
                    np.float32 if host.is_floating_point() else host.numpy().dtype
                )
                for name, (_, host) in self._outputs.items()
            }

    def close(self) -> None:
        """Free the context, engine and buffers. Idempotent."""
        for attr in ("context", "engine", "_inputs", "_outputs"):
            if hasattr(self, attr):
                delattr(self, attr)
