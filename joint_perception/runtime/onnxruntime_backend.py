"""ONNX Runtime backend: runs an exported model (``export.onnx_export``) on CPU or CUDA.

The ONNX file is checked against ``metadata.json`` (SHA-256, input name and static shape,
output names) before a session is created, so a replaced or mismatched model fails at
start-up with a message naming the file, not at the first frame.

ONNX Runtime runs every node of a graph whatever outputs a ``run`` fetches, so a backend asked
for a subset of the outputs (``outputs=``) runs the subgraph that computes only those
(``onnx.utils.Extractor``): e.g. without ``confidence`` the softmax-maximum tail over the 40
class maps at network resolution is not run (shipped model, 120x160, one thread: 7.7 -> 6.2 ms
CPU per frame, docs/performance.md); the outputs it keeps are bit-identical. On the CPU
provider the segmentation tail runs channels-last (:mod:`joint_perception.runtime.onnx_rewrite`:
the same labels; 5.94 -> 5.55 ms without confidence, 7.56 -> 6.48 ms with it).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from joint_perception.metadata import ModelMetadata, load_metadata, verify_onnx_hash
from joint_perception.runtime.base import (
    Backend,
    BackendUnavailable,
    Prediction,
    prediction_from_outputs,
    select_outputs,
)
from joint_perception.runtime.onnx_rewrite import channels_last_class_tail
from joint_perception.runtime.threads import resolve_intra_op_threads

log = logging.getLogger(__name__)


def resolve_onnx(
    model_dir_or_onnx: str | os.PathLike, metadata: ModelMetadata | None = None
) -> tuple[Path, ModelMetadata]:
    """(ONNX path, metadata) for an export directory or an ``.onnx`` file.

    Raises:
        FileNotFoundError: no such directory/file, or no ONNX file named by the metadata.
        ValueError: invalid metadata.
    """
    p = Path(model_dir_or_onnx)
    if not p.exists():
        raise FileNotFoundError(f"model not found: {p}")
    meta = metadata if metadata is not None else load_metadata(p)
    onnx_path = p / meta.onnx_file if p.is_dir() else p
    if not onnx_path.is_file():
        raise FileNotFoundError(f"ONNX file {onnx_path} (named by the metadata) not found")
    return onnx_path, meta


class OnnxRuntimeBackend(Backend):
    """:class:`Backend` on ONNX Runtime (all graph optimisations on).

    Args:
        model_dir_or_onnx: export directory (``metadata.json`` + ONNX) or the ``.onnx`` file
            (metadata read from its sibling ``metadata.json`` / ``<stem>.json``).
        metadata: use this instead of reading it.
        providers: ONNX Runtime execution providers; default CUDA (when this onnxruntime
            build has it) then CPU.
        intra_op_threads: threads per operator; None or 0 = the machine default
            (:func:`joint_perception.runtime.threads.default_intra_op_threads`: 1 on <= 2
            cores, else ONNX Runtime's default).
        intra_op_spinning: let idle intra-op threads spin-wait for work
            (``session.intra_op.allow_spinning``); False (default) saves a core's worth of
            CPU per frame on small machines.
        outputs: the network outputs to compute (names of :data:`joint_perception.tasks.OUTPUTS`;
            those the model lacks are ignored, as a model without normals has no normals to
            compute); None = all. The others are absent (None) from every :class:`Prediction`
            and their nodes are not run.

    Raises:
        FileNotFoundError, ValueError: missing files; hash, input or output mismatch (the
            message names the file); ``outputs`` naming an unknown output or none the graph
            has.
        BackendUnavailable: onnxruntime is not importable or no requested provider exists.
    """

    name = "onnxruntime"

    def __init__(
        self,
        model_dir_or_onnx: str | os.PathLike,
        metadata: ModelMetadata | None = None,
        providers: list[str] | None = None,
        intra_op_threads: int | None = None,
        intra_op_spinning: bool = False,
        outputs: Sequence[str] | None = None,
    ):
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise BackendUnavailable(f"onnxruntime not importable ({exc})") from exc
        onnx_path, meta = resolve_onnx(model_dir_or_onnx, metadata)
        super().__init__(meta)
        verify_onnx_hash(meta, onnx_path)
        available = ort.get_available_providers()
        if providers is None:
            providers = [
                p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available
            ]
        usable = [p for p in providers if p in available]
        if not usable:
            raise BackendUnavailable(f"none of the providers {providers} exists (have {available})")
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        threads = resolve_intra_op_threads(intra_op_threads)
        if threads:
            opts.intra_op_num_threads = threads
        opts.add_session_config_entry(
            "session.intra_op.allow_spinning", "1" if intra_op_spinning else "0"
        )
        self.intra_op_threads = threads
        self.intra_op_spinning = bool(intra_op_spinning)
        # One session only, on the graph as it will run: pruned to ``outputs`` and, on the
        # CPU provider, with the segmentation tail channels-last (runtime.onnx_rewrite).
        model = _load_graph(onnx_path)
        graph_outputs = [o.name for o in model.graph.output]
        self.pruned = False
        if outputs is not None:
            keep = select_outputs(graph_outputs, outputs, str(onnx_path))
            if keep != graph_outputs:
                model = _subgraph(model, keep)
                self.pruned = True
        self.rewrites = 0
        if usable[0] == "CPUExecutionProvider":
            self.rewrites = channels_last_class_tail(model)
        source = model.SerializeToString() if self.pruned or self.rewrites else str(onnx_path)
        self.session = ort.InferenceSession(source, opts, providers=usable)
        self.onnx_path = onnx_path
        self._check_io(meta, onnx_path, graph_outputs)
        self.provider = self.session.get_providers()[0]
        self.device = "cuda:0" if self.provider == "CUDAExecutionProvider" else "cpu"
        self.reason = f"onnxruntime ({self.provider})"

    def _check_io(self, meta: ModelMetadata, onnx_path: Path, graph_outputs: list[str]) -> None:
        """Input name/shape of the session and the whole graph's outputs (``graph_outputs``,
        also when the session runs a pruned graph) against the metadata."""
        inputs = self.session.get_inputs()
        if len(inputs) != 1 or inputs[0].name != "image":
            raise ValueError(
                f"{onnx_path}: expected one input 'image', got {[i.name for i in inputs]}"
            )
        shape = inputs[0].shape
        if len(shape) != 4 or list(shape[1:]) != [3, meta.input_height, meta.input_width]:
            raise ValueError(
                f"{onnx_path}: input shape {shape} does not match the metadata "
                f"(N, 3, {meta.input_height}, {meta.input_width})"
            )
        self._batch = shape[0] if isinstance(shape[0], int) else None  # None: dynamic batch
        self.max_batch_size = self._batch
        self.output_names = [o.name for o in self.session.get_outputs()]
        if meta.outputs and sorted(graph_outputs) != sorted(meta.outputs):
            raise ValueError(
                f"{onnx_path}: outputs {graph_outputs} differ from metadata {meta.outputs}"
            )

    def predict(self, batch: np.ndarray) -> Prediction:
        """Run the model; a batch larger than the graph's static batch runs in chunks.

        Args / returns / raises: see :meth:`Backend.predict`.
        """
        self.check_batch(batch)
        batch = np.ascontiguousarray(batch)
        step = self._batch or batch.shape[0]
        if batch.shape[0] % step:
            raise ValueError(f"batch of {batch.shape[0]} is not a multiple of the model's {step}")
        chunks = [
            self.session.run(self.output_names, {"image": batch[i : i + step]})
            for i in range(0, batch.shape[0], step)
        ]
        outputs = {
            name: np.concatenate([c[k] for c in chunks]) if len(chunks) > 1 else chunks[0][k]
            for k, name in enumerate(self.output_names)
        }
        return prediction_from_outputs(outputs)

    def close(self) -> None:
        self.session = None

    def threading(self) -> str:
        """``"intra-op threads N, spinning off"`` (N = ``default`` when ONNX Runtime chose)."""
        n = self.intra_op_threads or "default"
        return f"intra-op threads {n}, spinning {'on' if self.intra_op_spinning else 'off'}"

    def describe(self) -> str:
        only = f"; outputs {', '.join(self.output_names)}" if self.pruned else ""
        tail = "; class tail channels-last" if self.rewrites else ""
        return (
            f"onnxruntime {self.provider} ({self.onnx_path.name}; {self.threading()}{only}{tail})"
        )


def _load_graph(onnx_path: Path):
    """The ONNX ModelProto of ``onnx_path`` (weights inside the file); ValueError naming the
    file when it is not readable ONNX."""
    from joint_perception.onnx_io import load_onnx

    return load_onnx(onnx_path)


def _subgraph(model, outputs: list[str]):
    """The subgraph (an ONNX ModelProto) of ``model`` from ``image`` to ``outputs`` (the nodes
    the other outputs alone need are dropped)."""
    import onnx.utils

    return onnx.utils.Extractor(model).extract_model(["image"], outputs)
