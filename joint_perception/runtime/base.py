"""The runtime interface shared by every inference backend (docs/contracts.md section 4).

A backend runs one exported model (see :mod:`joint_perception.metadata` for the graph
contract) on a batch of pre-processed images and returns a :class:`Prediction` at the
network resolution. Pre- and post-processing (resize, focal rescale, depth range, normal
orientation, resize back) live in :mod:`joint_perception.runtime.processing`.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from joint_perception.metadata import ModelMetadata
from joint_perception.tasks import OUTPUTS


@dataclass
class Prediction:
    """Raw network outputs for a batch, at the network input resolution (h, w); one field per
    :data:`joint_perception.tasks.OUTPUTS` entry.

    Attributes:
        depth: (N, h, w) float32 metres along the optical axis, or None.
        labels: (N, h, w) int32 class ids (0 = void), or None.
        confidence: (N, h, w) float32 in [0, 1] (max softmax probability), or None.
        normals: (N, h, w, 3) float32 unit vectors in the camera optical frame, or None.
    """

    depth: np.ndarray | None = None
    labels: np.ndarray | None = None
    confidence: np.ndarray | None = None
    normals: np.ndarray | None = None


class BackendUnavailable(RuntimeError):
    """The backend cannot run here (library missing, no GPU, engine build failed...)."""


class Backend(abc.ABC):
    """One inference engine for one model.

    Attributes:
        name: ``"tensorrt"``, ``"torch"`` or ``"onnxruntime"``.
        device: human-readable device (``"cpu"``, ``"cuda:0 NVIDIA Orin"``...).
        reason: why this backend was chosen (reported in /diagnostics).
        metadata: the model's metadata.
        max_batch_size: the largest N that :meth:`predict` runs as one network call (None =
            any); larger batches may still be accepted and run in chunks. 1 unless the backend
            says otherwise (the ONNX export has a static batch of 1).
    """

    name: str = "abstract"
    max_batch_size: int | None = 1

    def __init__(self, metadata: ModelMetadata):
        self.metadata = metadata
        self.device = "cpu"
        self.reason = ""

    @abc.abstractmethod
    def predict(self, batch: np.ndarray) -> Prediction:
        """Run the network.

        Args:
            batch: (N, 3, H, W) float32 RGB in [0, 1], C-contiguous, H x W equal to the
                metadata input size.

        Returns:
            :class:`Prediction` at (H, W).

        Raises:
            ValueError: wrong shape or dtype.
        """

    def check_batch(self, batch: np.ndarray) -> None:
        """Raise ValueError unless ``batch`` matches the model input contract."""
        m = self.metadata
        if batch.ndim != 4 or batch.shape[1] != 3:
            raise ValueError(f"expected (N, 3, H, W) batch, got shape {batch.shape}")
        if batch.shape[2:] != (m.input_height, m.input_width):
            raise ValueError(
                f"batch is {batch.shape[2]}x{batch.shape[3]}, model expects "
                f"{m.input_height}x{m.input_width}"
            )
        if batch.dtype != np.float32:
            raise ValueError(f"batch dtype must be float32, got {batch.dtype}")

    def close(self) -> None:
        """Release resources (GPU memory, sessions). Idempotent."""

    def describe(self) -> str:
        return f"{self.name} on {self.device}"


def prediction_from_outputs(outputs: dict[str, np.ndarray]) -> Prediction:
    """Build a :class:`Prediction` from graph-named outputs (:data:`joint_perception.tasks.OUTPUTS`):
    single-channel maps lose their channel axis, vector maps go channels-last (NCHW -> NHWC),
    dtypes become the registry's."""
    fields = {}
    for name, arr in outputs.items():
        spec = OUTPUTS.get(name)
        if spec is None:
            continue
        if spec.runtime_layout == "NHWC":
            arr = arr.transpose(0, 2, 3, 1)
        elif arr.ndim == 4:
            arr = arr[:, 0]
        fields[name] = np.ascontiguousarray(arr, dtype=spec.dtype)
    return Prediction(**fields)


def select_outputs(available: Sequence[str], wanted: Sequence[str] | None, where: str) -> list[str]:
    """The network outputs a backend computes: ``available`` (graph order) restricted to
    ``wanted``; None = all. Outputs the model lacks are ignored (a model without normals has
    none to compute).

    Raises:
        ValueError: a name that is no network output (:data:`joint_perception.tasks.OUTPUTS`),
            or none of ``wanted`` in ``available`` (``where`` names the model).
    """
    if wanted is None:
        return list(available)
    wanted = set(wanted)
    unknown = sorted(wanted - set(OUTPUTS))
    if unknown:
        raise ValueError(f"unknown network outputs {unknown}; known: {list(OUTPUTS)}")
    keep = [n for n in available if n in wanted]
    if not keep:
        raise ValueError(
            f"{where}: the model computes none of the outputs {sorted(wanted)} "
            f"(it has {list(available)})"
        )
    return keep
