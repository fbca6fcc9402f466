"""Model metadata: the ``metadata.json`` that sits next to every exported ONNX model.

docs/contracts.md section 2 describes it. The runtime reads it to know the input size,
normalisation, classes, depth range and canonical focal length; evaluation and the node
report from it. Load with :func:`load_metadata`, write with :meth:`ModelMetadata.save`
(atomic). The ONNX graph contract that goes with it (see docs/architecture.md):

    input  ``image``      (N, 3, H, W) float32 RGB in [0, 1] (normalisation is inside the graph)
    output ``depth``      (N, 1, H, W) float32 metres along the optical axis (z)
    output ``labels``     (N, H, W)    int32 class ids, 0 = void, 1..num_classes
    output ``confidence`` (N, H, W)    float32 max softmax probability in [0, 1]
    output ``normals``    (N, 3, H, W) float32 unit vectors, camera optical frame (REP 103)

Only the outputs of the model's ``tasks`` are present.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from joint_perception.io_utils import atomic_write_json, sha256_file
from joint_perception.tasks import check_tasks

SCHEMA_VERSION = 1


@dataclass
class ModelMetadata:
    """Everything a runtime needs to use an exported model, and its provenance.

    Attributes:
        architecture: registry name of the network (e.g. ``"realtime"``, ``"pap"``).
        tasks: subset of ``("depth", "segmentation", "normals")``.
        input_height, input_width: network input size in pixels (static ONNX shape).
        mean, std: per-channel RGB normalisation applied inside the graph to [0, 1] input.
        class_names: names of classes 1..C (index 0, void, is implicit and not listed).
        class_colors: RGB uint8 triples for 0..C (index 0 = void colour).
        min_depth, max_depth: metres; predictions outside are published as NaN.
        canonical_focal: focal length in pixels *at the network input size* the model was
            trained for; the runtime rescales depth by ``f_actual / canonical_focal``.
            ``None`` disables the rescale (depth is taken as metric for any camera).
        onnx_file: file name of the ONNX model next to this metadata.
        onnx_sha256: hex SHA-256 of that file.
        onnx_opset: opset of the exported graph.
        inputs, outputs: ONNX tensor names.
        training: data set(s), recipe, epochs, git revision, seed, ...
        metrics: measured metrics, keyed by data set then metric name.
        extra: architecture-specific settings (e.g. backbone, CRF iterations).
    """

    architecture: str
    tasks: list[str]
    input_height: int
    input_width: int
    mean: list[float] = field(default_factory=lambda: [0.485, 0.456, 0.406])
    std: list[float] = field(default_factory=lambda: [0.229, 0.224, 0.225])
    class_names: list[str] = field(default_factory=list)
    class_colors: list[list[int]] = field(default_factory=list)
    min_depth: float = 0.1
    max_depth: float = 10.0
    canonical_focal: float | None = None
    onnx_file: str = "model.onnx"
    onnx_sha256: str = ""
    onnx_opset: int = 17
    inputs: list[str] = field(default_factory=lambda: ["image"])
    outputs: list[str] = field(default_factory=list)
    training: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION

    def __post_init__(self) -> None:
        self.tasks = list(check_tasks(self.tasks))
        if self.input_height <= 0 or self.input_width <= 0:
            raise ValueError(
                f"input size must be positive, got {self.input_height}x{self.input_width}"
            )
        if not 0 < self.min_depth < self.max_depth:
            raise ValueError(
                f"need 0 < min_depth < max_depth, got {self.min_depth}, {self.max_depth}"
            )
        if "segmentation" in self.tasks and not self.class_names:
            raise ValueError("a segmentation model needs class_names")

    @property
    def num_classes(self) -> int:
        """Number of real classes (void excluded)."""
        return len(self.class_names)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def save(self, path: str | os.PathLike) -> Path:
        """Write as JSON atomically; returns the path."""
        return atomic_write_json(path, self.to_dict())

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelMetadata:
        known = {f.name for f in dataclasses.fields(cls)}
        missing = {"architecture", "tasks", "input_height", "input_width"} - set(data)
        if missing:
            raise ValueError(f"model metadata lacks required key(s) {sorted(missing)}")
        return cls(**{k: v for k, v in data.items() if k in known})


def load_metadata(path: str | os.PathLike) -> ModelMetadata:
    """Read ``metadata.json``.

    Args:
        path: the JSON file, or a directory containing ``metadata.json``, or an ``.onnx`` file
            whose sibling ``metadata.json`` (or ``<stem>.json``) is read.

    Raises:
        FileNotFoundError: no metadata file found.
        ValueError: malformed JSON or missing/invalid fields (message names the file).
    """
    p = Path(path)
    if p.is_dir():
        p = p / "metadata.json"
    elif p.suffix == ".onnx":
        candidates = [p.with_suffix(".json"), p.parent / "metadata.json"]
        p = next((c for c in candidates if c.exists()), candidates[-1])
    if not p.exists():
        raise FileNotFoundError(f"model metadata not found: {p}")
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
        return ModelMetadata.from_dict(data)
    except (json.JSONDecodeError, TypeError, ValueError) as exc:
        raise ValueError(f"invalid model metadata {p}: {exc}") from exc


def verify_onnx_hash(meta: ModelMetadata, onnx_path: str | os.PathLike) -> str:
    """Check the ONNX file against ``meta.onnx_sha256``; returns the file's hash.

    Raises:
        ValueError: when the metadata records a different hash (file replaced or corrupt).
    """
    digest = sha256_file(onnx_path)
    if meta.onnx_sha256 and meta.onnx_sha256 != digest:
        raise ValueError(
            f"{onnx_path}: SHA-256 {digest[:12]}… does not match metadata {meta.onnx_sha256[:12]}…"
            " (model replaced or corrupt; re-export it)"
        )
    return digest
