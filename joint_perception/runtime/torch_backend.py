"""PyTorch backend: the exported model's ``DeployWrapper`` run eagerly on CPU or CUDA.

The fast path for desktops with an NVIDIA GPU but no TensorRT (docs/contracts.md section 4, ``auto``
order: TensorRT, then PyTorch on CUDA, then ONNX Runtime CPU). On CUDA it uses:

* FP16 autocast (``fp16=True``): convolutions and matmuls in half precision, reductions and
  softmax in fp32 (torch's autocast op lists);
* channels-last memory format (NHWC), which cuDNN's tensor-core kernels prefer;
* CUDA graphs for the fixed input shape: the first call per batch size warms the model up on
  the backend's stream and captures one graph; later calls copy the frame into the static input
  buffer, replay the graph and copy the outputs into pinned host buffers - no allocation and
  a single launch per frame. ``compile=True`` uses ``torch.compile(mode="reduce-overhead")``
  instead (its own CUDA graphs);
* one CUDA stream per backend; ``predict`` makes the backend's device current in the calling
  thread (``torch.cuda.device``) so it works from any rclpy executor or worker thread.

The wrapper is the same module ONNX export traces, so every backend returns the same outputs
(:mod:`joint_perception.metadata` graph contract). On CPU it matches ONNX Runtime fp32 to
< 1e-4.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from joint_perception.metadata import ModelMetadata
from joint_perception.runtime.base import (
    Backend,
    BackendUnavailable,
    Prediction,
    prediction_from_outputs,
    select_outputs,
)
from joint_perception.runtime.threads import resolve_intra_op_threads
from joint_perception.tasks import outputs_of
from joint_perception.weights_io import CheckpointError

LOG = logging.getLogger(__name__)

_OUTPUT_ORDER = ("depth", "labels", "confidence", "normals")


class TorchBackend(Backend):
    """Run the torch model behind the ONNX contract.

    Args:
        model_dir: exported model directory (``model.pt`` + ``metadata.json``, as written by
            ``export.onnx_export.export_onnx``).
        metadata: use this metadata instead of the directory's.
        device: ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
        fp16: FP16 autocast (CUDA only).
        channels_last: NHWC memory format for weights and input.
        cuda_graphs: capture a CUDA graph per batch size (CUDA only).
        compile: use ``torch.compile(mode="reduce-overhead")`` instead of manual graphs.
        warmup: eager iterations before capture.
        intra_op_threads: ``torch.set_num_threads`` (process-wide); None or 0 = the machine
            default (:func:`joint_perception.runtime.threads.default_intra_op_threads`: 1 on
            <= 2 cores, else left as torch set it). Torch's OpenMP pool cannot switch
            spinning at run time: set ``OMP_WAIT_POLICY=PASSIVE`` before starting Python.
        outputs: compute only these network outputs (as the ONNX Runtime backend's; None =
            all; those the model lacks are ignored).

    Raises:
        BackendUnavailable: CUDA requested but unavailable, or the model cannot be loaded
            (raised before any model is loaded when the device is missing).
        ValueError: ``fp16=True`` on CPU; ``outputs`` naming an unknown output or none the
            model has.
    """

    name = "torch"
    max_batch_size = None  # the eager module takes any N (one CUDA graph per N)

    def __init__(
        self,
        model_dir: str | os.PathLike,
        metadata: ModelMetadata | None = None,
        device: str = "cuda",
        fp16: bool = False,
        channels_last: bool = True,
        cuda_graphs: bool = True,
        compile: bool = False,
        warmup: int = 3,
        intra_op_threads: int | None = None,
        outputs: Sequence[str] | None = None,
    ):
        try:
            import torch
        except ImportError as exc:
            raise BackendUnavailable(f"torch backend: PyTorch is not installed ({exc})") from exc
        self._torch = torch
        threads = resolve_intra_op_threads(intra_op_threads)
        if threads:
            torch.set_num_threads(threads)
        self.intra_op_threads = torch.get_num_threads()
        try:
            dev = torch.device(device)
        except RuntimeError:
            raise ValueError(f"device must be 'cpu' or 'cuda[:N]', got {device!r}") from None
        if dev.type == "cuda":
            if not torch.cuda.is_available():
                why = (
                    "this PyTorch build has no CUDA"
                    if torch.version.cuda is None
                    else "no CUDA GPU visible"
                )
                raise BackendUnavailable(
                    f"torch backend on {device}: {why} (torch {torch.__version__})"
                )
            if dev.index is None:
                dev = torch.device("cuda", torch.cuda.current_device())
        elif dev.type != "cpu":
            raise ValueError(f"device must be 'cpu' or 'cuda[:N]', got {device!r}")
        if fp16 and dev.type != "cuda":
            raise ValueError("fp16 autocast needs a CUDA device; use fp16=False on CPU")

        try:
            from joint_perception.models.deploy import DeployWrapper
            from joint_perception.models.serialization import load_torch_model

            model, meta = load_torch_model(Path(model_dir))
        except CheckpointError:
            # a model.pt that is unreadable or carries pickled objects is not "backend
            # unavailable": no fallback to another backend of the same directory
            raise
        except (FileNotFoundError, KeyError, ImportError, RuntimeError, ValueError) as exc:
            raise BackendUnavailable(
                f"torch backend: cannot load model from {model_dir}: {exc}"
            ) from exc
        super().__init__(metadata or meta)
        m = self.metadata
        self._dev = dev
        self._fp16 = fp16
        self._cl = channels_last
        self._use_graphs = cuda_graphs and dev.type == "cuda" and not compile
        self._warmup = max(int(warmup), 1)
        self._lock = threading.Lock()
        self._graphs: dict[int, tuple] = {}
        self._eager_in: dict[int, tuple] = {}

        keep = select_outputs(list(outputs_of(model.tasks)), outputs, str(model_dir))
        wrapper = DeployWrapper(model, m.mean, m.std, outputs=keep).eval().to(dev)
        self._outputs = list(
            getattr(wrapper, "output_names", None)
            or [o for o in (m.outputs or _OUTPUT_ORDER) if o in _OUTPUT_ORDER]
        )
        if channels_last:
            wrapper = wrapper.to(memory_format=torch.channels_last)
        self._module = torch.compile(wrapper, mode="reduce-overhead") if compile else wrapper
        if dev.type == "cuda":
            self._stream = torch.cuda.Stream(device=dev)
            self.device = f"{dev} {torch.cuda.get_device_name(dev)}"
        else:
            self._stream = None
            self.device = "cpu"
        mode = ["fp16" if fp16 else "fp32"]
        if channels_last:
            mode.append("channels_last")
        if self._use_graphs:
            mode.append("cuda_graphs")
        if compile:
            mode.append("torch.compile")
        self.mode = "+".join(mode)
        self.reason = f"PyTorch {torch.__version__} on {self.device} ({self.mode})"

    # -------------------------------------------------------------------------------- running

    def _forward(self, x):
        torch = self._torch
        with torch.autocast("cuda", dtype=torch.float16, enabled=self._fp16):
            out = self._module(x)
        if isinstance(out, dict):
            return [out[name] for name in self._outputs]
        return list(out)

    def _to_numpy(self, tensors) -> dict[str, np.ndarray]:
        out = {}
        for name, t in zip(self._outputs, tensors, strict=True):
            a = (
                t.detach().float().cpu().numpy()
                if t.is_floating_point()
                else t.detach().cpu().numpy()
            )
            out[name] = a
        return out

    def predict(self, batch: np.ndarray) -> Prediction:
        """See :meth:`Backend.predict`. Thread-safe (one frame at a time per backend)."""
        self.check_batch(batch)
        torch = self._torch
        with self._lock, torch.inference_mode():
            if self._dev.type == "cpu":
                x = torch.from_numpy(np.ascontiguousarray(batch))
                if self._cl:
                    x = x.contiguous(memory_format=torch.channels_last)
                return prediction_from_outputs(self._to_numpy(self._forward(x)))
            with torch.cuda.device(self._dev), torch.cuda.stream(self._stream):
                if self._use_graphs:
                    outputs = self._run_graph(batch)
                else:
                    outputs = self._run_eager_cuda(batch)
            return prediction_from_outputs(outputs)

    def _run_eager_cuda(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """Eager (or torch.compile) CUDA run; input staged through reused pinned/device buffers."""
        torch = self._torch
        n = batch.shape[0]
        if n not in self._eager_in:
            host = torch.empty(batch.shape, dtype=torch.float32).pin_memory()
            dev = torch.empty(batch.shape, dtype=torch.float32, device=self._dev)
            if self._cl:
                dev = dev.contiguous(memory_format=torch.channels_last)
            self._eager_in[n] = (host, dev)
        host, dev = self._eager_in[n]
        host.numpy()[...] = batch
        dev.copy_(host, non_blocking=True)
        return self._to_numpy(self._forward(dev))

    def _capture(self, n: int):
        """Warm up and capture a CUDA graph for batch size ``n`` (static I/O buffers)."""
        torch = self._torch
        m = self.metadata
        host_in = torch.empty(
            (n, 3, m.input_height, m.input_width), dtype=torch.float32
        ).pin_memory()
        static_in = torch.zeros((n, 3, m.input_height, m.input_width), device=self._dev)
        if self._cl:
            static_in = static_in.contiguous(memory_format=torch.channels_last)
        for _ in range(self._warmup):  # on self._stream (set by predict), as capture requires
            self._forward(static_in)
        self._stream.synchronize()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, stream=self._stream):
            static_out = self._forward(static_in)
        host_out = [
            torch.empty(
                t.shape, dtype=t.dtype if not t.is_floating_point() else torch.float32
            ).pin_memory()
            for t in static_out
        ]
        LOG.info(
            "torch backend: captured CUDA graph for batch %d at %dx%d (%s)",
            n,
            m.input_height,
            m.input_width,
            self.mode,
        )
        return graph, host_in, static_in, static_out, host_out

    def _run_graph(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        n = batch.shape[0]
        if n not in self._graphs:
            self._graphs[n] = self._capture(n)
        graph, host_in, static_in, static_out, host_out = self._graphs[n]
        host_in.numpy()[...] = batch
        static_in.copy_(host_in, non_blocking=True)
        graph.replay()
        for h, d in zip(host_out, static_out, strict=True):
            h.copy_(d, non_blocking=True)
        self._stream.synchronize()
        # Copies: the pinned buffers are overwritten by the next frame.
        return {name: h.numpy().copy() for name, h in zip(self._outputs, host_out, strict=True)}

    def close(self) -> None:
        """Drop graphs and the model (frees GPU memory). Idempotent."""
        self._graphs.clear()
        self._eager_in.clear()
        self._module = None
        if self._dev.type == "cuda":
            self._torch.cuda.empty_cache()
